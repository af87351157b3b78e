"""Run every benchmark and write the report: ``docs/performance.md`` and ``bench/results/performance.png``.

    uv run python bench/run_all.py            # about 10 minutes on a 2-core machine
    uv run python bench/run_all.py --quick    # smaller sizes, a smoke run (a few minutes)

Starts one local Hindsight server (``hindsight_core.local``) for all benchmarks (or uses ``--server-url``)
and stops it at the end; each benchmark runs in its own process (``python -m bench.<name>``) and writes its
raw results to ``bench/results/<name>.json``; everything is collected in ``bench/results/run_all.json``,
from which ``python -m bench.report`` can re-render the report without measuring again. The published
hindsight-litellm 0.5.4 is installed once in a separate venv (``--legacy-venv``) for the comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def step(name: str, command: list[str], results: dict[str, Any], *, env: dict[str, str] | None = None) -> Any:
    """Run one benchmark process; returns its JSON output (or None), records timing and load."""
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.unlink(missing_ok=True)
    record: dict[str, Any] = {"name": name, "load_before": load()}
    print(f"[run_all] {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, check=False)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["load_after"] = load()
    record["ok"] = done.returncode == 0
    results["steps"].append(record)
    print(
        f"[run_all] {name}: {'done' if record['ok'] else 'FAILED'} in {record['seconds']} s", file=sys.stderr
    )
    if done.returncode != 0 or not out.exists():
        return None
    return json.loads(out.read_text())


@contextlib.contextmanager
def hindsight(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    from hindsight_core.local import local_server

    with local_server() as server:
        yield server.url


def main() -> None:
    sys.path.insert(0, str(ROOT))  # run as a file: make the ``bench`` package importable
    from bench._common import machine
    from bench.overhead import DEFAULT_VENV, legacy_python
    from bench.report import render

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--overhead-iterations", type=int, help="per package and mode (default 100)")
    parser.add_argument("--stream-iterations", type=int, help="default 40")
    parser.add_argument("--levels", help="concurrency levels (default 1,10,100,500)")
    parser.add_argument("--turns", type=int, help="storage throughput turns (default 500)")
    parser.add_argument("--growth-turns", type=int, help="turns of the per-turn server cost (default 12)")
    parser.add_argument("--import-runs", type=int, help="fresh interpreters per import (default 2)")
    parser.add_argument(
        "--cache-turns", type=int, help="turns of the prompt-cache conversations (default 20)"
    )
    parser.add_argument("--agent-messages", type=int, help="user messages per agent loop (default 3)")
    parser.add_argument("--legacy-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-legacy", action="store_true", help="skip hindsight-litellm 0.5.4")
    parser.add_argument(
        "--skip", default="", help="comma-separated steps to skip: " + ",".join(STEPS), metavar="STEPS"
    )
    args = parser.parse_args()
    quick = args.quick
    sizes: dict[str, Any] = {
        "overhead_iterations": args.overhead_iterations or (30 if quick else 100),
        "stream_iterations": args.stream_iterations or (15 if quick else 40),
        "levels": args.levels or ("1,10,100" if quick else "1,10,100,500"),
        "turns": args.turns or (100 if quick else 500),
        "growth_turns": args.growth_turns if args.growth_turns is not None else (4 if quick else 12),
        "import_runs": args.import_runs or (1 if quick else 2),
        "cache_turns": args.cache_turns or (10 if quick else 20),
        "agent_messages": args.agent_messages or (2 if quick else 3),
    }
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(STEPS)
    if unknown:
        parser.error(f"unknown step(s) {sorted(unknown)}; steps: {', '.join(STEPS)}")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": sizes,
        "steps": [],
    }
    started = time.perf_counter()
    python = sys.executable
    legacy_flags: list[str] = ["--no-legacy"] if args.no_legacy else ["--legacy-venv", str(args.legacy_venv)]
    if not args.no_legacy:
        try:
            legacy_python(args.legacy_venv, results["machine"]["litellm"])
        except (subprocess.CalledProcessError, OSError) as exc:
            results["legacy_install_error"] = str(exc)
            legacy_flags = ["--no-legacy"]

    def json_flag(name: str) -> list[str]:
        return ["--json", str(ROOT / "bench" / "results" / f"{name}.json")]

    # Before the server starts: nothing else is running on the machine but the interpreter being measured.
    if "import_time" not in skip:
        results["import_time"] = step(
            "import_time",
            [
                python,
                "-m",
                "bench.import_time",
                "--runs",
                str(sizes["import_runs"]),
                "--legacy-venv",
                str(args.legacy_venv),
                *json_flag("import_time"),
            ],
            results,
        )
    if "core_install" not in skip:
        results["core_install"] = step(
            "core_install",
            [
                python,
                "-m",
                "bench.core_install",
                "--runs",
                "2" if quick else "5",
                "--label",
                "this checkout",
                *json_flag("core_install"),
            ],
            results,
        )
    if "pipeline_overhead" not in skip:
        step("pipeline_overhead", [python, "bench/pipeline_overhead.py"], results)
        results["pipeline_overhead_md"] = (ROOT / "bench" / "results" / "pipeline_overhead.md").read_text()
    with hindsight(args.server_url) as url:
        results["server"] = {"url_given": bool(args.server_url)}
        server = ["--server-url", url]
        if "client_latency" not in skip:
            step(
                "client_latency", [python, "bench/client_latency.py"], results, env={"HINDSIGHT_API_URL": url}
            )
            results["client_latency_md"] = (ROOT / "bench" / "results" / "client_latency.md").read_text()
        if "overhead" not in skip:
            results["overhead"] = step(
                "overhead",
                [
                    python,
                    "-m",
                    "bench.overhead",
                    *server,
                    "--iterations",
                    str(sizes["overhead_iterations"]),
                    *legacy_flags,
                    *json_flag("overhead"),
                ],
                results,
            )
        if "streaming" not in skip:
            results["streaming"] = step(
                "streaming",
                [
                    python,
                    "-m",
                    "bench.streaming",
                    *server,
                    "--iterations",
                    str(sizes["stream_iterations"]),
                    *json_flag("streaming"),
                ],
                results,
            )
        if "concurrency" not in skip:
            results["concurrency"] = step(
                "concurrency",
                [
                    python,
                    "-m",
                    "bench.concurrency",
                    *server,
                    "--levels",
                    sizes["levels"],
                    *json_flag("concurrency"),
                ],
                results,
            )
        # The 0.5.4 venv of these two is tests/compat/peer.py's (it has pytest, for tests.providers).
        peer_flags = ["--no-legacy"] if args.no_legacy else []
        if "prompt_cache" not in skip:
            results["prompt_cache"] = step(
                "prompt_cache",
                [
                    python,
                    "-m",
                    "bench.prompt_cache",
                    *server,
                    "--turns",
                    str(sizes["cache_turns"]),
                    *peer_flags,
                    *json_flag("prompt_cache"),
                ],
                results,
            )
        if "agent_loop" not in skip:
            results["agent_loop"] = step(
                "agent_loop",
                [
                    python,
                    "-m",
                    "bench.agent_loop",
                    *server,
                    "--messages",
                    str(sizes["agent_messages"]),
                    *peer_flags,
                    *json_flag("agent_loop"),
                ],
                results,
            )
        if "breaker" not in skip:
            results["breaker"] = step(
                "breaker", [python, "-m", "bench.breaker", *server, *json_flag("breaker")], results
            )
        if "proxy" not in skip:  # a Hindsight stand-in of its own: the server is not used
            results["proxy"] = step(
                "proxy",
                [
                    python,
                    "-m",
                    "bench.proxy",
                    "--processes",  # section 10's first tables; its same-process table is a run of its own
                    "each",
                    "--banks",
                    "own,shared",
                    "--requests",
                    "200" if args.quick else "600",
                    *json_flag("proxy"),
                ],
                results,
            )
        # Last: storing hundreds of turns leaves the server busy (consolidation) for minutes.
        if "storage" not in skip:
            results["storage"] = step(
                "storage",
                [
                    python,
                    "-m",
                    "bench.storage",
                    *server,
                    "--turns",
                    str(sizes["turns"]),
                    "--growth-turns",
                    str(sizes["growth_turns"]),
                    *json_flag("storage"),
                ],
                results,
            )
    results["seconds"] = round(time.perf_counter() - started, 1)
    (ROOT / "bench" / "results" / "run_all.json").write_text(json.dumps(results, indent=2, default=str))
    render(results)
    failed = [s["name"] for s in results["steps"] if not s["ok"]]
    print(f"[run_all] finished in {results['seconds']} s; report: docs/performance.md", file=sys.stderr)
    if failed:
        raise SystemExit(f"[run_all] failed steps: {', '.join(failed)}")


STEPS = (
    "import_time",
    "core_install",
    "pipeline_overhead",
    "client_latency",
    "overhead",
    "streaming",
    "concurrency",
    "prompt_cache",
    "agent_loop",
    "breaker",
    "proxy",
    "storage",
)

if __name__ == "__main__":
    main()
