"""The circuit breaker, measured: how long calls are held while the Hindsight server hangs, refuses or
flaps, how soon memory is back in the prompt when it answers again, and that storage still stores every
turn once.

The real local Hindsight server is reached through a loopback TCP proxy that can hang (accept connections,
never answer), refuse (accept and reset at once: what a client sees of a port nobody serves) and be
restored, dropping what it held (``tests/faults.py``, ``CuttableProxy``); reflect faults come from
``HindsightFaults`` (``tests/reliability/hindsight_faults.py``). The models are the loopback fake OpenAI
provider (``tests/providers.py``, in this process) for LiteLLM, and the frameworks' fakes for LangChain
(``RunnableWithHindsight`` around ``GenericFakeChatModel``) and LlamaIndex (``HindsightMemory`` in a
``SimpleChatEngine`` with ``MockLLMWithChatMemoryOfLastCall``): the adapters of
``tests/reliability/adapters.py``. Default settings (recall budget 5 s, 2 retries, storage on), no session:
each LiteLLM or LangChain call is a conversation of its own (the LlamaIndex chat engine keeps one).

- ``outage``: one call every 0.5 s (the next at once when one took longer); the server down from 1.75 s to
  11.75 s of a 20 s run, hung or refused, through ``hindsight_litellm.completion``; and hung from 1.75 s
  to 7.75 s of a 12 s run through LangChain and LlamaIndex.
- ``waves``: ``acompletion`` in 50 concurrent asyncio tasks, a wave every 0.5 s (the next at once when one
  took longer), the server hung for 10 s; the same waves with plain ``litellm.acompletion`` as the
  baseline of what 50 concurrent calls cost here without memory. Storage off (the server would spend
  minutes on the thousand turns).
- ``flap``: one call every 0.5 s for 30 s, the server up 2 s, down 2 s (hung and refused in turn).
- ``reflect``: reflect mode with the server's reflect answering 503, and hung (``reflect_timeout`` 2 s).
- ``storage``: afterwards, every turn of every run with storage on is in its bank's documents once.

A call is held for its wall time; "memory's part" is the debug record's ``timings_ms["total"]``.
Recovery is from the server answering again to the end of the first call whose prompt held memory;
"found" is when the breaker was told the server answers (its probe, or a storage request).

Run: ``uv run python -m bench.breaker [--server-url URL] [--only outage,waves,flap,reflect] [--json PATH]``
(about 3 minutes, with the server's start).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import hindsight_litellm as hl
from bench._common import machine, server_url, summary, wait_idle, write_json
from bench._outage import (
    QUICK,
    BreakerWatch,
    Call,
    GCPauses,
    Timetable,
    Wave,
    flap_figures,
    outage_figures,
    raw,
    steady,
    stored_once,
    to_call,
    waves,
)
from bench.report_breaker import console_table
from hindsight_core import MemorySettings
from hindsight_core.breaker import PROBE_INTERVALS, PROBE_TIMEOUT, reset_breakers
from hindsight_core.pipeline import MEMORY_OPEN
from hindsight_core.storage import default_worker
from tests.faults import CuttableProxy
from tests.helpers import seed_bank
from tests.providers import FakeOpenAI
from tests.reliability.adapters import ADAPTERS, REPLY, Answer, Target
from tests.reliability.hindsight_faults import Fault, HindsightFaults

__all__ = ["main"]

FACT = "The user's favourite colour is teal."
QUESTION = "What is my favourite colour?"
DOWN_AT = 1.75
LONG, SHORT = (11.75, 20.0), (7.75, 12.0)  # (up at, duration): a 10 s outage in 20 s, a 6 s one in 12 s
BUDGET = MemorySettings().recall_timeout  # the default recall budget (5 s)
FLAP_DURATION, FLAP_PHASE = 30.0, 2.0

Stored = dict[str, Any]
"""What a run stored: its bank and the markers of its turns (each must be stored once)."""


def load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def new_bank(url: str, kind: str) -> tuple[str, str]:
    """A bank holding the fact, and a marker prefix for one run's questions."""
    tag = uuid.uuid4().hex[:6]
    bank = f"bench-breaker-{kind}-{tag}"
    seed_bank(url, bank, [FACT])
    return bank, tag


def questions(tag: str) -> Callable[[int], str]:
    return lambda index: f"{QUESTION} [{tag}-{index:04d}]"


def markers(tag: str, calls: list[Call], warm: int) -> list[str]:
    return [f"[{tag}-{i:04d}]" for i in range(-warm, 0)] + [f"[{tag}-{c.index:04d}]" for c in calls]


