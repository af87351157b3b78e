"""``hindsight-demo``: memory across sessions, end to end.

Session 1 tells the model a few facts. Session 2 starts from fresh messages and asks about them in other
words; the answer comes from the memories Hindsight recalled and this integration injected. Every turn
shows, in a few lines, what was recalled, why, and what was stored.

With no ``HINDSIGHT_API_URL`` the demo starts a local Hindsight server (installing it on first use) and
stops it at the end; ``--server-provider openai`` (or ``$HINDSIGHT_LOCAL_PROVIDER``) gives that server a
real LLM and OpenAI's embeddings. With a provider key in the environment (``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY``...) or ``--model``, a real model answers; otherwise an offline stand-in that only
quotes the injected memories, clearly labelled as such. ``--interactive`` opens a chat instead of the story.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .demo_report import Reporter

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
_OFFLINE_LIMITS = """\
What is limited offline:
  - the answering model is a stand-in: it quotes what you told it, chosen by meaning; it does not reason;
  - the local server's LLM is a mock: what you say is stored as you said it (no fact extraction, no
    observations), and reflect cannot answer;
  - recall uses a small local embedding model: it finds most questions asked in other words, not all.
For real models: set OPENAI_API_KEY (the chat model) and add --server-provider openai (the server's).
"""


def _say(text: str = "") -> None:
    print(text, flush=True)


def choose_model(requested: str | None) -> tuple[str, bool]:
    """The model to use and whether it is the offline stand-in."""
    if requested:
        return requested, requested.startswith("hindsight-offline/")
    for variable, model in _PROVIDER_MODELS:
        if os.environ.get(variable):
            return model, False
    return "hindsight-offline/memory-quoter", True


@dataclass(frozen=True)
class Server:
    """The Hindsight server the demo talks to."""

    url: str
    local: bool
    """A local server (``hindsight_core.local``): the demo knows what it can do and sets up new banks."""
    mock_llm: bool = False
    """The local server has no real LLM."""
    embeddings_url: str | None = None
    """The local server's loopback embeddings endpoint, if it has one."""


def _known_local(url: str) -> Server:
    """``url`` as a Server: a local one if a ``hindsight-local`` run on this machine answers there."""
    from hindsight_core.local import load_state
    from hindsight_core.local.runs import run_names

    for name in run_names():
        state = load_state(name)
        if state is not None and state.url == url:
            port = state.embeddings_port
            return Server(
                url,
                local=True,
                mock_llm=state.llm in (None, "mock"),
                embeddings_url=f"http://127.0.0.1:{port}/v1" if port else None,
            )
    return Server(url, local=False)


@contextlib.contextmanager
def hindsight_server(progress: Callable[[str], None], provider: str | None) -> Iterator[Server]:
    """``HINDSIGHT_API_URL``, or a local server started for the demo (stopped on exit)."""
    configured = os.environ.get("HINDSIGHT_API_URL")
    if configured:
        known = _known_local(configured.rstrip("/"))
        if known.local:
            _say(f"Using the local Hindsight server at {known.url} (HINDSIGHT_API_URL).\n")
        yield known
        return
    from hindsight_core.local import LocalHindsightServer

    server = LocalHindsightServer(on_progress=progress, provider=provider)  # ValueError: bad choice or key
    _say("No HINDSIGHT_API_URL set: starting a local Hindsight server on 127.0.0.1")
    _say("(the first run installs it into a cache, which takes about a minute).")
    try:
        server.start()
        state = server.state
        assert state is not None
        port = state.embeddings_port
        _say(f"Local Hindsight server ready at {server.url}: {server.models.describe()}")
        if state.embeddings_model:
            _say(f"  embeddings: {state.embeddings_model}")
        _say()
        yield Server(
            server.url,
            local=True,
            mock_llm=server.models.offline,
            embeddings_url=f"http://127.0.0.1:{port}/v1" if port else None,
        )
    finally:
        server.stop()
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


def run_story(model: str, reporter: Reporter, bank: str, url: str) -> int:
    import hindsight_litellm as hl

    _say("SESSION 1: the user tells the model about themselves.\n")
    messages: list[dict[str, Any]] = []
    for text in SESSION_ONE:
        reporter.turn(model, messages, text)
    _say("Storing the conversation in Hindsight...")
    if not hl.config.PIPELINE.storage.flush(timeout=60):
        _say("Storage did not finish in 60 s; see the warnings above.")
        return 1
    if not _wait_for_memories(bank, url, SESSION_TWO):
        _say("Hindsight did not make the conversation recallable in time.")
        return 1

    _say("\nSESSION 2: a new conversation, with no history. Only memory connects it to session 1.\n")
    reporter.turn(model, [], SESSION_TWO, show_block=True)
    debug = hl.get_last_injection_debug()
    return 0 if debug is not None and debug.injected else 1


def run_chat(model: str, reporter: Reporter) -> int:
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
        try:
            reporter.turn(model, messages, text)
        except Exception as exc:  # a provider error ends this turn, not the chat
            _say(f"(the model call failed: {type(exc).__name__}: {exc})")


def _configure_bank(server: Server, bank: str) -> None:
    """Set up a new demo bank on a local server for what that server can do."""
    if not server.local:
        return  # someone else's server: its banks are configured as its owner wants
    from hindsight_core import HindsightClient

    with HindsightClient(server.url) as client:
        if server.mock_llm:
            # No real LLM on the server: store text as given (nothing to extract facts with), and no
            # observations (the mock's "observations" only repeat what was said, questions included).
            client.create_bank(bank, extraction_mode="chunks", enable_observations=False)
        else:
            client.create_bank(bank)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hindsight-demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--model", help="LiteLLM model name (default: from provider keys, else offline)")
    parser.add_argument("--bank", help="memory bank id (default: a new demo bank)")
    parser.add_argument("--interactive", action="store_true", help="chat with memory instead of the story")
    parser.add_argument(
        "--server-provider",
        choices=("mock", "openai", "anthropic"),
        help="the local server's LLM (and embeddings, for openai): mock (offline, the default) or a real "
        "provider whose key is set; default $HINDSIGHT_LOCAL_PROVIDER",
    )
    parser.add_argument("--verbose", action="store_true", help="show the local server's start-up steps")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    model, offline = choose_model(args.model)
    bank = args.bank or f"hindsight-demo-{uuid.uuid4().hex[:8]}"
    progress: Callable[[str], None] = (lambda m: _say(f"  {m}")) if args.verbose else (lambda m: None)
    import hindsight_litellm as hl

    try:
        with hindsight_server(progress, args.server_provider) as server:
            embed = None
            if offline:
                from .offline_model import http_embed, register

                embed = http_embed(server.embeddings_url) if server.embeddings_url else None
                register(embed)
            if args.bank is None:  # a bank the user named is theirs: never reconfigured
                _configure_bank(server, bank)
            hl.configure(
                hindsight_api_url=server.url,
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
            _say(f"Memory bank: {bank} on {server.url}\n")
            if offline:
                _say(_OFFLINE_LIMITS)
            reporter = Reporter(
                offline=offline, bank=bank, url=server.url, embed=embed, say=_say, echo=not args.interactive
            )
            if args.interactive:
                status = run_chat(model, reporter)
            else:
                status = run_story(model, reporter, bank, server.url)
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
