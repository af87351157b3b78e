"""Async concurrency: throughput and event-loop stalls of ``hindsight_litellm.acompletion`` with memory.

For each level C (default 1, 10, 100, 500), C tasks on one event loop make ``max(C, --min-calls)`` calls in
total (each task takes the next call until none is left), against the loopback fake OpenAI provider (its
own process) and the real Hindsight server, with a bank of ``--facts`` facts. The same is done with plain
``litellm.acompletion`` (no memory) as the baseline. Meanwhile a ticker task measures how late
``asyncio.sleep(0.005)`` wakes up: its worst lateness is the longest time the event loop was blocked.

``recall_timeout`` is raised (``--recall-timeout``, default 120 s) so that this measures throughput, not the
fail-open path; calls that failed open anyway are counted (their debug record has an error). While the loop
is late by more than 20 ms, a watchdog thread samples its stack every 5 ms and attributes the sample to the
innermost code that owns it (our render, our Hindsight client and its httpx connection pool, LiteLLM, or the
event loop's own I/O): where the stalls come from. Then, unless ``--no-pool-variant``, the top level runs once
more with memory on a fresh event loop whose Hindsight client was given a larger httpx connection pool
(``httpx.Limits(max_connections=1000, max_keepalive_connections=1000)`` instead of httpx's default 100 / 20),
to see how much of the stall the pool's queueing accounts for. Conversation
storage is off unless ``--store``: the server's processing of stored turns (see ``bench.storage``) would
otherwise compete with recall for this machine's two cores; handing a turn to storage is a queue put.

Run: ``uv run python -m bench.concurrency [--levels 1,10,100,500] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import (
    FakeProvider,
    facts,
    machine,
    seed_tagged,
    server_url,
    summary,
    wait_idle,
    write_json,
)

QUERY = "Which topics does the user like, and on which day?"


async def ticker(stop: asyncio.Event, lags: list[float], last: list[float]) -> None:
    """Record how late each ``asyncio.sleep(0.005)`` returns (ms); ``last[0]`` is the last wake-up."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        last[0] = time.perf_counter()
        lags.append((last[0] - started - 0.005) * 1000)


def owner(filenames: list[str]) -> str:
    """Who a stalled stack belongs to (``filenames`` innermost first)."""
    for i, name in enumerate(filenames):
        if "/hindsight_core/pipeline/" in name:
            return "memory: render and token counting"
        if "/hindsight_core/client/" in name:
            if any("/httpcore/" in inner for inner in filenames[:i]):
                return "Hindsight client: httpx/httpcore connection pool"
            return "Hindsight client: request and response handling"
        if "/hindsight_core/" in name or "/hindsight_litellm/" in name:
            return "memory: other"
        if "/litellm/" in name or "/openai/" in name or "/aiohttp/" in name:
            return "LiteLLM and its HTTP client"
    return "event loop, sockets, other"


class Watchdog:
    """Samples the event loop thread's stack every ``interval`` s while the loop is more than ``late`` s
    behind (the ticker has not woken up), and counts the samples by :func:`owner`."""

    def __init__(self, last: list[float], *, interval: float = 0.005, late: float = 0.02) -> None:
        self._last, self._interval, self._late = last, interval, late
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self.samples: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="loop-watchdog", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if time.perf_counter() - self._last[0] <= self._late:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            names = []
            while frame is not None:
                names.append(frame.f_code.co_filename)
                frame = frame.f_back
            self.samples[owner(names)] += 1

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def stalled_ms(self) -> dict[str, float]:
        return {name: count * self._interval * 1000 for name, count in self.samples.most_common()}


