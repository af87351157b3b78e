"""The circuit breaker's states and transitions, with a probe the test controls (no server, no timing
asserts: the probe is released by the test and waited for by events)."""

from __future__ import annotations

import threading

import pytest

from hindsight_core.breaker import PROBE_INTERVALS, BreakerState, ServerBreaker


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
