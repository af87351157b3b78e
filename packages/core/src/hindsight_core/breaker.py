"""A circuit breaker per Hindsight server: an outage costs one call, not one call every few seconds.

States, per server (its URL), shared by every adapter, by sync and async code, and by storage:

``closed``
    Normal: lookups go to the server.
``open``
    The server could not be reached (refused, reset, or no answer within the time budget). Memory lookups
    skip at once (the call goes on without memory, no network), and no user call is used to find out
    whether the server is back: one background *probe* per server (``GET /health`` with a short timeout,
    on a daemon thread, never on a caller's thread or event loop) checks at growing intervals (0.5 s,
    1 s, then every 1.5 s, counted from the start of each check). Storage holds its sends while the
    server is open and resumes when it is not.
``half_open``
    The probe got an answer. The next lookup goes to the server as a trial (one at a time; the others
    still skip); if it succeeds the breaker closes, if it cannot reach the server the breaker opens again
    and the probe resumes, waiting twice as long before each next trial (up to a minute) while trials keep
    failing, so a server whose health check answers but whose lookups hang costs few calls. A trial that
    ends with neither (the caller's task cancelled, the caller interrupted, an error that says nothing
    about the server) gives its turn back: the next lookup is the trial (:meth:`ServerBreaker.admit`). A
    storage request that gets an answer closes it as well.

Only failures to reach the server open the breaker: an answer, even an error status (4xx, 5xx), proves
the server reachable and does not (a slow server that answers within the budget keeps it closed; the
debug record shows how long the lookup took).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from enum import Enum

__all__ = [
    "PROBE_INTERVALS",
    "PROBE_TIMEOUT",
    "TRIAL_BACKOFF_MAX",
    "Admission",
    "BreakerState",
    "ServerBreaker",
    "breaker_for",
    "reset_breakers",
]

PROBE_INTERVALS = (0.5, 1.0, 1.5)
"""Seconds from the start of one probe of a server that cannot be reached to the start of the next: these,
then the last one, repeated (a hung server's probe takes its whole timeout, which is inside the interval, so
a server that answers again is found within 1.5 s of probe time)."""
PROBE_TIMEOUT = 1.0
"""Seconds a probe waits for the server's answer."""
TRIAL_BACKOFF_MAX = 60.0
"""After trials that failed although the probe had passed (the health check answers, lookups do not), the
next trial waits longer each time (twice as long after each failed trial), up to this many seconds."""

Probe = Callable[[float], bool]
"""``probe(timeout)``: whether the server answered its health check within ``timeout`` seconds."""


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission:
    """A lookup the breaker let through (:meth:`ServerBreaker.admit`), as a context manager around it.

    The lookup reports what it found out to the breaker (:meth:`ServerBreaker.reached`,
    :meth:`ServerBreaker.unreachable`). A trial (``trial``: let through while half-open) that leaves the
    ``with`` block with neither reported gives the trial back, so that the next lookup is let through as
    the trial instead of every lookup skipping memory for good. Leaving it costs nothing otherwise.
    """

    __slots__ = ("breaker", "trial")

    def __init__(self, breaker: ServerBreaker, trial: bool) -> None:
        self.breaker = breaker
        self.trial = trial

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.trial:
            self.breaker._give_back(self)