async def level(
    concurrency: int, total: int, make_call: Callable[[int], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    remaining = iter(range(total))
    latencies: list[float] = []
    outcomes: list[dict[str, Any]] = []
    errors: list[str] = []

    async def worker() -> None:
        for i in remaining:
            started = time.perf_counter()
            try:
                outcomes.append(await make_call(i))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    stop = asyncio.Event()
    lags: list[float] = []
    last = [time.perf_counter()]
    tick = asyncio.create_task(ticker(stop, lags, last))
    await asyncio.sleep(0.05)  # the ticker's baseline
    with Watchdog(last) as watchdog:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        stop.set()
        await tick
    return {
        "concurrency": concurrency,
        "calls": total,
        "seconds": elapsed,
        "calls_per_s": len(latencies) / elapsed,
        "latency_ms": summary(latencies),
        "loop_lag_ms": summary(lags),
        "lateness_over_20ms_s": sum(lag for lag in lags if lag > 20) / 1000,
        "stalled_ms_by_owner": watchdog.stalled_ms(),
        "errors": len(errors),
        "error_samples": errors[:3],
        "failed_open": sum(1 for o in outcomes if o.get("error")),
        "failed_open_samples": [o["error"] for o in outcomes if o.get("error")][:3],
        "injected": sum(1 for o in outcomes if o.get("injected")),
        "recall_ms": summary([o["recall"] for o in outcomes if o.get("recall") is not None]),
    }


def larger_pool() -> Callable[[], None]:
    """Make the Hindsight async clients created from now on use a 1000-connection httpx pool; returns the
    function that undoes it (a what-if for this benchmark, not a setting of the package)."""
    import httpx

    from hindsight_core import AsyncHindsightClient
    from hindsight_core.connection import Connection

    original = Connection.new_async_client

    def new_async_client(self: Connection) -> AsyncHindsightClient:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        return AsyncHindsightClient(
            self.base_url,
            self.api_key or "",
            timeouts=self.timeouts,
            retry=self.retry,
            http_client=httpx.AsyncClient(follow_redirects=False, limits=limits),
        )

    setattr(Connection, "new_async_client", new_async_client)  # noqa: B010

    def undo() -> None:
        setattr(Connection, "new_async_client", original)  # noqa: B010

    return undo


def configure(args: argparse.Namespace, url: str, bank: str) -> None:
    import hindsight_litellm

    hindsight_litellm.configure(
        hindsight_api_url=url,
        bank_id=bank,
        store_conversations=args.store,
        recall_tags=["seed"],
        recall_tags_match="any_strict",
        recall_timeout=args.recall_timeout,
    )


async def run(
    args: argparse.Namespace, provider: str, levels: list[int], *, plain_too: bool = True
) -> list[dict[str, Any]]:
    import litellm

    import hindsight_litellm

    call: dict[str, Any] = {"model": "openai/gpt-4o-mini", "api_base": provider, "api_key": "sk-test"}

    def messages(i: int) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"{QUERY} (call {i})"},
        ]

    async def plain(i: int) -> dict[str, Any]:
        await litellm.acompletion(messages=messages(i), **call)
        return {}

    async def memory(i: int) -> dict[str, Any]:
        await hindsight_litellm.acompletion(messages=messages(i), **call)
        record = hindsight_litellm.get_last_injection_debug()
        if record is None:
            return {"error": "no debug record"}
        return {"error": record.error, "injected": record.injected, "recall": record.timings_ms.get("recall")}

    # Warm both paths (connections, LiteLLM's lazy imports, the tokenizer) before measuring.
    await asyncio.gather(*(plain(i) for i in range(5)), *(memory(i) for i in range(5)))
    out = []
    for concurrency in levels:
        total = max(concurrency, args.min_calls)
        row = {"memory": await level(concurrency, total, memory)}
        if plain_too:
            row["plain"] = await level(concurrency, total, plain)
        out.append(row)
        if args.store:
            await hindsight_litellm.config.PIPELINE.storage.aflush(timeout=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--levels", default="1,10,100,500", help="concurrency levels, comma-separated")
    parser.add_argument("--min-calls", type=int, default=40, help="calls per level at least")
    parser.add_argument("--facts", type=int, default=50)
    parser.add_argument("--recall-timeout", type=float, default=120.0)
    parser.add_argument("--store", action="store_true", help="store the conversations too")
    parser.add_argument("--no-pool-variant", action="store_true", help="skip the larger-pool run")
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    started = time.perf_counter()
    with server_url(args.server_url) as url, FakeProvider(reply="OK, noted.") as provider:
        bank = f"bench-concurrency-{uuid.uuid4().hex[:8]}"
        seed_tagged(url, bank, facts(args.facts), ["seed"])
        wait_idle(url, [bank])
        configure(args, url, bank)
        levels = asyncio.run(run(args, provider.base_url, args.levels))
        variant = None
        if not args.no_pool_variant and args.levels:
            undo = larger_pool()
            try:
                variant = asyncio.run(run(args, provider.base_url, args.levels[-1:], plain_too=False))[0][
                    "memory"
                ]
            finally:
                undo()
    write_json(
        args.json,
        {
            "machine": machine(),
            "larger_pool": variant,
            "facts": args.facts,
            "store": args.store,
            "recall_timeout": args.recall_timeout,
            "levels": levels,
            "seconds": time.perf_counter() - started,
        },
    )


if __name__ == "__main__":
    main()
