"""The main job: ``hindsight-demo`` as a newcomer runs it (no server configured, no provider key), and with
real models (a loopback OpenAI-compatible fake as the chat model and as the local server's LLM)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import seed_bank
from tests.providers import FakeOpenAI

_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")


def demo_env(**extra: str) -> dict[str, str]:
    kept = ("HINDSIGHT_LOCAL_HOME",)  # where local servers live (the session server's, too)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _KEYS and (k in kept or not k.startswith(("HINDSIGHT_", "OPENAI_")))
    }
    env.update(extra)
    return env


def _run_demo(*args: str, env: dict[str, str], script: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hindsight_litellm.demo", *args],
        env=env,
        input=script,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _lines(output: str, label: str) -> list[str]:
    """The explanation lines of one kind ("recalled:", "why:", "stored:"), with their continuations."""
    found: list[str] = []
    current: str | None = None
    for line in output.splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # a labelled line: "  stored:   ..."
            current = line.strip() if line.startswith(f"  {label}") else None
            if current is not None:
                found.append(current)
        elif current is not None and line.startswith(" " * 12) and not re.match(r"\s+(\d+\.|\.\.\.) ", line):
            found[-1] += " " + line.strip()
        else:
            current = None
    return found


def test_demo_story_starts_its_own_server_and_shows_memory_across_sessions() -> None:
    output = _run_demo(env=demo_env())
    assert "starting a local Hindsight server" in output
    assert "OFFLINE DEMO MODEL" in output
    assert "SESSION 2" in output
    assert "<hindsight_memories>" in output
    assert "# Relevant Memories" in output
    answer = output.split("SESSION 2", 1)[1]
    assert "From memory, you told me:" in answer
    assert "FastAPI" in answer
    assert "pytest" in answer
    assert "Local Hindsight server stopped." in output
    # What is limited offline is said; each turn says what was recalled, why and what was stored.
    assert "What is limited offline" in output
    assert "wordllama" in output  # the server's semantic embeddings, not the hashed fallback
    stored = _lines(output, "stored:")
    assert stored[:2] == [
        "stored:   \"Hi! I'm Alex. I'm building a FastAPI application for a bakery's online orders.\" "
        "(as you said it)",
        'stored:   "For testing I always use pytest, and I like type hints everywhere." (as you said it)',
    ]
    assert "not your questions" in stored[2]
    assert "2 memories for" in _lines(answer, "recalled:")[0]
    why = _lines(answer, "why:")
    assert len(why) == 2  # one memory for each part of the question
    assert 'answers "What am I building": closest in meaning' in why[0]
    assert "FastAPI" in why[0]
    assert "pytest" in why[1]
    assert "assistant:" not in answer.split("--- the block", 1)[1]  # no stand-in boilerplate stored


@pytest.mark.server
def test_demo_interactive_chat_remembers_across_conversations(hindsight_server: str, bank_id: str) -> None:
    seed_bank(hindsight_server, bank_id)
    script = "My favourite animal is the otter.\n/new\nWhat is my favourite animal?\n/memory\n/quit\n"
    output = _run_demo(
        "--interactive", "--bank", bank_id, env=demo_env(HINDSIGHT_API_URL=hindsight_server), script=script
    )
    assert "starting a local" not in output
    after_new = output.split("(new conversation:", 1)[1]
    assert "otter" in after_new.split("you>", 2)[1]  # the answer in the new conversation
    assert "<hindsight_memories>" in after_new  # /memory shows the injected block


@pytest.mark.server
def test_demo_interactive_answers_questions_in_other_words(hindsight_server: str) -> None:
    """The newcomer's session from issue 14: told two facts, asked about them in other words. The server is
    the session's local one, as after `export HINDSIGHT_API_URL=$(hindsight-local start)`: the demo finds
    its embeddings and sets up its new bank as it does on a server it starts itself."""
    script = (
        "My sister's name is Ines and she plays the cello.\n"
        "I work as a nurse at the Santa Maria hospital.\n"
        "/new\n"
        "What instrument does my sister play?\n"
        "What is my job?\n"
        "/memory\n"
        "/quit\n"
    )
    output = _run_demo("--interactive", env=demo_env(HINDSIGHT_API_URL=hindsight_server), script=script)
    assert "Using the local Hindsight server" in output
    after_new = output.split("(new conversation:", 1)[1]
    answers = [line for line in after_new.splitlines() if line.startswith("bot>")]
    assert answers[0].startswith(
        'bot> From memory, you told me: "My sister\'s name is Ines and she plays the cello."'
    )
    assert answers[1].startswith(
        'bot> From memory, you told me: "I work as a nurse at the Santa Maria hospital."'
    )
    assert "nothing in memory" not in output
    assert _lines(output, "stored:")[:2] == [
        'stored:   "My sister\'s name is Ines and she plays the cello." (as you said it)',
        'stored:   "I work as a nurse at the Santa Maria hospital." (as you said it)',
    ]
    block = after_new.split("<hindsight_memories>", 1)[1].split("</hindsight_memories>", 1)[0]
    assert "offline demo model" not in block  # what is stored is what the user said
    assert "?" not in block  # no questions, no observations repeating them
    assert "[OBSERVATION]" not in block


def _provider_reply(body: dict[str, Any]) -> str:
    """The fake as both models: the server's fact extraction asks for JSON, the demo's chat for text."""
    if body.get("response_format"):
        text = " ".join(str(m.get("content")) for m in body.get("messages", []))
        facts = []
        if "FastAPI" in text:
            facts.append("Alex is building a FastAPI application for a bakery's online orders.")
        if "pytest" in text:
            facts.append("Alex always uses pytest for testing.")
        return json.dumps(
            {
                "facts": [
                    {
                        "what": f,
                        "when": "N/A",
                        "where": "N/A",
                        "who": "Alex",
                        "why": "N/A",
                        "fact_type": "world",
                    }
                    for f in facts
                ]
            }
        )
    system = " ".join(str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system")
    return (
        "You are building a bakery app with FastAPI and test it with pytest." if "FastAPI" in system else "OK"
    )


def test_demo_with_real_models_runs_the_local_server_with_the_providers_llm() -> None:
    with FakeOpenAI(reply=_provider_reply) as fake:
        env = demo_env(OPENAI_API_KEY="sk-test-demo", OPENAI_BASE_URL=fake.base_url)
        output = _run_demo("--server-provider", "openai", env=env)
        server_calls = [r for r in fake.requests if (r.json or {}).get("response_format")]
        chat_calls = [
            r for r in fake.requests if r.path.endswith("/chat/completions") and r not in server_calls
        ]
        embedding_calls = [r for r in fake.requests if r.path.endswith("/embeddings")]
    assert "OFFLINE DEMO MODEL" not in output
    assert "What is limited offline" not in output
    assert "LLM openai/gpt-4o-mini" in output
    assert "embeddings openai/text-embedding-3-small" in output
    assert server_calls  # fact extraction by the provider's LLM
    assert embedding_calls  # and its embeddings
    assert len(chat_calls) >= 3  # the demo's own model: two turns in session 1, one in session 2
    stored = _lines(output, "stored:")
    assert stored[0].startswith("stored:   \"user: Hi! I'm Alex.")
    assert "assistant: OK" in stored[0]
    answer = output.split("SESSION 2", 1)[1]
    assert re.search(r"recalled: \d+ memor", answer)
    assert "FastAPI application for a bakery" in answer  # the extracted fact, injected
    assert "bot> You are building a bakery app with FastAPI" in answer