async def warm_up(ask: Callable[[str], Any], question: Callable[[int], str], count: int = 2) -> None:
    """Calls before the timetable (connections, lazy imports); their turns are stored too."""
    for index in range(-count, 0):
        await ask(question(index))


# ---------------------------------------------------------------------------------------------- scenarios


async def outage(
    url: str, provider: FakeOpenAI, adapter_name: str, kind: str, timing: tuple[float, float]
) -> tuple[dict[str, Any], Stored]:
    provider.clear()  # the request log of earlier runs (the GC walks it)
    bank, tag = new_bank(url, "outage")
    proxy = CuttableProxy(url)
    try:
        hl.reset_config()  # what an earlier run configured (storage off, say) is not this run's
        target = Target(proxy.url, bank, None, provider, default_worker(), {})
        adapter = ADAPTERS[adapter_name](target)
        question = questions(tag)
        await warm_up(adapter.ask, question)
        down = proxy.hang if kind == "hung" else proxy.cut
        up_at, duration = timing
        timetable = Timetable([(DOWN_AT, "down", down), (up_at, "up", proxy.restore)])
        watch = BreakerWatch(proxy.url, timetable)
        calls = await steady(adapter.ask, question, adapter.reply, timetable, duration=duration)
        timetable.stop()
        flushed = default_worker().flush(timeout=120)  # through the proxy, restored
    finally:
        proxy.close()
    (down_at,), (restored_at,) = timetable.times("down"), timetable.times("up")
    figures = outage_figures(calls, down_at, restored_at, watch.times)
    result = {
        "scenario": f"{adapter_name}, {kind}",
        "down_at": round(down_at, 3),
        "up_at": round(restored_at, 3),
        "duration": duration,
        "storage_flushed": flushed,
        **figures,
        "raw": raw(calls),
    }
    return result, {"scenario": result["scenario"], "bank": bank, "markers": markers(tag, calls, 2)}


async def concurrent_waves(url: str, provider: FakeOpenAI, tasks: int) -> dict[str, Any]:
    import litellm

    provider.clear()  # the request log of earlier runs (the GC walks it)
    bank, tag = new_bank(url, "waves")
    proxy = CuttableProxy(url)
    question = questions(tag)
    hl.reset_config()
    hl.configure(hindsight_api_url=proxy.url, bank_id=bank, store_conversations=False)
    provider.reply = REPLY
    model = {"model": "openai/gpt-4o-mini", "api_base": provider.base_url, "api_key": "sk-test"}

    async def one(index: int, timetable: Timetable) -> Call:
        started = timetable.now()
        try:
            response = await hl.acompletion(messages=[{"role": "user", "content": question(index)}], **model)
        except Exception as exc:
            return Call(index, started, timetable.now(), False, False, None, False, repr(exc))
        ended = timetable.now()
        record = hl.get_last_injection_debug()
        assert record is not None
        call = to_call(index, started, ended, Answer(response.choices[0].message.content, record, ""), REPLY)
        call.memory = record.injected  # checked against what the provider received, below
        return call

    async def plain(index: int, timetable: Timetable) -> Call:
        started = timetable.now()
        await litellm.acompletion(
            messages=[{"role": "user", "content": f"{QUESTION} [plain-{index}]"}], **model
        )
        return Call(index, started, timetable.now(), False, False, None, True)

    up_after = 10.0
    try:
        await waves(plain, Timetable([]), tasks=10, interval=0.5, until=_count(1), limit=60, first_index=-10)
        with GCPauses() as plain_collector:
            baseline = await waves(plain, Timetable([]), tasks=tasks, interval=0.5, until=_count(3), limit=60)
        # A warm-up wave (imports, first connections) with a long budget: on this 2-core machine 50
        # recalls at once can take the server longer than the 5 s budget, and a lookup that times out
        # opens the breaker.
        hl.configure(hindsight_api_url=proxy.url, bank_id=bank, store_conversations=False, recall_timeout=60)
        warm = await waves(
            one, Timetable([]), tasks=10, interval=0.5, until=_count(1), limit=60, first_index=-10
        )
        hl.reset_config()
        hl.configure(hindsight_api_url=proxy.url, bank_id=bank, store_conversations=False)
        reset_breakers()
        timetable = Timetable([(0.0, "down", proxy.hang), (up_after, "up", proxy.restore)])
        watch = BreakerWatch(proxy.url, timetable)

        def back(done: list[Wave]) -> bool:
            return done[-1].started > up_after and any(c.memory for c in done[-1].calls)

        with GCPauses() as collector:
            done = await waves(
                one, timetable, tasks=tasks, interval=0.5, until=back, limit=up_after + 8.0, offset=0.1
            )
        timetable.stop()
    finally:
        proxy.close()
    sent: dict[str, bool] = {}
    for request in provider.requests:  # memory in the prompt, as the provider received it
        text = str((request.json or {}).get("messages"))
        for marker in (m for m in text.split("[") if m.startswith(tag)):
            sent[marker.split("]")[0]] = MEMORY_OPEN in text
    calls = [c for wave in done for c in wave.calls]
    wire_mismatch = sum(sent.get(f"{tag}-{c.index:04d}") is not c.memory for c in calls if c.answered)
    (down_at,), (up_at,) = timetable.times("down"), timetable.times("up")
    figures = outage_figures(calls, down_at, up_at, watch.times, first_wave=tasks)
    later = [c for c in calls if c.started >= down_at and c.started < up_at][tasks:]
    plain_calls = [c for wave in baseline for c in wave.calls]
    return {
        "scenario": f"litellm.acompletion x{tasks} tasks, hung",
        "tasks": tasks,
        "plain_held_ms": {
            k: round(v * 1000, 1) for k, v in summary([c.held for c in plain_calls]).items() if k != "n"
        },
        "warm_wave_with_memory": f"{sum(c.memory for c in warm[0].calls)}/{len(warm[0].calls)}",
        "warm_wave_seconds": round(max(c.ended for c in warm[0].calls) - warm[0].started, 3),
        "warm_wave_errors": sorted({c.error or "" for c in warm[0].calls if not c.memory})[:3],
        "later_memory_ms": {
            k: round(v, 2) for k, v in summary([c.memory_ms or 0.0 for c in later]).items() if k != "n"
        },
        "gc_pauses": collector.figures(),
        "plain_gc_pauses": plain_collector.figures(),
        "later_held_ms": {
            k: round(v * 1000, 1) for k, v in summary([c.held for c in later]).items() if k != "n"
        },
        "waves": len(done),
        "wave_starts": [round(w.started, 3) for w in done],
        "wave_seconds": [round(max(c.ended for c in w.calls) - w.started, 3) for w in done],
        "record_vs_wire_mismatches": wire_mismatch,
        "down_at": round(down_at, 3),
        "up_at": round(up_at, 3),
        **figures,
    }


