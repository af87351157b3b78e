"""The machinery of ``bench/breaker.py``: a steady caller, waves of concurrent callers, a server that goes
down and up on a timetable, the figures read from what each call saw, and the check that every turn was
stored once.

Times are seconds since the run's start (``time.perf_counter()``). A call is *held* for its wall time (the
whole call as its caller sees it: memory, the framework, the loopback fake model that answers at once). A
call has *memory* when the text its model was sent holds the injected memory block.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from hindsight_core.breaker import ServerBreaker, breaker_for
from hindsight_core.pipeline import MEMORY_OPEN
from tests.helpers import document_text, documents, retains_running
from tests.reliability.adapters import Answer

__all__ = [
    "QUICK",
    "BreakerWatch",
    "Call",
    "GCPauses",
    "Timetable",
    "Wave",
    "flap_figures",
    "outage_figures",
    "raw",
    "steady",
    "stored_once",
    "to_call",
    "waves",
]

QUICK = 0.05
"""Seconds: a call held longer than this paid for the outage (the issue's "~50 ms")."""


@dataclass
class Call:
    """One call as its caller saw it."""

    index: int
    started: float
    ended: float
    memory: bool  # the model was sent the memory block
    tried: bool  # a lookup was sent to the server (not skipped by the breaker)
    memory_ms: float | None  # memory's own part of the call (the debug record's ``timings_ms["total"]``)
    answered: bool  # the model's answer came back to the caller
    error: str | None = None  # the debug record's error, or what the call raised

    @property
    def held(self) -> float:
        return self.ended - self.started


def to_call(index: int, started: float, ended: float, answer: Answer, reply: str) -> Call:
    record = answer.record
    return Call(
        index,
        started,
        ended,
        memory=MEMORY_OPEN in answer.sent,
        tried="recall" in record.timings_ms or "reflect" in record.timings_ms,
        memory_ms=record.timings_ms.get("total"),
        answered=answer.text == reply,
        error=record.error,
    )


class Timetable:
    """Runs ``(at, name, action)`` events at their times after :meth:`start`, on a thread of its own (so a
    caller held by the server never delays the server's coming back), and records when each ran."""

    def __init__(self, events: Sequence[tuple[float, str, Callable[[], None]]]) -> None:
        self._events = sorted(events, key=lambda event: event[0])
        self.ran: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-timetable", daemon=True)
        self.t0 = 0.0

    def start(self) -> float:
        self.t0 = time.perf_counter()
        self._thread.start()
        return self.t0

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        for at, name, action in self._events:
            if self._stop.wait(max(0.0, at - self.now())):
                return
            action()
            self.ran.append((name, self.now()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def times(self, name: str) -> list[float]:
        return [at for ran, at in self.ran if ran == name]


class GCPauses:
    """The garbage collector's pauses while the block runs (a stall of every task on the loop)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began))

    def __enter__(self) -> GCPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, float | int | None]:
        full = [seconds for generation, seconds in self.pauses if generation == 2]
        return {
            "collections": len(self.pauses),
            "max_ms": _ms(max((seconds for _, seconds in self.pauses), default=None)),
            "total_ms": _ms(sum(seconds for _, seconds in self.pauses)),
            "full_collections": len(full),
            "full_max_ms": _ms(max(full, default=None)),
        }


class BreakerWatch:
    """When the circuit breaker of ``url`` says the server can be tried again (its probe got an answer,
    or a request did), in the timetable's time."""

    def __init__(self, url: str, timetable: Timetable) -> None:
        self.times: list[float] = []
        self._timetable = timetable
        breaker_for(url).listen(self.available)  # held weakly: keep the watch while it matters

    def available(self, breaker: ServerBreaker) -> None:
        self.times.append(self._timetable.now())


Ask = Callable[[str], Awaitable[Answer]]


async def steady(
    ask: Ask,
    question: Callable[[int], str],
    reply: str,
    timetable: Timetable,
    *,
    duration: float,
    interval: float = 0.5,
    offset: float = 0.0,
) -> list[Call]:
    """One caller: a call every ``interval`` s (the next one at once if a call took longer), from
    ``offset`` until ``duration``; the timetable starts with the first call."""
    calls: list[Call] = []
    timetable.start()
    await asyncio.sleep(offset)
    index = 0
    while (started := timetable.now()) < duration:
        try:
            answer = await ask(question(index))
        except Exception as exc:  # a call that failed: what the caller would see
            calls.append(Call(index, started, timetable.now(), False, False, None, False, repr(exc)))
        else:
            calls.append(to_call(index, started, timetable.now(), answer, reply))
        index += 1
        await asyncio.sleep(max(0.0, started + interval - timetable.now()))
    return calls


@dataclass
class Wave:
    started: float
    calls: list[Call] = field(default_factory=list)


async def waves(
    one: Callable[[int, Timetable], Awaitable[Call]],
    timetable: Timetable,
    *,
    tasks: int,
    interval: float,
    until: Callable[[list[Wave]], bool],
    limit: float,
    offset: float = 0.0,
    first_index: int = 0,
) -> list[Wave]:
    """Waves of ``tasks`` concurrent calls (``one(index, timetable)``, one asyncio task each), from
    ``offset``, the next wave ``interval`` s after the last one started (at once if it took longer), until
    ``until(waves)`` or ``limit`` s. Indexes count from ``first_index``."""
    done: list[Wave] = []
    timetable.start()
    await asyncio.sleep(offset)
    index = first_index
    while (started := timetable.now()) < limit:
        wave = Wave(started)
        wave.calls = list(await asyncio.gather(*(one(index + i, timetable) for i in range(tasks))))
        index += tasks
        done.append(wave)
        if until(done):
            break
        await asyncio.sleep(max(0.0, started + interval - timetable.now()))
    return done


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def outage_figures(
    calls: list[Call], down: float, up: float, found: list[float], *, first_wave: int = 1
) -> dict[str, Any]:
    """What a server that was down from ``down`` to ``up`` cost: the first ``first_wave`` calls that found
    it down (or were in flight when it went, and did not get their memory), every later call of the outage,
    and the calls after it until memory was back; ``found``: when the breaker found the server again."""
    before = [c for c in calls if c.ended <= down]
    unaffected = [c for c in calls if c.ended > down and c.started < down and c.memory]  # answered in time
    hit = [c for c in calls if c.ended > down and c.started < up and c not in unaffected]
    first, later = hit[:first_wave], hit[first_wave:]
    back = next((c for c in calls if c.ended >= up and c.memory), None)
    waiting = [c for c in calls if c.started >= up and (back is None or c.index < back.index)]
    after = [c for c in calls if c.started >= up]
    return {
        "calls": len(calls),
        "answered": sum(c.answered for c in calls),
        "before_with_memory": f"{sum(c.memory for c in before + unaffected)}/{len(before + unaffected)}",
        "first_held_ms": _ms(max((c.held for c in first), default=None)),
        "first_started_before_down": sum(c.started < down for c in first),
        "first_lookups_sent": sum(c.tried for c in first),
        "first_error": first[0].error if first else None,
        "later_calls": len(later),
        "later_max_held_ms": _ms(max((c.held for c in later), default=None)),
        "later_held_over_quick": sum(c.held > QUICK for c in later),
        "later_lookups_sent": sum(c.tried for c in later),
        "later_max_memory_ms": max((c.memory_ms or 0.0 for c in later), default=None),
        "recovery_ms": _ms(None if back is None else back.ended - up),
        "probe_found_ms": _ms(next((at - up for at in found if at >= up), None)),
        "recovery_call_started_ms": _ms(None if back is None else back.started - up),
        "recovery_call_held_ms": _ms(None if back is None else back.held),
        "calls_without_memory_after_up": len(waiting),
        "after_with_memory": f"{sum(c.memory for c in after)}/{len(after)}",
        "errors_raised": sorted({c.error or "" for c in calls if not c.answered})[:3],
    }


def flap_figures(
    calls: list[Call], phases: list[tuple[float, float, str]], budget: float, duration: float
) -> dict[str, Any]:
    """A server that was down in each of ``phases`` (start, end, kind) and up between them."""

    def phase(call: Call) -> str:
        return next((kind for start, end, kind in phases if start <= call.started < end), "up")

    kinds = sorted({kind for *_, kind in phases})
    up = [c for c in calls if phase(c) == "up"]
    down = [c for c in calls if phase(c) != "up"]
    ups = [(0.0, phases[0][0])] + [
        (end, phases[i + 1][0] if i + 1 < len(phases) else duration) for i, (_, end, _) in enumerate(phases)
    ]
    back = []
    for start, end in ups[1:]:
        first = next((c for c in calls if start <= c.ended < end and c.memory), None)
        back.append(_ms(None if first is None else first.ended - start))
    costs = []  # per down phase: the calls it held (those in flight when it began, and any started in it)
    for start, end, kind in phases:
        held = [c for c in calls if c.held > QUICK and c.started < end and c.ended > start]
        others = [c for c in calls if start <= c.started < end and c not in held]
        costs.append(
            {
                "kind": kind,
                "calls_held": len(held),
                "in_flight_when_down": sum(c.started < start for c in held),
                "with_memory": sum(c.memory for c in held),
                "max_held_ms": _ms(max((c.held for c in held), default=None)),
                "other_calls": len(others),
                "other_lookups_sent": sum(c.tried for c in others),
            }
        )
    paid = [c for c in calls if c.held > QUICK and not c.memory]
    waited = [c for c in calls if c.held > QUICK and c.memory]
    return {
        "calls": len(calls),
        "answered": sum(c.answered for c in calls),
        "down_phases": {kind: sum(k == kind for *_, k in phases) for kind in kinds},
        "held_over_budget": sum(c.held > budget + QUICK for c in calls),
        "cost_per_down_phase": costs,
        "max_held_ms": _ms(max(c.held for c in calls)),
        "max_memory_ms": max(c.memory_ms or 0.0 for c in calls),
        "paid_without_memory": len(paid),
        "paid_max_held_ms": _ms(max((c.held for c in paid), default=None)),
        "paid_by_phase": {kind: sum(phase(c) == kind for c in paid) for kind in ("up", *kinds)},
        "waited_with_memory": len(waited),
        "waited_max_held_ms": _ms(max((c.held for c in waited), default=None)),
        "down_calls": {kind: sum(phase(c) == kind for c in calls) for kind in kinds},
        "down_lookups_sent": sum(c.tried for c in down),
        "up_calls": len(up),
        "up_with_memory": sum(c.memory for c in up),
        "up_share_with_memory": round(sum(c.memory for c in up) / len(up), 3) if up else None,
        "with_memory_held_p50_ms": _ms(
            sorted(c.held for c in calls if c.memory)[sum(c.memory for c in calls) // 2]
        )
        if any(c.memory for c in calls)
        else None,
        "memory_back_after_up_ms": back,
        "errors_raised": sorted({c.error or "" for c in calls if not c.answered})[:3],
    }


def raw(calls: list[Call]) -> list[dict[str, Any]]:
    """The calls, for the JSON results."""
    return [{**asdict(c), "held": round(c.held, 4)} for c in calls]


def failed_operations(url: str, bank: str) -> int:
    response = httpx.get(
        f"{url}/v1/default/banks/{bank}/operations", params={"status": "failed", "limit": 1}, timeout=30
    )
    response.raise_for_status()
    return int(response.json()["total"])


def stored_once(
    url: str, stored: list[tuple[str, str, list[str]]], timeout: float = 120.0
) -> list[dict[str, Any]]:
    """For each run ``(name, bank, markers)`` (one marker per turn it stored): how many of its turns are in
    its bank's documents once, not at all, or more often, once the server has finished with them."""
    out = []
    for name, bank, wanted in stored:
        deadline = time.monotonic() + timeout
        while True:
            text = "\n".join(document_text(url, bank, d["id"]) or "" for d in documents(url, bank))
            counts = [text.count(m) for m in wanted]
            if (all(counts) and not retains_running(url, bank)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        out.append(
            {
                "scenario": name,
                "turns": len(wanted),
                "stored_once": sum(c == 1 for c in counts),
                "missing": sum(c == 0 for c in counts),
                "more_than_once": sum(c > 1 for c in counts),
                "memory_blocks_stored": text.count(MEMORY_OPEN),
                "failed_operations": failed_operations(url, bank),
            }
        )
    return out
