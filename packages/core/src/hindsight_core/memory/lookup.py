"""The read path: a call's one memory lookup, or none.

A call gets no lookup of its own when it continues a user message whose lookup was already made (the
:class:`~hindsight_core.lookups.LookupCache`), when it has nothing to look up, or when the server's circuit
breaker (:mod:`hindsight_core.breaker`) is open: then it goes on at once, without memory. Otherwise it
recalls, or reflects; a reflect that fails or is too slow (the server's LLM is down or busy) falls back to
a recall within what is left of the reflect budget, and the record says so. The lookup runs inside the
breaker's admission: a half-open trial that ends without telling whether the server answered (the task
cancelled, the caller interrupted, a reflect timeout that is not retried as a recall) is given back.

Budgets in reflect mode: ``reflect_timeout`` bounds the whole lookup. Reflect gets all of it but the recall
fallback's share (``recall_timeout``, at most half); the fallback gets what is left, at most
``recall_timeout``.

The sync and async flavours differ only in the awaits; every decision is in the shared helpers.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

from ..breaker import Admission, ServerBreaker, breaker_for
from ..connection import async_client, sync_client
from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
)
from ..lookups import LookupCache
from ..pipeline import Message
from ..settings import MemorySettings
from .calls import NO_BANK_YET, FailOpen, MemoryCall
from .plan import Plan, Response, apply_response, plan_call, recall_options, reflect_options

__all__ = ["Lookup"]

_MIN_FALLBACK = 0.2
"""Seconds a recall fallback needs at least; with less left of the reflect budget there is none."""


class _Budget:
    """When the lookup must be done by, and each request's share of it."""

    def __init__(self, settings: MemorySettings) -> None:
        self.started = time.monotonic()
        self.settings = settings
        self.deadline = self.started + (
            settings.reflect_timeout if settings.use_reflect else settings.recall_timeout
        )

    def reflect(self) -> float:
        settings = self.settings
        return settings.reflect_timeout - min(settings.recall_timeout, settings.reflect_timeout / 2)

    def recall(self) -> float:
        return min(self.settings.recall_timeout, self.deadline - time.monotonic())