class ServerBreaker:
    """The breaker of one server. Thread-safe; nothing here blocks except :meth:`wait_available`."""

    def __init__(self, url: str, probe: Probe, *, intervals: tuple[float, ...] = PROBE_INTERVALS) -> None:
        self.url = url
        self._probe = probe
        self._intervals = intervals
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._reason = ""
        self._trial: Admission | None = None  # the lookup let through as the trial, while half-open
        self._closed = Admission(self, trial=False)  # what admit() hands out while closed
        self._failed_trials = 0
        self._next_probe = 0.0
        self._prober: threading.Thread | None = None
        self._generation = 0  # a fork in the child, or reset(): a prober of an older generation stops
        self._listeners: list[weakref.WeakMethod[Callable[[ServerBreaker], None]]] = []

    # ------------------------------------------------------------------------------------------- reading

    @property
    def state(self) -> BreakerState:
        return self._state

    def describe(self) -> str:
        """What a user is told when memory is skipped because of this breaker."""
        with self._lock:
            since = time.monotonic() - self._opened_at
            next_check = max(0.0, self._next_probe - time.monotonic())
            reason = self._reason
        when = "just now" if since < 1.0 else f"{since:.0f} s ago"
        check = "now" if next_check < 0.1 else f"in {next_check:.1f} s"
        return (
            f"Hindsight at {self.url} could not be reached ({reason}; first seen {when}). Memory is skipped "
            f"for every call until it answers again, without waiting for it; it is checked in the "
            f"background (next check {check})"
        )

    def seconds_to_next_probe(self) -> float:
        """How long until the probe checks again (0 when the breaker is not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._next_probe - time.monotonic())

    def listen(self, method: Callable[[ServerBreaker], None]) -> None:
        """Call ``method`` (a bound method, held weakly) when the server can be tried again (the probe got
        an answer, or a request did): storage resumes then instead of at the end of its own backoff."""
        with self._lock:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            if not any(ref() == method for ref in self._listeners):
                self._listeners.append(weakref.WeakMethod(method))

    def _notify_available(self) -> None:
        for ref in list(self._listeners):
            method = ref()
            if method is not None:
                method(self)

    # ------------------------------------------------------------------------------------------- lookups

    def admit(self) -> Admission | None:
        """Let a memory lookup go to the server now, or None: skip it (open, or half-open with the trial
        taken), fail open at once. Use the admission as a context manager around the lookup: a trial that
        ends without a verdict is given back on exit."""
        state = self._state  # read without the lock: closed is the common case
        if state is BreakerState.CLOSED:
            return self._closed
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return self._closed
            if self._state is BreakerState.HALF_OPEN and self._trial is None:
                self._trial = Admission(self, trial=True)
                return self._trial
            return None

    def allow_lookup(self) -> bool:
        """Whether a memory lookup may go to the server now (False: skip it, fail open at once). A trial
        taken here is held until :meth:`reached` or :meth:`unreachable`; :meth:`admit` also gives it back
        when the lookup ends without either."""
        return self.admit() is not None

    def _give_back(self, admission: Admission) -> None:
        """The trial ``admission`` ended without a verdict: the next lookup may be the trial."""
        with self._lock:
            if self._trial is admission:  # still half-open, waiting for this trial's verdict
                self._trial = None

    # ------------------------------------------------------------------------------------------- outcomes

    def reached(self) -> None:
        """The server answered a request (whatever its status): close."""
        if self._state is BreakerState.CLOSED and self._trial is None:
            return
        with self._changed:
            was_open = self._state is BreakerState.OPEN
            self._state = BreakerState.CLOSED
            self._trial = None
            self._failed_trials = 0
            self._changed.notify_all()
        if was_open:
            self._notify_available()

    def unreachable(self, reason: str) -> None:
        """A request could not reach the server (refused, reset, timed out): open, probe in the background."""
        with self._changed:
            # the probe passed, the trial did not
            if self._state is BreakerState.HALF_OPEN and self._trial is not None:
                self._failed_trials += 1
            if self._state is not BreakerState.OPEN:  # newly open: probe soon (already open: on schedule)
                now = time.monotonic()
                if self._state is BreakerState.CLOSED:
                    self._opened_at = now
                wait = (
                    self._intervals[0] * 2.0**self._failed_trials
                    if self._failed_trials
                    else self._intervals[0]
                )
                self._next_probe = now + min(wait, TRIAL_BACKOFF_MAX)
            self._state = BreakerState.OPEN
            self._reason = reason
            self._trial = None
            self._changed.notify_all()
            self._start_prober_locked()

    # ------------------------------------------------------------------------------------------- storage

    def wait_available(self, timeout: float) -> bool:
        """Wait until the breaker is not open (storage holds its sends meanwhile); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._state is BreakerState.OPEN:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # -------------------------------------------------------------------------------------------- probing

    def _start_prober_locked(self) -> None:
        if self._prober is not None and self._prober.is_alive():
            return
        generation = self._generation
        self._prober = threading.Thread(
            target=self._probe_loop, args=(generation,), name=f"hindsight-probe {self.url}", daemon=True
        )
        self._prober.start()

    def _probe_loop(self, generation: int) -> None:
        attempt = 0
        while True:
            with self._changed:
                if self._generation != generation or self._state is not BreakerState.OPEN:
                    self._prober = None
                    return
                delay = self._next_probe - time.monotonic()
                if delay > 0:
                    self._changed.wait(delay)
                    continue
            started = time.monotonic()
            try:
                answered = self._probe(PROBE_TIMEOUT)
            except Exception:
                answered = False
            with self._changed:
                if self._generation != generation or self._state is not BreakerState.OPEN:
                    self._prober = None
                    return
                if answered:
                    self._state = BreakerState.HALF_OPEN
                    self._trial = None
                    self._prober = None
                    self._changed.notify_all()
                else:
                    attempt += 1
                    interval = self._intervals[min(attempt, len(self._intervals) - 1)]
                    self._next_probe = started + interval
                    continue
            self._notify_available()
            return

    def reset(self) -> None:
        """Closed, as new (a prober still running stops at its next step)."""
        with self._changed:
            self._generation += 1
            self._state = BreakerState.CLOSED
            self._trial = None
            self._failed_trials = 0
            self._prober = None
            self._changed.notify_all()


# ---------------------------------------------------------------------------------------------- registry

_registry_lock = threading.Lock()
_registry: dict[str, ServerBreaker] = {}


def _health_probe(url: str, api_key: str | None) -> Probe:
    def probe(timeout: float) -> bool:
        from .client import HindsightClient, RetryPolicy

        with HindsightClient(url, api_key or "", retry=RetryPolicy(max_retries=0)) as client:
            client.health(timeout=timeout)
        return True

    return probe


def breaker_for(url: str, api_key: str | None = None, probe: Probe | None = None) -> ServerBreaker:
    """The breaker of the server at ``url`` (one per server per process)."""
    key = url.rstrip("/").lower()
    breaker = _registry.get(key)
    if breaker is not None:
        return breaker
    with _registry_lock:
        breaker = _registry.get(key)
        if breaker is None:
            breaker = ServerBreaker(url.rstrip("/"), probe or _health_probe(url, api_key))
            _registry[key] = breaker
        return breaker


def reset_breakers() -> None:
    """Every breaker closed, as new (tests; and the child after a fork)."""
    with _registry_lock:
        breakers = list(_registry.values())
        _registry.clear()
    for breaker in breakers:
        breaker.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_registry.clear)
