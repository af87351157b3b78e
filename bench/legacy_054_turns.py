"""The published hindsight-litellm 0.5.4 on the conversations of ``bench/prompt_cache.py`` and
``bench/agent_loop.py``, for comparison with ours.

Runs in the 0.5.4 venv (``tests/compat/peer.py``: 0.5.4, our LiteLLM version, pytest), never in the
workspace venv: it imports only the standard library, LiteLLM, 0.5.4, ``tests.providers`` (the loopback
fake providers) and ``bench._conversation`` (plain data). Run from the repository root with it on
``PYTHONPATH``.

``cache``: the conversation in mode ``none`` (plain ``litellm.completion``), ``system_message`` and
``prepend_user``, on the OpenAI and the Anthropic wire, with each system prompt; prints the request bodies
the providers received. ``agent``: ``--messages`` user messages, each followed by ``AGENT_STEPS``
tool-call/tool-result steps and the answer, storage on, against ``--server-url`` (the caller counts the
recalls and retains reaching the server); prints the model calls, the seconds per user message and the
time of each recall inside 0.5.4's calls.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import importlib
import importlib.metadata
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench._conversation import (
    AGENT_STEPS,
    ANSWERS,
    QUESTIONS,
    SYSTEMS,
    app_messages,
    tool_arguments,
    tool_result,
)
from tests.providers import FakeAnthropic, FakeOpenAI

MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-3-5-sonnet-20241022"}
ROOT = Path(__file__).resolve().parent.parent


def run_in_peer_venv(arguments: list[str], venv: Path | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Run this script with ``arguments`` in the 0.5.4 venv (made on first use by ``tests/compat/peer.py``)
    and return its JSON output. Called from the workspace venv by ``bench/prompt_cache.py`` and
    ``bench/agent_loop.py``."""
    from tests.compat.peer import peer_python

    done = subprocess.run(
        [str(peer_python(venv)), str(Path(__file__).relative_to(ROOT)), *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench/legacy_054_turns.py failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


_STORAGE_THREADS = ("_store_conversation", "_retain_background")  # Python names a thread after its target


def _join_storage_threads(timeout: float = 600.0) -> int:
    """0.5.4 stores each call on a daemon thread, which hands the retain to another daemon thread: wait for
    both kinds, so none is cut off at exit (0.5.4 itself does not wait). Returns how many were still running
    after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        threads = [t for t in threading.enumerate() if any(n in t.name for n in _STORAGE_THREADS)]
        if not threads or time.monotonic() >= deadline:
            return len(threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def cache(legacy: Any, litellm: Any, args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake:
        fakes: dict[str, FakeOpenAI | FakeAnthropic] = {"openai": openai_fake, "anthropic": anthropic_fake}
        for system_name, system in SYSTEMS.items():
            for wire, fake in fakes.items():
                for mode in ("none", "system_message", "prepend_user"):
                    legacy.configure(
                        hindsight_api_url=args.server_url,
                        bank_id=args.bank,
                        store_conversations=False,
                        injection_mode=mode if mode != "none" else "system_message",
                    )
                    call = litellm.completion if mode == "none" else legacy.completion
                    bodies = []
                    for turn in range(args.turns):
                        fake.reply = ANSWERS[turn]
                        call(
                            model=MODELS[wire],
                            api_base=fake.base_url,
                            api_key="sk-test",
                            messages=app_messages(system, turn),
                        )
                        bodies.append(fake.last_json)
                    runs.append({"system": system_name, "wire": wire, "mode": mode, "bodies": bodies})
    return {"runs": runs}


def agent(legacy: Any, args: argparse.Namespace) -> dict[str, Any]:
    legacy.configure(hindsight_api_url=args.server_url, bank_id=args.bank, store_conversations=True)
    recall_ms: list[float] = []  # each recall inside 0.5.4's calls (the client it creates for each call)
    client_class: Any = importlib.import_module("hindsight_client").Hindsight
    original_recall = client_class.recall

    def timed_recall(self: Any, *a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_recall(self, *a, **k)
        finally:
            recall_ms.append((time.perf_counter() - started) * 1000)

    client_class.recall = timed_recall
    seconds: list[float] = []
    calls = 0
    errors: list[str] = []
    with FakeOpenAI() as fake:
        messages: list[dict[str, Any]] = []
        for index in range(args.messages):
            messages.append({"role": "user", "content": QUESTIONS[index]})
            started = time.perf_counter()
            for step in range(AGENT_STEPS + 1):
                answering = step == AGENT_STEPS
                call_id = f"call_{index}_{step}"
                fake.reply = (
                    ANSWERS[index]
                    if answering
                    else {
                        "tool_calls": [
                            {"id": call_id, "name": "search", "arguments": tool_arguments(index, step)}
                        ]
                    }
                )
                try:
                    response = legacy.completion(
                        model=MODELS["openai"],
                        api_base=fake.base_url,
                        api_key="sk-test",
                        messages=messages,
                    )
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    break
                calls += 1
                messages.append(response.choices[0].message.model_dump(exclude_none=True))
                if not answering:
                    result = tool_result(**tool_arguments(index, step))
                    messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
            seconds.append(time.perf_counter() - started)
    unfinished = _join_storage_threads()
    return {
        "unfinished_stores": unfinished,
        "model_calls": calls,
        "user_messages": args.messages,
        "seconds_per_message": seconds,
        "recall_ms": recall_ms,
        "errors": errors[:5],
        "storage_errors": [str(e) for e in legacy.get_pending_storage_errors()][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["cache", "agent"])
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--bank", required=True)
    parser.add_argument("--turns", type=int, default=20, help="cache: turns per conversation")
    parser.add_argument("--messages", type=int, default=3, help="agent: user messages")
    args = parser.parse_args()
    legacy: Any = importlib.import_module("hindsight_litellm")
    litellm: Any = importlib.import_module("litellm")
    litellm.suppress_debug_info = True
    result = cache(legacy, litellm, args) if args.command == "cache" else agent(legacy, args)
    result["version"] = importlib.metadata.version("hindsight-litellm")
    result["litellm"] = importlib.metadata.version("litellm")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