class Lookup:
    """Plans, looks up (at most once per user message), renders and injects."""

    def __init__(self, cache: LookupCache, fail: FailOpen) -> None:
        self.cache = cache
        self._fail = fail

    # ----------------------------------------------------------------------------------------- flavours

    def prepare(
        self, messages: Sequence[Message], settings: MemorySettings, model: str | None, turn: Hashable | None
    ) -> MemoryCall:
        started = time.perf_counter()
        plan = plan_call(messages, settings, model, turn, self._fail)
        reused = self._reused(plan)
        admission = self._admit(plan) if reused is None else None
        if admission is None:
            return apply_response(plan, reused, started)
        with admission:  # a trial that ends without a verdict (interrupted, say) is given back
            return self._look_up(plan, admission.breaker, started)

    async def aprepare(
        self, messages: Sequence[Message], settings: MemorySettings, model: str | None, turn: Hashable | None
    ) -> MemoryCall:
        started = time.perf_counter()
        plan = plan_call(messages, settings, model, turn, self._fail)
        reused = self._reused(plan)
        admission = self._admit(plan) if reused is None else None
        if admission is None:
            return apply_response(plan, reused, started)
        with admission:  # a trial that ends without a verdict (the task cancelled, say) is given back
            return await self._alook_up(plan, admission.breaker, started)

    def _look_up(self, plan: Plan, breaker: ServerBreaker, started: float) -> MemoryCall:
        settings = plan.call.settings
        query, bank, budget = plan.query or "", settings.bank_id or "", _Budget(settings)
        client = sync_client(settings.connection)
        response: Response | None = None
        if settings.use_reflect:
            at = time.perf_counter()
            try:
                response = client.reflect(bank, query, timeout=budget.reflect(), **reflect_options(settings))
            except Exception as exc:
                self._timed(plan, "reflect", at)
                if not self._reflect_failed(plan, breaker, exc, budget):
                    return apply_response(plan, None, started)
            else:
                self._timed(plan, "reflect", at)
                return self._answered(plan, breaker, response, started)
        at = time.perf_counter()
        try:
            response = client.recall(bank, query, timeout=budget.recall(), **recall_options(settings))
        except Exception as exc:
            self._timed(plan, "recall", at)
            self._recall_failed(plan, breaker, exc)
            return apply_response(plan, None, started)
        self._timed(plan, "recall", at)
        return self._answered(plan, breaker, response, started)

    async def _alook_up(self, plan: Plan, breaker: ServerBreaker, started: float) -> MemoryCall:
        settings = plan.call.settings
        query, bank, budget = plan.query or "", settings.bank_id or "", _Budget(settings)
        client = async_client(settings.connection)
        response: Response | None = None
        if settings.use_reflect:
            at = time.perf_counter()
            try:
                response = await client.reflect(
                    bank, query, timeout=budget.reflect(), **reflect_options(settings)
                )
            except Exception as exc:
                self._timed(plan, "reflect", at)
                if not self._reflect_failed(plan, breaker, exc, budget):
                    return apply_response(plan, None, started)
            else:
                self._timed(plan, "reflect", at)
                return self._answered(plan, breaker, response, started)
        at = time.perf_counter()
        try:
            response = await client.recall(bank, query, timeout=budget.recall(), **recall_options(settings))
        except Exception as exc:
            self._timed(plan, "recall", at)
            self._recall_failed(plan, breaker, exc)
            return apply_response(plan, None, started)
        self._timed(plan, "recall", at)
        return self._answered(plan, breaker, response, started)

    # ------------------------------------------------------------------------------------------ decisions

    def _reused(self, plan: Plan) -> Response | None:
        """With no lookup to make: the one already made for this user message, if any."""
        if plan.key is None:
            return None
        response = self.cache.get(plan.key)
        if response is not None:
            plan.call.record.lookup_reused = True
        return response

    def _admit(self, plan: Plan) -> Admission | None:
        """The breaker's admission of the lookup (its breaker is told the outcome), or None when no
        request is to be made: nothing to look up, or the server's circuit open (then memory is skipped at
        once)."""
        if plan.query is None:
            return None
        settings, record = plan.call.settings, plan.call.record
        connection = settings.connection
        breaker = breaker_for(connection.base_url, connection.api_key)
        admission = breaker.admit()
        if admission is not None:
            return admission
        record.skipped_reason = "the Hindsight server cannot be reached (lookups skipped until it answers)"
        self._fail(
            record, settings, APIConnectionError(breaker.describe(), operation=record.mode, url=breaker.url)
        )
        return None

    def _answered(self, plan: Plan, breaker: ServerBreaker, response: Response, started: float) -> MemoryCall:
        breaker.reached()
        if plan.key is not None:
            self.cache.put(plan.key, response)
        return apply_response(plan, response, started)

    @staticmethod
    def _timed(plan: Plan, operation: str, at: float) -> None:
        plan.call.record.timings_ms[operation] = (time.perf_counter() - at) * 1000

    @staticmethod
    def _report(breaker: ServerBreaker, error: Exception) -> None:
        """Tell the breaker what the failed request says about the server."""
        if isinstance(error, APITimeoutError):
            breaker.unreachable("it did not answer in time")
        elif isinstance(error, APIConnectionError):
            breaker.unreachable("the connection failed")
        else:  # an answer (an error status, an unreadable body) or a failure of ours: the server is there
            breaker.reached()

    def _recall_failed(self, plan: Plan, breaker: ServerBreaker, error: Exception) -> None:
        self._report(breaker, error)
        if isinstance(error, NotFoundError):
            plan.call.record.skipped_reason = NO_BANK_YET
            return
        self._fail(plan.call.record, plan.call.settings, error)

    def _reflect_failed(self, plan: Plan, breaker: ServerBreaker, error: Exception, budget: _Budget) -> bool:
        """Whether to recall instead (reflect failed or was too slow, the server can be reached)."""
        record, settings = plan.call.record, plan.call.settings
        if isinstance(error, APITimeoutError):
            pass  # reflect is slow (its LLM): not a sign the server is down; the recall will tell
        else:
            self._report(breaker, error)
        if isinstance(error, NotFoundError):
            record.skipped_reason = NO_BANK_YET
            return False
        unusable = isinstance(error, (AuthenticationError, PermissionDeniedError)) or (
            isinstance(error, APIConnectionError) and not isinstance(error, APITimeoutError)
        )
        if settings.strict or unusable or budget.recall() < _MIN_FALLBACK:
            self._fail(record, settings, error)
            return False
        kind = f"HTTP {error.status_code}" if isinstance(error, APIStatusError) else type(error).__name__
        record.fallback = f"reflect failed ({kind}: {error}); recalled memories instead"
        self._fail.limiter.warning(
            "reflect-fallback",
            "Hindsight reflect failed for bank %r (%s); the call gets recalled memories instead.",
            settings.bank_id,
            kind,
        )
        return True
