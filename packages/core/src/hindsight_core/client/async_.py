"""The asyncio Hindsight client. All decisions live in :mod:`._base`; this module only does the I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ..models import (
    Bank,
    BankConfig,
    BankProfile,
    Budget,
    DeleteResult,
    Health,
    RecallResponse,
    ReflectResponse,
    RetainItem,
    RetainResponse,
    TagsMatch,
    UpdateMode,
)
from ._aiohttp import AiohttpTransport, aiohttp_usable
from ._base import BaseClient, Operation, RetryPolicy, Send, Timeouts
from ._tls import shared_ssl_context

__all__ = ["AsyncHindsightClient"]

_ASYNC_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

T = TypeVar("T")


def _new_http_client() -> tuple[httpx.AsyncClient, AiohttpTransport | None]:
    if aiohttp_usable():  # the same requests with a quarter of the CPU (see ._aiohttp)
        transport = AiohttpTransport(
            ssl_context=shared_ssl_context(), limit=_ASYNC_LIMITS.max_connections or 1000
        )
        return httpx.AsyncClient(follow_redirects=False, transport=transport), transport
    client = httpx.AsyncClient(follow_redirects=False, verify=shared_ssl_context(), limits=_ASYNC_LIMITS)
    return client, None


class AsyncHindsightClient(BaseClient):
    """Asynchronous client for a Hindsight server; it never blocks the event loop.

    ``base_url`` and ``api_key`` default to ``HINDSIGHT_API_URL`` / ``HINDSIGHT_API_KEY`` (the URL then to
    Hindsight Cloud, ``https://api.hindsight.vectorize.io``). Connections are pooled; nothing touches the
    network until the first call.
    Use it as an async context manager or call :meth:`aclose`. Pass ``http_client`` to supply your own
    ``httpx.AsyncClient`` (proxies, custom transports); a client you pass in is not closed by :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeouts, retry, headers)
        self._owns_http = http_client is None
        self._direct: AiohttpTransport | None = None
        """Our own transport, called without ``httpx.AsyncClient.send`` (no auth, cookies, redirects or
        hooks to apply to a request we built): until :meth:`aclose`."""
        if http_client is None:
            # Async apps run many recalls at once: httpx's default pool (100 connections) makes requests
            # beyond that queue inside httpx, which rescans the queue on every completion and stalls the
            # event loop; ours allows 1000 (see _new_http_client).
            self._http, self._direct = _new_http_client()
        else:
            self._http = http_client

    async def _run(self, op: Operation[T]) -> T:
        plan = self._plan(op)
        outcome: httpx.Response | httpx.HTTPError | None = None
        try:
            while True:
                step = plan.send(outcome)
                if isinstance(step, Send):
                    direct = self._direct
                    try:
                        if direct is not None:
                            outcome = await direct.handle_async_request(step.request)
                        else:
                            outcome = await self._http.send(step.request)
                    except httpx.HTTPError as exc:
                        outcome = exc
                else:
                    await asyncio.sleep(step.seconds)
                    outcome = None
        except StopIteration as done:
            result: T = done.value
            return result

    # ----------------------------------------------------------------------------------------- lifecycle

    async def aclose(self) -> None:
        """Close pooled connections (only those of an ``httpx.AsyncClient`` this object created)."""
        self._direct = None
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncHindsightClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------------------- operations

    async def health(self, *, timeout: float | None = None) -> Health:
        """``GET /health``."""
        return await self._run(self._op_health(timeout))

    async def create_bank(
        self,
        bank_id: str,
        *,
        name: str | None = None,
        mission: str | None = None,
        retain_mission: str | None = None,
        extraction_mode: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> BankProfile:
        """Create the bank, or update the given fields of an existing one.

        ``mission`` guides reflect (the server's ``reflect_mission``); ``retain_mission`` steers what retain
        extracts; ``extraction_mode`` is the server's ``retain_extraction_mode`` (``concise``, ``verbose``,
        ``custom``, ``verbatim`` or ``chunks``). Other bank fields go in ``options``.
        """
        return await self._run(
            self._op_upsert_bank(bank_id, name, mission, retain_mission, extraction_mode, options, timeout)
        )

    async def update_bank_config(
        self, bank_id: str, updates: Mapping[str, Any], *, timeout: float | None = None
    ) -> BankConfig:
        """Change bank configuration overrides (``PATCH .../config``)."""
        return await self._run(self._op_update_bank_config(bank_id, updates, timeout))

    async def get_bank(self, bank_id: str, *, timeout: float | None = None) -> BankConfig:
        """The bank's resolved configuration; raises :class:`NotFoundError` for an unknown bank."""
        return await self._run(self._op_get_bank(bank_id, timeout))

    async def list_banks(
        self, *, query: str | None = None, limit: int = 100, timeout: float | None = None
    ) -> list[Bank]:
        """Banks visible to this key, optionally filtered by a substring of their id or name."""
        return await self._run(self._op_list_banks(query, limit, timeout))

    async def delete_bank(self, bank_id: str, *, timeout: float | None = None) -> DeleteResult:
        """Delete the bank and everything in it."""
        return await self._run(self._op_delete_bank(bank_id, timeout))

    async def retain(
        self,
        bank_id: str,
        content: str,
        *,
        context: str | None = None,
        timestamp: datetime | str | None = None,
        document_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Sequence[str] | None = None,
        update_mode: UpdateMode | None = None,
        async_: bool = False,
        operation_id: str | None = None,
        timeout: float | None = None,
    ) -> RetainResponse:
        """Store one piece of content. ``update_mode="append"`` adds to the document ``document_id``.

        With ``async_=True`` the server acknowledges at once and processes in the background; the request
        carries an ``operation_id`` (generated if not given) so that a retry never stores it twice.
        """
        item = self._retain_item(content, context, timestamp, document_id, metadata, tags, update_mode)
        return await self._run(self._op_retain(bank_id, [item], async_, operation_id, timeout))

    async def retain_batch(
        self,
        bank_id: str,
        items: Sequence[RetainItem | Mapping[str, Any]],
        *,
        async_: bool = False,
        operation_id: str | None = None,
        timeout: float | None = None,
    ) -> RetainResponse:
        """Store several items in one request (each a :class:`RetainItem` or a mapping of its fields)."""
        return await self._run(self._op_retain(bank_id, items, async_, operation_id, timeout))

    async def recall(
        self,
        bank_id: str,
        query: str,
        *,
        budget: Budget | None = None,
        max_tokens: int | None = None,
        types: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        tags_match: TagsMatch | None = None,
        include_entities: bool | None = None,
        trace: bool | None = None,
        query_timestamp: str | None = None,
        timeout: float | None = None,
    ) -> RecallResponse:
        """Memories relevant to ``query``, best first. ``None`` options use the server's defaults."""
        return await self._run(
            self._op_recall(
                bank_id,
                query,
                budget,
                max_tokens,
                types,
                tags,
                tags_match,
                include_entities,
                trace,
                query_timestamp,
                timeout,
            )
        )

    async def reflect(
        self,
        bank_id: str,
        query: str,
        *,
        budget: Budget | None = None,
        context: str | None = None,
        max_tokens: int | None = None,
        response_schema: Mapping[str, Any] | None = None,
        include_facts: bool = False,
        tags: Sequence[str] | None = None,
        tags_match: TagsMatch | None = None,
        fact_types: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> ReflectResponse:
        """An answer to ``query`` reasoned over the bank's memories (with the facts used, if asked)."""
        return await self._run(
            self._op_reflect(
                bank_id,
                query,
                budget,
                context,
                max_tokens,
                response_schema,
                include_facts,
                tags,
                tags_match,
                fact_types,
                timeout,
            )
        )
