"""The main job: ``hindsight-demo`` as a newcomer runs it (no server configured, no provider key)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import seed_bank

_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")


def demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _KEYS and not k.startswith("HINDSIGHT_")}
    env.update(extra)
    return env


def test_demo_story_starts_its_own_server_and_shows_memory_across_sessions() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hindsight_litellm.demo"],
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
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


@pytest.mark.server
def test_demo_interactive_chat_remembers_across_conversations(hindsight_server: str, bank_id: str) -> None:
    seed_bank(hindsight_server, bank_id)
    script = "My favourite animal is the otter.\n/new\nWhat is my favourite animal?\n/memory\n/quit\n"
    result = subprocess.run(
        [sys.executable, "-m", "hindsight_litellm.demo", "--interactive", "--bank", bank_id],
        env=demo_env(HINDSIGHT_API_URL=hindsight_server),
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "starting a local" not in output
    after_new = output.split("(new conversation:", 1)[1]
    assert "otter" in after_new.split("you>", 2)[1]  # the answer in the new conversation
    assert "<hindsight_memories>" in after_new  # /memory shows the injected block