def _count(n: int) -> Callable[[list[Wave]], bool]:
    return lambda done: len(done) >= n


async def flapping(url: str, provider: FakeOpenAI) -> tuple[dict[str, Any], Stored]:
    provider.clear()  # the request log of earlier runs (the GC walks it)
    bank, tag = new_bank(url, "flap")
    proxy = CuttableProxy(url)
    events: list[tuple[float, str, Callable[[], None]]] = []
    for number, start in enumerate(range(int(FLAP_PHASE), int(FLAP_DURATION), int(2 * FLAP_PHASE))):
        kind = "hung" if number % 2 == 0 else "refused"
        events.append((float(start), f"down-{kind}", proxy.hang if kind == "hung" else proxy.cut))
        events.append((start + FLAP_PHASE, "up", proxy.restore))
    try:
        hl.reset_config()
        target = Target(proxy.url, bank, None, provider, default_worker(), {})
        adapter = ADAPTERS["litellm.completion"](target)
        question = questions(tag)
        await warm_up(adapter.ask, question)
        timetable = Timetable(events)
        calls = await steady(
            adapter.ask, question, adapter.reply, timetable, duration=FLAP_DURATION, offset=0.25
        )
        timetable.stop()
        flushed = default_worker().flush(timeout=120)
    finally:
        proxy.close()
    downs = [(name.split("-", 1)[1], at) for name, at in timetable.ran if name.startswith("down-")]
    ups = timetable.times("up")
    phases = [(at, up, kind) for (kind, at), up in zip(downs, ups, strict=True)]
    result = {
        "scenario": "litellm.completion, flapping (up 2 s, down 2 s: hung, refused in turn)",
        "storage_flushed": flushed,
        "phases": [[round(start, 3), round(end, 3), kind] for start, end, kind in phases],
        **flap_figures(calls, phases, BUDGET, FLAP_DURATION),
        "raw": raw(calls),
    }
    return result, {"scenario": "flapping", "bank": bank, "markers": markers(tag, calls, 2)}


