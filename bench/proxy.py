"""The LiteLLM proxy with memory: the proxy process's CPU per request, throughput and latency, per hook.

The real proxy (``litellm --config``, one process, or ``--num-workers``) is started with
``callbacks: _proxy_hooks.switch``, which runs each request through the hook its ``bench_hook`` field
names, so one process serves every hook and each is compared with the baseline of that same process
(separate processes running the same code differ by a few ms of CPU per request); ``--processes each``
starts one proxy per hook instead (``callbacks: _proxy_hooks.<hook>``). The proxy forwards to the loopback
fake OpenAI provider (its own process), with a Hindsight stand-in that answers at once
(``bench._fake_hindsight``: the same recorded recall of ``--facts`` facts for every query, retains
acknowledged and counted). The hooks (``bench/_proxy_hooks.py``):

- ``baseline``: injects the very block our memory renders from those facts, with none of the work;
- ``memory``: the ready-made ``hindsight_proxy_hook`` (inject and store);
- ``memory_no_storage``: ``HindsightProxyHook(store_conversations=False)``;
- ``storage_only``: ``HindsightProxyHook(inject_memories=False)``.

All the proxies run at once. At each level C (default 10 and 50), C clients (each its own ``user``, hence
its own bank, and its own conversation) send chat requests one after another, ``--requests`` per hook in
all, after a warm-up, in ``--rounds`` interleaved rounds (every hook once per round), so that a change in
the machine's load hits every hook alike. The proxy's CPU
time (user + system, from ``/proc``, children included) is read before the load and after storage has
drained (every stored turn acknowledged by the stand-in), so storage's cost is in the figure. Reported:
CPU ms per request, requests per second, p50/p99 latency as the clients saw it, and retain requests per
stored turn. ``--banks shared`` sends every client's turns to one bank (a team bank): how far the storage
worker's batching goes when many turns arrive for one bank. ``--before PYTHON`` runs the hooks of another
checkout (its venv's interpreter, its own proxy process) in the same interleaved rounds, for before/after
figures.

Run: ``uv run python -m bench.proxy [--levels 10,50] [--requests 600] [--hooks baseline,memory,...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, FakeProvider, facts, machine, percentile, write_json
from tests.helpers import PROXY_CONFIG, free_port

HOOKS = ("baseline", "memory", "memory_no_storage", "storage_only")
_STORING = frozenset({"memory", "storage_only"})
MODEL = "gpt-4o-mini"
SYSTEM = "You are a helpful assistant for a small gardening shop. Answer briefly and politely."
_TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for text in child.read_text().split():
            found.extend(_descendants(int(text)))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (worker processes)."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


class FakeHindsight:
    """``bench._fake_hindsight`` in its own process; a context manager with ``url`` and ``stats()``."""

    def __init__(self, facts_file: Path) -> None:
        self._args = [sys.executable, "-m", "bench._fake_hindsight", "--facts-file", str(facts_file)]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> FakeHindsight:
        self._process = subprocess.Popen(
            self._args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.__exit__()
            raise RuntimeError(f"the Hindsight stand-in did not start (said {self.url!r})")
        return self

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.url}/_stats").json()
        return stats

    def reset(self) -> None:
        httpx.post(f"{self.url}/_stats/reset").raise_for_status()

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Proxy:
    """The real LiteLLM proxy with one hook, in a subprocess of its own; stopped by its PID."""

    def __init__(
        self, hook: str, api_base: str, hindsight_url: str, facts_file: Path, workers: int, python: str
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=f"bench-proxy-{hook}-"))
        config = PROXY_CONFIG.format(
            model=MODEL, api_base=api_base, callbacks=f"_proxy_hooks.{hook.partition('@')[0]}"
        )
        (self.directory / "config.yaml").write_text(config)
        shutil.copy(ROOT / "bench" / "_proxy_hooks.py", self.directory / "_proxy_hooks.py")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HINDSIGHT_API_KEY")}
        self.env.update(
            {
                "HINDSIGHT_API_URL": hindsight_url,
                "HINDSIGHT_BANK_ID": "bench-proxy-default",
                "BENCH_PROXY_FACTS": str(facts_file),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
                "NO_DOCKER": "True",
                "PYTHONPATH": str(self.directory),
                # Workers importing LiteLLM on a busy machine answer uvicorn's health check late.
                "TIMEOUT_WORKER_HEALTHCHECK": "180",
            }
        )
        self.command = [python, "-m", "litellm.proxy.proxy_cli", "--config", "config.yaml"]
        self.command += ["--host", "127.0.0.1", "--port", str(self.port)]
        if workers > 1:
            self.command += ["--num_workers", str(workers)]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Proxy:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> Proxy:
        log = (self.directory / "proxy.log").open("wb")
        self.process = subprocess.Popen(
            self.command, env=self.env, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the proxy exited:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the proxy did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return (self.directory / "proxy.log").read_text(errors="replace")

    def __exit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if "Traceback" in self.log():
            print(f"proxy log has a traceback:\n{self.log()[-3000:]}", file=sys.stderr)
        shutil.rmtree(self.directory, ignore_errors=True)


async def load(
    url: str, clients: int, total: int, *, run: str, shared_bank: bool, hook: str | None = None
) -> dict[str, Any]:
    """``clients`` concurrent clients send ``total`` requests in all; latencies and wall time. ``hook``
    names the hook a ``switch`` proxy runs the requests through."""
    latencies: list[float] = []
    errors: list[str] = []
    left = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=180, limits=limits) as http:

        async def client(number: int) -> None:
            for turn, _ in enumerate(left, start=1):
                body: dict[str, Any] = {
                    "model": MODEL,
                    "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"Question {turn} from client {number}: which rose?"},
                    ],
                    "user": f"bench-{run}-{number}",
                    "hindsight_session_id": f"{run}-client-{number}",
                }
                if shared_bank:
                    body["hindsight_bank_id"] = f"bench-{run}-team"
                if hook is not None:
                    body["bench_hook"] = hook
                started = time.perf_counter()
                try:
                    response = await http.post(
                        f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-master"}
                    )
                except httpx.HTTPError as exc:  # counted, not fatal: an overloaded proxy is a result too
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "errors": errors}


def _drain(hindsight: FakeHindsight, expected: int, timeout: float = 30.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    stats = hindsight.stats()
    while stats["retained_turns"] < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = hindsight.stats()
    time.sleep(0.3)  # anything still in flight
    return hindsight.stats()


def _rounds(
    proxies: dict[str, tuple[Proxy, str | None]],
    hindsight: FakeHindsight,
    clients: int,
    total: int,
    rounds: int,
    shared: bool,
) -> list[dict[str, Any]]:
    """``total`` requests per hook at ``clients`` concurrent clients, in ``rounds`` interleaved rounds (hook
    A, B, C, then A, B, C again...), so that a change in the machine's load hits every hook alike."""
    per_round = max(clients, total // rounds)
    acc: dict[str, dict[str, Any]] = {
        h: {"cpu": 0.0, "wall": 0.0, "lat": [], "errors": [], "stats": {}} for h in proxies
    }
    tag = time.monotonic_ns()
    hindsight.reset()
    for hook, (proxy, mode) in proxies.items():  # warm-up: connections, caches, the first lookups
        warm = f"warm-{hook}-{clients}-{tag}"
        asyncio.run(load(proxy.url, clients, 5 * clients, run=warm, shared_bank=shared, hook=mode))
    storing = sum(hook.partition("@")[0] in _STORING for hook in proxies)
    _drain(hindsight, 5 * clients * storing, timeout=10.0)  # the warm-ups' turns, before any round
    for number in range(rounds):
        for hook, (proxy, mode) in proxies.items():
            assert proxy.process is not None
            stores = hook.partition("@")[0] in _STORING
            if stores:
                _drain(hindsight, hindsight.stats()["retained_turns"])
            hindsight.reset()
            run = f"{hook}-{clients}-{tag}-{number}"
            cpu_before = cpu_seconds(proxy.process.pid)
            result = asyncio.run(load(proxy.url, clients, per_round, run=run, shared_bank=shared, hook=mode))
            stats = _drain(hindsight, per_round) if stores else hindsight.stats()
            entry = acc[hook]
            entry["cpu"] += cpu_seconds(proxy.process.pid) - cpu_before
            entry["wall"] += result["wall"]
            entry["lat"].extend(result["latencies"])
            entry["errors"].extend(result["errors"])
            for key, value in stats.items():
                entry["stats"][key] = entry["stats"].get(key, 0) + value
    rows = []
    for hook, entry in acc.items():
        latencies, stats = entry["lat"], entry["stats"]
        row: dict[str, Any] = {
            "hook": hook,
            "clients": clients,
            "requests": len(latencies),
            "errors": len(entry["errors"]),
            "cpu_ms_per_request": round(1000 * entry["cpu"] / len(latencies), 2),
            "requests_per_s": round(len(latencies) / entry["wall"], 1),
            "p50_ms": round(1000 * percentile(latencies, 50), 1),
            "p99_ms": round(1000 * percentile(latencies, 99), 1),
            "recalls": stats.get("recalls", 0),
            "retain_requests": stats.get("retain_requests", 0),
            "stored_turns": stats.get("retained_turns", 0),
        }
        if row["stored_turns"]:
            row["retain_requests_per_turn"] = round(row["retain_requests"] / row["stored_turns"], 3)
        if entry["errors"]:
            row["first_error"] = entry["errors"][0]
        rows.append(row)
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    for banks in dict.fromkeys(r.get("banks", "own") for r in rows):
        print(f"-- {'each client its own bank' if banks == 'own' else 'every client one team bank'}")
        _print_mode([r for r in rows if r.get("banks", "own") == banks])


def _checkout(row: dict[str, Any]) -> str:
    return str(row["hook"]).partition("@")[2]


def _print_mode(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'hook':<18} {'C':>3} {'CPU ms/req':>10} {'+ over base':>11} {'req/s':>7} {'ratio':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'retains/turn':>12}"
    )
    base = {(r["clients"], _checkout(r)): r for r in rows if r["hook"].partition("@")[0] == "baseline"}
    base.update({(r["clients"], "*"): r for r in rows if r["hook"] == "baseline"})
    rows = sorted(rows, key=lambda r: (r["clients"], _checkout(r), r["hook"].partition("@")[0] != "baseline"))
    for row in rows:
        ref = base.get((row["clients"], _checkout(row))) or base.get((row["clients"], "*"))
        extra = f"{row['cpu_ms_per_request'] - ref['cpu_ms_per_request']:+.2f}" if ref else "-"
        ratio = f"{row['requests_per_s'] / ref['requests_per_s']:.2f}" if ref else "-"
        per_turn = row.get("retain_requests_per_turn", "-")
        print(
            f"{row['hook']:<18} {row['clients']:>3} {row['cpu_ms_per_request']:>10.2f} {extra:>11} "
            f"{row['requests_per_s']:>7.1f} {ratio:>6} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} "
            f"{per_turn!s:>12}" + (f"  errors: {row['errors']}" if row["errors"] else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="10,50")
    parser.add_argument("--requests", type=int, default=600, help="requests per level and hook")
    parser.add_argument("--hooks", default=",".join(HOOKS))
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per level")
    parser.add_argument("--facts", type=int, default=12)
    parser.add_argument("--workers", type=int, default=1, help="the proxy's --num_workers")
    parser.add_argument(
        "--banks",
        default="own",
        help="own (each client its own bank), shared (every client one team bank), or both: own,shared",
    )
    parser.add_argument("--shared-bank", action="store_true", help="the same as --banks shared")
    parser.add_argument(
        "--before",
        default=None,
        metavar="PYTHON",
        help="also run the hooks with this interpreter (another checkout's venv), as <hook>@before",
    )
    parser.add_argument(
        "--processes",
        choices=("one", "each"),
        default="one",
        help="one proxy process serving every hook (the default: no difference between processes), "
        "or one process per hook",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    modes = ["shared"] if args.shared_bank else [m for m in args.banks.split(",") if m]
    if set(modes) - {"own", "shared"}:
        parser.error(f"--banks takes own and/or shared, got {args.banks!r}")
    hooks = [h for h in args.hooks.split(",") if h]
    unknown = set(hooks) - set(HOOKS)
    if unknown:
        parser.error(f"unknown hooks: {', '.join(sorted(unknown))} (known: {', '.join(HOOKS)})")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        facts_file = Path(scratch) / "facts.json"
        facts_file.write_text(json.dumps(facts(args.facts)))
        provider = stack.enter_context(FakeProvider(reply="Plant a hardy shrub rose in a sunny spot."))
        hindsight = stack.enter_context(FakeHindsight(facts_file))
        checkouts = {"": sys.executable, **({"@before": args.before} if args.before else {})}
        proxies: dict[str, tuple[Proxy, str | None]] = {}
        for suffix, python in checkouts.items():
            names = [h for h in hooks if suffix == "" or h != "baseline" or args.processes == "one"]
            if args.processes == "one":  # one process per checkout serves every hook: no process bias
                proxy = stack.enter_context(
                    Proxy("switch", provider.base_url, hindsight.url, facts_file, args.workers, python)
                )
                proxies.update({f"{h}{suffix}": (proxy, h) for h in names})
            else:
                for h in names:
                    proxy = Proxy(h, provider.base_url, hindsight.url, facts_file, args.workers, python)
                    proxies[f"{h}{suffix}"] = (stack.enter_context(proxy), None)
        for banks in modes:
            for clients in levels:
                shared = banks == "shared"
                for row in _rounds(proxies, hindsight, clients, args.requests, args.rounds, shared):
                    rows.append({"banks": banks, **row})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    _print(rows)
    write_json(
        args.json, {"machine": machine(), "workers": args.workers, "rounds": args.rounds, "rows": rows}
    )


if __name__ == "__main__":
    main()
