"""The circuit breaker's states and transitions, with a probe the test controls (no server, no timing
asserts: the probe is released by the test and waited for by events); and lookups that end without a
verdict while half-open (cancelled, interrupted), against a hung loopback socket."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hindsight_core import MemoryPipeline, MemorySettings
from hindsight_core.breaker import PROBE_INTERVALS, BreakerState, ServerBreaker, breaker_for, reset_breakers
from hindsight_core.errors import APITimeoutError
from tests.faults import CuttableProxy


class Probe:
    """A probe that answers what the test says, and tells when it was asked."""

    def __init__(self) -> None:
        self.answer = False
        self.asked = threading.Semaphore(0)
        self.calls = 0

    def __call__(self, timeout: float) -> bool:
        self.calls += 1
        self.asked.release()
        return self.answer

    def wait(self, timeout: float = 10.0) -> None:
        assert self.asked.acquire(timeout=timeout), "the probe was never asked"


class Listener:
    def __init__(self) -> None:
        self.told = threading.Event()

    def available(self, breaker: ServerBreaker) -> None:
        self.told.set()


def state(breaker: ServerBreaker) -> BreakerState:
    """The breaker's state now (a function, so that type checkers do not narrow it between calls)."""
    return breaker.state


def _breaker(probe: Probe) -> ServerBreaker:
    return ServerBreaker("http://memory.test", probe, intervals=(0.01, 0.02, 0.04))


def test_closed_lets_lookups_through() -> None:
    breaker = _breaker(Probe())
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow_lookup()
    assert breaker.allow_lookup()


def test_an_unreachable_server_opens_it_and_lookups_skip_without_probing_from_the_caller() -> None:
    probe = Probe()
    breaker = _breaker(probe)
    breaker.unreachable("it did not answer in time")
    assert state(breaker) is BreakerState.OPEN
    calls = probe.calls
    assert not breaker.allow_lookup()
    assert not breaker.allow_lookup()
    assert probe.calls == calls  # asking is free: no caller waits for a probe
    probe.wait()  # the background probe runs on its own


def test_a_passing_probe_half_opens_one_trial_then_the_trial_closes_it() -> None:
    probe = Probe()
    breaker = _breaker(probe)
    listener = Listener()
    breaker.listen(listener.available)
    breaker.unreachable("the connection failed")
    probe.answer = True
    assert listener.told.wait(10), "storage was not told the server can be tried again"
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow_lookup()  # the trial
    assert not breaker.allow_lookup()  # one at a time
    breaker.reached()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow_lookup()


def test_a_failed_trial_opens_it_again_and_the_next_trial_waits_longer() -> None:
    probe = Probe()
    breaker = ServerBreaker("http://memory.test", probe, intervals=(0.5, 1.0, 2.0))
    breaker.unreachable("the connection failed")
    assert breaker.seconds_to_next_probe() <= PROBE_INTERVALS[0]
    breaker.reset()
    breaker = ServerBreaker("http://memory.test", probe, intervals=(0.01, 0.02))
    listener = Listener()
    breaker.listen(listener.available)
    probe.answer = True
    breaker.unreachable("the connection failed")
    assert listener.told.wait(10)
    assert breaker.allow_lookup()
    breaker.unreachable("it did not answer in time")  # the probe passed, the lookup hung
    assert state(breaker) is BreakerState.OPEN
    assert breaker.seconds_to_next_probe() > 0.01  # doubled after the failed trial
    breaker.reset()


def test_an_answer_of_any_status_closes_an_open_breaker() -> None:
    breaker = _breaker(Probe())
    breaker.unreachable("the connection failed")
    breaker.reached()  # e.g. storage got a 503: the server is there
    assert state(breaker) is BreakerState.CLOSED


def test_the_message_says_what_happens_and_what_is_next() -> None:
    breaker = _breaker(Probe())
    breaker.unreachable("it did not answer in time")
    text = breaker.describe()
    assert "could not be reached (it did not answer in time" in text
    assert "Memory is skipped" in text
    assert "checked in the background" in text
    assert "0.0 s more" not in text
    breaker.reset()


def test_storage_can_wait_for_the_breaker_without_polling() -> None:
    probe = Probe()
    breaker = _breaker(probe)
    breaker.unreachable("the connection failed")
    assert not breaker.wait_available(0.05)
    probe.answer = True
    assert breaker.wait_available(10)


@pytest.mark.parametrize("state_after", ["reached", "reset"])
def test_the_probe_stops_once_the_breaker_is_not_open(state_after: str) -> None:
    probe = Probe()
    breaker = _breaker(probe)
    breaker.unreachable("the connection failed")
    probe.wait()
    getattr(breaker, state_after)()
    prober = breaker._prober
    if prober is not None:
        prober.join(5)
        assert not prober.is_alive()


# --------------------------------------------------------------------- a trial that ends without a verdict