async def reflect_fallback(url: str, provider: FakeOpenAI) -> tuple[dict[str, Any], Stored]:
    provider.clear()  # the request log of earlier runs (the GC walks it)
    bank, tag = new_bank(url, "reflect")
    faults = HindsightFaults(url)
    question = questions(tag)
    rows: list[dict[str, Any]] = []
    asked: list[str] = []
    try:
        cases: tuple[tuple[str, Fault, dict[str, Any]], ...] = (
            (
                "reflect answers 503",
                Fault(503, b'{"detail": "the LLM is down"}', {"content-type": "application/json"}),
                {},
            ),
            ("reflect hangs", Fault(hang=True), {"reflect_timeout": 2.0}),
        )
        for name, fault, options in cases:
            hl.reset_config()
            target = Target(
                faults.url, bank, None, provider, default_worker(), {"use_reflect": True, **options}
            )
            adapter = ADAPTERS["litellm.completion"](target)
            if not asked:  # first use of LiteLLM in this process, when the scenario runs alone
                await warm_up(adapter.ask, question, count=1)
                asked.append(f"[{tag}-{-1:04d}]")
            faults.fail("reflect", fault)
            for _ in range(2):
                index = len(rows)
                asked.append(f"[{tag}-{index:04d}]")
                started = time.perf_counter()
                answer = await adapter.ask(question(index))
                held = time.perf_counter() - started
                record = answer.record
                rows.append(
                    {
                        "case": name,
                        "held_ms": round(held * 1000, 1),
                        "memory_in_prompt": MEMORY_OPEN in answer.sent and "teal" in answer.sent,
                        "mode": record.mode,
                        "fallback": record.fallback,
                        "reflect_ms": round(record.timings_ms.get("reflect", float("nan")), 1),
                        "recall_ms": round(record.timings_ms.get("recall", float("nan")), 1),
                        "answered": answer.text == adapter.reply,
                    }
                )
            faults.clear()
        flushed = default_worker().flush(timeout=120)
        reflect_requests = faults.hits["reflect"]
    finally:
        faults.close()
    result = {
        "scenario": "reflect fallback",
        "calls": rows,
        "reflect_requests": reflect_requests,
        "storage_flushed": flushed,
    }
    return result, {"scenario": "reflect fallback", "bank": bank, "markers": asked}


OUTAGES = (
    ("litellm.completion", "hung", LONG),
    ("litellm.completion", "refused", LONG),
    ("langchain", "hung", SHORT),
    ("llamaindex", "hung", SHORT),
)
SCENARIOS = ("outage", "waves", "flap", "reflect")


def settle(url: str, bank: str) -> float:
    """Let the server finish what the run stored, so the next run's recalls do not queue behind it."""
    return round(wait_idle(url, [bank], timeout=120), 1)


async def run(url: str, tasks: int, only: set[str]) -> dict[str, Any]:
    stored: list[Stored] = []
    results: dict[str, Any] = {"stage_seconds": {}}

    def stage(name: str) -> Callable[[], None]:
        print(f"[breaker] {name}", file=sys.stderr, flush=True)
        reset_breakers()
        began = time.perf_counter()
        return lambda: results["stage_seconds"].__setitem__(name, round(time.perf_counter() - began, 1))

    with FakeOpenAI() as provider:
        if "outage" in only:
            results["outages"] = []
            for adapter_name, kind, timing in OUTAGES:
                done = stage(f"{adapter_name}, {kind}")
                result, turns = await outage(url, provider, adapter_name, kind, timing)
                result["settle_seconds"] = settle(url, turns["bank"])
                results["outages"].append(result)
                stored.append(turns)
                done()
        if "waves" in only:
            done = stage(f"acompletion x{tasks}")
            results["waves"] = await concurrent_waves(url, provider, tasks)
            done()
        if "flap" in only:
            done = stage("flapping")
            results["flap"], turns = await flapping(url, provider)
            results["flap"]["settle_seconds"] = settle(url, turns["bank"])
            stored.append(turns)
            done()
        if "reflect" in only:
            done = stage("reflect")
            results["reflect"], turns = await reflect_fallback(url, provider)
            stored.append(turns)
            done()
    done = stage("storage")
    results["storage"] = stored_once(url, [(r["scenario"], r["bank"], r["markers"]) for r in stored])
    done()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent acompletion tasks (default 50)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SCENARIOS):
        parser.error(f"unknown scenario(s) {sorted(only - set(SCENARIOS))}")
    started = time.perf_counter()
    begun = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with server_url(args.server_url) as url:
        load_before = load()
        results = asyncio.run(run(url, args.tasks, only))
        load_after = load()
    results = {
        "started": begun,
        "machine": machine(),
        "load": {"before": load_before, "after": load_after},
        "settings": {
            "recall_timeout": BUDGET,
            "probe_intervals": PROBE_INTERVALS,
            "probe_timeout": PROBE_TIMEOUT,
            "quick_ms": QUICK * 1000,
            "outage": {"down_at": DOWN_AT, "up_at_duration": {"long": LONG, "short": SHORT}, "interval": 0.5},
        },
        **results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    for line in console_table(results):
        print(line, file=sys.stderr)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
