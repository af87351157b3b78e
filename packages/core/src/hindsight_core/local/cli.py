"""``hindsight-local``: start, stop and inspect a real Hindsight server on loopback.

    hindsight-local start       # prints the URL as the last line of stdout; the server keeps running
    hindsight-local start --provider openai   # a real LLM and OpenAI's embeddings (needs OPENAI_API_KEY)
    hindsight-local status      # exit code 0 if it is healthy, 1 if not
    hindsight-local stop
    hindsight-local provision   # install the server only

Progress and errors go to stderr, so ``URL=$(hindsight-local start)`` captures the URL only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import get_args

from hindsight_core.local._process import file_lock
from hindsight_core.local.errors import LocalServerError
from hindsight_core.local.installer import HOME_ENV, default_home, provision
from hindsight_core.local.models import EMBEDDINGS_ENV, PROVIDER_ENV, Embeddings, Provider
from hindsight_core.local.server import (
    DEFAULT_STARTUP_TIMEOUT,
    ApiLogLevel,
    LocalHindsightServer,
    check_health,
    load_state,
    run_names,
    stop_run,
    validate_run_name,
)

__all__ = ["main"]

_DEFAULT_NAME = "default"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _lock_path(home: Path, name: str) -> Path:
    return home / "runs" / name / "cli.lock"


def _start(home: Path, args: argparse.Namespace) -> int:
    name: str = args.name
    with file_lock(
        _lock_path(home, name),
        timeout=args.timeout + 1800,
        on_wait=lambda: _say(f"waiting for another `hindsight-local` command on {name!r}"),
    ):
        server = LocalHindsightServer(
            home=home,
            name=name,
            startup_timeout=args.timeout,
            api_log_level=args.log_level,
            detached=True,
            on_progress=_say,
            provider=args.provider,
            embeddings=args.embeddings,
        )
        state = load_state(name, home)
        if state is not None and state.url is not None and check_health(state.url, timeout=5.0):
            wanted = server.models
            if state.llm is not None and state.llm != wanted.llm:
                _say(
                    f"instance {name!r} is already running with LLM {state.llm}, not {wanted.llm}: "
                    f"stop it first (`hindsight-local stop --name {name}`) or use another --name"
                )
                return 1
            _say(
                f"already running (LLM {state.llm}, embeddings {state.embeddings_model}; "
                f"logs: {state.run_dir})"
            )
            print(state.url, flush=True)
            return 0
        if state is not None:
            _say(f"a previous run {name!r} is not healthy: stopping what is left of it")
            stop_run(state)
        try:
            url = server.start()
        except LocalServerError as exc:
            _say(exc.details(40))
            return 1
        stop_hint = "hindsight-local stop" + ("" if name == _DEFAULT_NAME else f" --name {name}")
        _say(f"logs: {server.run_dir}; stop it with `{stop_hint}`")
        print(url, flush=True)
        return 0


def _stop(home: Path, args: argparse.Namespace) -> int:
    names: list[str] = run_names(home) if args.all else [args.name]
    if not names:
        _say("no local Hindsight server is running")
    for name in names:
        with file_lock(_lock_path(home, name), timeout=300):
            state = load_state(name, home)
            if state is None:
                _say(f"no local Hindsight server named {name!r} is running")
                continue
            started = time.monotonic()
            stop_run(state)
            _say(f"stopped {name!r} in {time.monotonic() - started:.1f} s (logs kept in {state.run_dir})")
    return 0


def _status(home: Path, args: argparse.Namespace) -> int:
    state = load_state(args.name, home)
    healthy = state is not None and state.url is not None and check_health(state.url)
    if args.json:
        report = state.to_dict() if state is not None else {"name": args.name}
        report["running"] = state is not None
        report["healthy"] = healthy
        print(json.dumps(report, indent=2, sort_keys=True))
    elif state is None:
        print(f"{args.name}: not running")
    else:
        health = "healthy" if healthy else "NOT healthy"
        print(f"{args.name}: {health} at {state.url or '(never became healthy)'}")
        print(f"  api pid {state.api_pid} port {state.api_port}")
        print(f"  LLM {state.llm}")
        print(
            f"  embeddings {state.embeddings_model} ({state.embeddings_dimensions} dimensions)"
            f" pid {state.embeddings_pid} port {state.embeddings_port}"
        )
        print(f"  postgres pid {state.postgres_pid} port {state.database_port} (pg0 {state.pg0_instance})")
        print(f"  logs: {state.run_dir}")
    return 0 if healthy else 1


def _provision(home: Path, args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        install = provision(home, on_progress=_say, retry_embedder=True)
    except LocalServerError as exc:
        _say(exc.details(40))
        return 1
    model = install.embedder or f"none ({install.embedder_error}): hashed vectors"
    _say(f"ready in {time.monotonic() - started:.1f} s; embedding model: {model}")
    print(install.venv)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hindsight-local",
        description="Run a real Hindsight server (API, PostgreSQL, embeddings) on 127.0.0.1, offline.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help=f"cache and state directory (default: ${HOME_ENV} or {default_home()})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", help="start a server in the background and print its URL")
    start.add_argument("--name", default=_DEFAULT_NAME, help="instance name (default: %(default)s)")
    start.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_STARTUP_TIMEOUT,
        help="seconds to wait for health (default: %(default)s)",
    )
    start.add_argument(
        "--log-level", choices=get_args(ApiLogLevel), default="warning", help="the API's log level"
    )
    start.add_argument(
        "--provider",
        choices=get_args(Provider),
        default=None,
        help=f"the server's LLM: mock (offline, the default) or a real provider whose key is in the "
        f"environment (OPENAI_API_KEY, ANTHROPIC_API_KEY); default ${PROVIDER_ENV}",
    )
    start.add_argument(
        "--embeddings",
        choices=get_args(Embeddings),
        default=None,
        help=f"model: the local embedding model (default offline); hashed: bag-of-words vectors; "
        f"provider: the provider's embeddings (default with openai); default ${EMBEDDINGS_ENV}",
    )
    start.set_defaults(handler=_start)
    stop = commands.add_parser("stop", help="stop a server started with `start`")
    stop.add_argument("--name", default=_DEFAULT_NAME, help="instance name (default: %(default)s)")
    stop.add_argument("--all", action="store_true", help="stop every running instance under the home")
    stop.set_defaults(handler=_stop)
    status = commands.add_parser("status", help="show a server's URL, PIDs and logs (exit 1 if not healthy)")
    status.add_argument("--name", default=_DEFAULT_NAME, help="instance name (default: %(default)s)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)
    provision_cmd = commands.add_parser("provision", help="install the server into the cache directory only")
    provision_cmd.set_defaults(handler=_provision)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    home: Path = args.home.absolute() if args.home is not None else default_home()
    try:
        if getattr(args, "name", None) is not None:
            validate_run_name(args.name)
        code: int = args.handler(home, args)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (OSError, TimeoutError, ValueError) as exc:
        _say(f"hindsight-local {args.command}: {exc}")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