def test_an_admission_ended_without_a_verdict_gives_the_trial_back() -> None:
    probe = Probe()
    breaker = _breaker(probe)
    assert breaker.admit() is not None  # closed: every lookup, no trial to give back
    probe.answer = True
    breaker.unreachable("the connection failed")
    assert breaker.wait_available(10)
    admission = breaker.admit()
    assert admission is not None
    with admission as trial:
        assert trial.trial
        assert breaker.admit() is None  # one trial at a time
    assert state(breaker) is BreakerState.HALF_OPEN
    again = breaker.admit()
    assert again is not None
    assert again.trial  # the next lookup is the trial


def test_an_admission_with_a_verdict_or_a_stale_one_gives_nothing_back() -> None:
    probe = Probe()
    breaker = _breaker(probe)
    probe.answer = True
    breaker.unreachable("the connection failed")
    assert breaker.wait_available(10)
    first = breaker.admit()
    assert first is not None
    with first:
        breaker.unreachable("it did not answer in time")  # the verdict: open again
    assert state(breaker) is BreakerState.OPEN  # leaving the block did not touch it
    assert breaker.wait_available(10)  # the probe half-opens it again
    second = breaker.admit()
    assert second is not None
    assert second.trial
    with first:  # the old trial's admission, ended again: it is not the trial any more
        pass
    assert breaker.admit() is None  # the second trial is still out
    with second:
        breaker.reached()
    assert state(breaker) is BreakerState.CLOSED


class Interrupted(BaseException):
    """What the test's SIGINT handler raises in the main thread (as Ctrl-C would)."""


@pytest.fixture
def hung() -> Iterator[CuttableProxy]:
    """A server that accepts connections and never answers (nothing behind it)."""
    proxy = CuttableProxy("http://127.0.0.1:9")
    proxy.hang()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def half_open(hung: CuttableProxy) -> Iterator[ServerBreaker]:
    """The hung server's breaker, half-open: its probe (the test's) answered, the next lookup is the
    trial."""
    reset_breakers()
    probe = Probe()
    probe.answer = True
    breaker = breaker_for(hung.url, probe=probe)
    breaker.unreachable("the connection failed")
    assert breaker.wait_available(10)
    assert state(breaker) is BreakerState.HALF_OPEN
    try:
        yield breaker
    finally:
        reset_breakers()


def _settings(url: str, **options: Any) -> MemorySettings:
    defaults: dict[str, Any] = {"recall_timeout": 60.0, "max_retries": 0, "store_conversations": False}
    return MemorySettings(hindsight_api_url=url, bank_id="breaker-trial", **{**defaults, **options})


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _connected(proxy: CuttableProxy, after: int) -> bool:
    return proxy.accepted > after


async def _in_flight(proxy: CuttableProxy, after: int, task: asyncio.Task[Any]) -> None:
    """Wait until ``task``'s lookup has reached the hung server (it then waits for an answer)."""
    deadline = time.monotonic() + 30
    while not _connected(proxy, after):
        assert not task.done(), "the lookup was not let through to the server"
        assert time.monotonic() < deadline, "the lookup never reached the server"
        await asyncio.sleep(0.01)


async def test_a_cancelled_async_lookup_gives_the_trial_back_and_the_next_call_is_the_trial(
    hung: CuttableProxy, half_open: ServerBreaker
) -> None:
    pipeline = MemoryPipeline(source="test-breaker")
    settings = _settings(hung.url)
    for attempt in range(2):  # the trial, cancelled; then the next call: let through as the trial again
        before = hung.accepted
        task = asyncio.create_task(pipeline.aprepare(_ask(f"What do I like? ({attempt})"), settings))
        await _in_flight(hung, before, task)
        assert half_open.admit() is None  # the trial is out: other lookups skip
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state(half_open) is BreakerState.HALF_OPEN  # no verdict: still waiting for one


def test_an_interrupted_sync_lookup_gives_the_trial_back(
    hung: CuttableProxy, half_open: ServerBreaker
) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    main = threading.main_thread().ident
    assert main == threading.get_ident()  # the lookup runs where SIGINT is handled
    before = hung.accepted

    def ctrl_c() -> None:
        deadline = time.monotonic() + 30
        while not _connected(hung, before) and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, interrupt)
    presser = threading.Thread(target=ctrl_c)
    try:
        presser.start()
        with pytest.raises(Interrupted):
            MemoryPipeline(source="test-breaker").prepare(_ask("What do I like?"), _settings(hung.url))
    finally:
        presser.join(30)
        signal.signal(signal.SIGINT, previous)
    assert _connected(hung, before)  # it was interrupted while waiting for the server
    trial = half_open.admit()
    assert trial is not None
    assert trial.trial


def test_a_strict_reflect_timeout_says_nothing_about_the_server_and_gives_the_trial_back(
    hung: CuttableProxy, half_open: ServerBreaker
) -> None:
    settings = _settings(hung.url, use_reflect=True, strict=True, reflect_timeout=0.4, recall_timeout=5.0)
    with pytest.raises(APITimeoutError):  # strict: raised, no recall fallback
        MemoryPipeline(source="test-breaker").prepare(_ask("What do I like?"), settings)
    assert state(half_open) is BreakerState.HALF_OPEN
    trial = half_open.admit()
    assert trial is not None
    assert trial.trial
