"""The client's policies: how long each operation may take, and when and how it is retried."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["NOT_PROCESSED_STATUS", "RETRYABLE_STATUS", "RetryPolicy", "Timeouts"]


@dataclass(frozen=True)
class Timeouts:
    """Time budgets in seconds, per operation, retries included.

    An operation never takes longer than its budget: each attempt gets what is left of it, and a retry
    that could not finish in time is not started. ``connect`` caps the TCP/TLS connect of each attempt.
    Recall is on the LLM call's hot path, so its budget is short; reflect and retain can involve the
    server's own LLM calls, so theirs are long.
    """

    connect: float = 2.0
    recall: float = 5.0
    reflect: float = 60.0
    retain: float = 120.0
    bank: float = 30.0
    health: float = 5.0

    def __post_init__(self) -> None:
        for name in ("connect", "recall", "reflect", "retain", "bank", "health"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(
                    f"timeout {name!r} must be a positive number of seconds, got {value!r}"
                )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on connection errors, timeouts, 408, 409, 429 and 5xx, with exponential backoff and jitter.

    The n-th retry waits ``min(max_delay, initial_delay * 2**(n-1))`` less up to ``jitter`` of it, or what
    the server's ``Retry-After`` asks (capped at ``max_retry_after``). Requests that are not idempotent
    (a synchronous append retain) are retried only when the server cannot have processed them.
    """

    max_retries: int = 2
    initial_delay: float = 0.25
    max_delay: float = 4.0
    jitter: float = 0.25
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigurationError(f"retry jitter must be between 0 and 1, got {self.jitter!r}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ConfigurationError("retry delays must be >= 0")

    def backoff(self, retry: int) -> float:
        """Delay before the ``retry``-th retry (1-based), jitter applied."""
        delay = min(self.max_delay, self.initial_delay * 2.0 ** (retry - 1))
        return delay * (1.0 - self.jitter * random.random())


RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
NOT_PROCESSED_STATUS = frozenset({408, 429, 503})
