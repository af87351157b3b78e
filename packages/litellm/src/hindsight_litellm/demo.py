"""``hindsight-demo``: memory across sessions, end to end.

Session 1 tells the model a few facts. Session 2 starts from fresh messages and asks about them; the
answer comes from the memories Hindsight recalled and this integration injected, which are printed.

With no ``HINDSIGHT_API_URL`` the demo starts a local Hindsight server (installing it on first use) and
stops it at the end. With a provider key in the environment (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``...)
or ``--model``, a real model answers; otherwise an offline stand-in that only quotes the injected
memories, clearly labelled as such. ``--interactive`` opens a chat with memory instead of the story.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["main"]

_PROVIDER_MODELS = [
    ("OPENAI_API_KEY", "gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-3-5-haiku-latest"),
    ("GROQ_API_KEY", "groq/llama-3.1-8b-instant"),
    ("GEMINI_API_KEY", "gemini/gemini-1.5-flash"),
    ("MISTRAL_API_KEY", "mistral/mistral-small-latest"),
]
SESSION_ONE = [
    "Hi! I'm Alex. I'm building a FastAPI application for a bakery's online orders.",
    "For testing I always use pytest, and I like type hints everywhere.",
]
SESSION_TWO = "What am I building, and which testing framework do I use?"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _box(title: str, body: str) -> None:
    _say(f"--- {title} " + "-" * max(0, 70 - len(title)))
    _say(body.rstrip())
    _say("-" * 76)


def choose_model(requested: str | None) -> tuple[str, bool]:
    """The model to use and whether it is the offline stand-in."""
    if requested:
        return requested, requested.startswith("hindsight-offline/")
    for variable, model in _PROVIDER_MODELS:
        if os.environ.get(variable):
            return model, False
    return "hindsight-offline/memory-quoter", True


@contextlib.contextmanager
def hindsight_url(progress: Callable[[str], None]) -> Iterator[tuple[str, bool]]:
    """``HINDSIGHT_API_URL``, or a local server started for the demo (stopped on exit)."""
    configured = os.environ.get("HINDSIGHT_API_URL")
    if configured:
        yield configured.rstrip("/"), False
        return
    from hindsight_core.local import local_server

    _say("No HINDSIGHT_API_URL set: starting a local Hindsight server on 127.0.0.1")
    _say("(the first run installs it into a cache, which takes about a minute).")
    try:
        with local_server(on_progress=progress) as server:
            _say(f"Local Hindsight server ready at {server.url}\n")
            yield server.url, True
    finally:
        _say("Local Hindsight server stopped.")


def _wait_for_memories(bank: str, url: str, query: str, timeout: float = 90.0) -> bool:
    """Storage is asynchronous on the server too: wait until the facts can be recalled."""
    from hindsight_core import HindsightClient, NotFoundError

    deadline = time.monotonic() + timeout
    with HindsightClient(url) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(NotFoundError):
                if client.recall(bank, query).results:
                    return True
            time.sleep(0.5)
    return False


def _reply_text(response: Any) -> str:
    return str(response.choices[0].message.content or "").strip()


def run_story(model: str, bank: str, url: str) -> int:
    import hindsight_litellm as hl

    _say("SESSION 1: the user tells the model about themselves.\n")
    messages: list[dict[str, Any]] = []
    for text in SESSION_ONE:
        messages.append({"role": "user", "content": text})
        _say(f"user:      {text}")
        response = hl.completion(model=model, messages=messages)
        reply = _reply_text(response)
        messages.append({"role": "assistant", "content": reply})
        _say(f"assistant: {reply}\n")
    _say("Storing the conversation in Hindsight...")
    if not hl.config.PIPELINE.storage.flush(timeout=60):
        _say("Storage did not finish in 60 s; see the warnings above.")
        return 1
    if not _wait_for_memories(bank, url, SESSION_TWO):
        _say("Hindsight did not make the conversation recallable in time.")
        return 1

    _say("\nSESSION 2: a new conversation, with no history. Only memory connects it to session 1.\n")
    _say(f"user:      {SESSION_TWO}")
    response = hl.completion(model=model, messages=[{"role": "user", "content": SESSION_TWO}])
    debug = hl.get_last_injection_debug()
    if debug is not None and debug.injected:
        _box(
            f"memory injected ({debug.memories_used} memories, {debug.tokens_injected} tokens)",
            debug.memory_context,
        )
    else:
        reason = (debug.error or debug.skipped_reason) if debug is not None else "no debug record"
        _say(f"(no memory was injected: {reason})")
    _say(f"assistant: {_reply_text(response)}\n")
    return 0 if debug is not None and debug.injected else 1


def run_chat(model: str, offline: bool, bank: str, url: str) -> int:
    import hindsight_litellm as hl

    _say("Chat with memory. Commands: /new (new conversation), /memory (last injected block), /quit.")
    messages: list[dict[str, Any]] = []
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            _say()
            return 0
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/new":
            messages = []
            _say("(new conversation: earlier ones are only reachable through memory)")
            continue
        if text == "/memory":
            debug = hl.get_last_injection_debug()
            _say(debug.memory_context if debug is not None and debug.injected else "(nothing injected yet)")
            continue
        messages.append({"role": "user", "content": text})
        try:
            reply = _reply_text(hl.completion(model=model, messages=messages))
        except Exception as exc:  # a provider error ends this turn, not the chat
            messages.pop()
            _say(f"(the model call failed: {type(exc).__name__}: {exc})")
            continue
        messages.append({"role": "assistant", "content": reply})
        _say(textwrap.fill(f"bot> {reply}", width=100, subsequent_indent="     "))
        if offline:
            # Nobody types as fast as a script: let the server finish storing before the next turn,
            # so a scripted session sees what it just said.
            hl.config.PIPELINE.storage.flush(timeout=30)
            _wait_for_memories(bank, url, text, timeout=15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hindsight-demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--model", help="LiteLLM model name (default: from provider keys, else offline)")
    parser.add_argument("--bank", help="memory bank id (default: a new demo bank)")
    parser.add_argument("--interactive", action="store_true", help="chat with memory instead of the story")
    parser.add_argument("--verbose", action="store_true", help="show the local server's start-up steps")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    model, offline = choose_model(args.model)
    bank = args.bank or f"hindsight-demo-{uuid.uuid4().hex[:8]}"
    progress: Callable[[str], None] = (lambda m: _say(f"  {m}")) if args.verbose else (lambda m: None)
    import hindsight_litellm as hl

    try:
        with hindsight_url(progress) as (url, local):
            if offline:
                from .offline_model import register

                register()
            if local:
                # The local server runs without an LLM: it stores text as given rather than extracting facts.
                from hindsight_core import HindsightClient

                with HindsightClient(url) as client:
                    client.create_bank(bank, extraction_mode="chunks")
            hl.configure(
                hindsight_api_url=url,
                bank_id=bank,
                bank_name="Hindsight demo",
                mission="Remember what the user says about themselves, their projects and their preferences.",
            )
            label = (
                " (OFFLINE DEMO MODEL: no provider key found; it only quotes injected memories)"
                if offline
                else ""
            )
            _say(f"Model: {model}{label}")
            _say(f"Memory bank: {bank} on {url}\n")
            status = run_chat(model, offline, bank, url) if args.interactive else run_story(model, bank, url)
            hl.cleanup()
            return status
    except KeyboardInterrupt:
        _say("\nInterrupted.")
        return 130
    except Exception as exc:
        _say(f"hindsight-demo failed: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
