"""Everything the sync and async clients share: request building, response parsing, the retry policy
and the error mapping. No I/O happens here.

A request is run by :meth:`BaseClient._plan`, a generator that yields what to do next (``Send`` a request,
``Sleep`` before a retry) and receives the outcome (an ``httpx.Response`` or the ``httpx.HTTPError``
raised while sending). The sync and async clients drive it with blocking or awaitable I/O; the decisions
are made once, here.
"""

from __future__ import annotations

import email.utils
import json
import os
import platform
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from .._version import __version__
from ..errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
)
from ..models import (
    Bank,
    BankConfig,
    BankList,
    BankProfile,
    BankUpsertRequest,
    Budget,
    DeleteResult,
    EntityIncludeOptions,
    Health,
    RecallIncludeOptions,
    RecallRequest,
    RecallResponse,
    ReflectIncludeOptions,
    ReflectRequest,
    ReflectResponse,
    RetainItem,
    RetainRequest,
    RetainResponse,
    TagsMatch,
    UpdateMode,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "BaseClient",
    "Operation",
    "RetryPolicy",
    "Send",
    "Sleep",
    "Timeouts",
]

DEFAULT_BASE_URL = "https://api.hindsight.vectorize.io"
_API = "/v1/default/banks"

T = TypeVar("T")


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


_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_NOT_PROCESSED_STATUS = frozenset({408, 429, 503})
_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One API call: what to send, within which budget, and how to read the answer."""

    name: str
    method: str
    path: str
    parse: Callable[[bytes], T]
    budget: float
    body: bytes | None = None
    params: Mapping[str, str | int] = field(default_factory=dict)
    idempotent: bool = True


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Outcome = httpx.Response | httpx.HTTPError | None


def _model_parser(model: type[pydantic.BaseModel]) -> Callable[[bytes], Any]:
    return model.model_validate_json


def _bank_path(bank_id: str, suffix: str = "") -> str:
    if not isinstance(bank_id, str) or not bank_id.strip():
        raise ConfigurationError(f"bank_id must be a non-empty string, got {bank_id!r}")
    return f"{_API}/{quote(bank_id, safe='')}{suffix}"


def _dump(model: pydantic.BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


def _build(model: type[pydantic.BaseModel], what: str, values: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(values))
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"invalid {what}: {_describe_validation(exc)}") from None


def _describe_validation(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


class BaseClient:
    """State and logic shared by :class:`HindsightClient` and :class:`AsyncHindsightClient`."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeouts: Timeouts | None,
        retry: RetryPolicy | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        url = base_url if base_url is not None else os.environ.get("HINDSIGHT_API_URL") or DEFAULT_BASE_URL
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"Hindsight API URL must start with http:// or https://, got {url!r} "
                "(set hindsight_api_url or HINDSIGHT_API_URL)"
            )
        key = api_key if api_key is not None else os.environ.get("HINDSIGHT_API_KEY")
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise ConfigurationError(f"timeouts must be a Timeouts instance, got {type(timeouts).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy instance, got {type(retry).__name__}")
        self.base_url = url
        self._api_key = key or None
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": (
                f"hindsight-core/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"
            ),
            **(headers or {}),
        }
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={key})"

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    # ------------------------------------------------------------------------------ operations (no I/O)

    def _budget(self, default: float, override: float | None) -> float:
        if override is None:
            return default
        if isinstance(override, bool) or not isinstance(override, (int, float)) or override <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {override!r}")
        return float(override)

    def _op_health(self, timeout: float | None) -> Operation[Health]:
        return Operation(
            "health", "GET", "/health", _model_parser(Health), self._budget(self.timeouts.health, timeout)
        )

    def _op_upsert_bank(
        self,
        bank_id: str,
        name: str | None,
        mission: str | None,
        retain_mission: str | None,
        extraction_mode: str | None,
        options: Mapping[str, Any],
        timeout: float | None,
    ) -> Operation[BankProfile]:
        body = _build(
            BankUpsertRequest,
            "bank options",
            {
                "name": name,
                "reflect_mission": mission,
                "retain_mission": retain_mission,
                "retain_extraction_mode": extraction_mode,
                **options,
            },
        )
        return Operation(
            "create_bank",
            "PUT",
            _bank_path(bank_id),
            _model_parser(BankProfile),
            self._budget(self.timeouts.bank, timeout),
            body=_dump(body),
        )

    def _op_update_bank_config(
        self, bank_id: str, updates: Mapping[str, Any], timeout: float | None
    ) -> Operation[BankConfig]:
        if not updates:
            raise ConfigurationError("update_bank_config needs at least one setting to change")
        return Operation(
            "update_bank_config",
            "PATCH",
            _bank_path(bank_id, "/config"),
            _model_parser(BankConfig),
            self._budget(self.timeouts.bank, timeout),
            body=json.dumps({"updates": dict(updates)}).encode("utf-8"),
        )

    def _op_get_bank(self, bank_id: str, timeout: float | None) -> Operation[BankConfig]:
        return Operation(
            "get_bank",
            "GET",
            _bank_path(bank_id, "/config"),
            _model_parser(BankConfig),
            self._budget(self.timeouts.bank, timeout),
        )

    def _op_list_banks(self, query: str | None, limit: int, timeout: float | None) -> Operation[list[Bank]]:
        def parse(content: bytes) -> list[Bank]:
            return BankList.model_validate_json(content).banks

        params: dict[str, str | int] = {"limit": limit}
        if query:
            params["q"] = query
        return Operation(
            "list_banks", "GET", _API, parse, self._budget(self.timeouts.bank, timeout), params=params
        )

    def _op_delete_bank(self, bank_id: str, timeout: float | None) -> Operation[DeleteResult]:
        return Operation(
            "delete_bank",
            "DELETE",
            _bank_path(bank_id),
            _model_parser(DeleteResult),
            self._budget(self.timeouts.bank, timeout),
        )

    def _op_retain(
        self,
        bank_id: str,
        items: Sequence[RetainItem | Mapping[str, Any]],
        async_: bool,
        operation_id: str | None,
        timeout: float | None,
    ) -> Operation[RetainResponse]:
        candidate: object = items
        if isinstance(candidate, (str, bytes)) or not isinstance(candidate, Sequence) or not candidate:
            raise ConfigurationError("retain needs a non-empty list of items (each with at least 'content')")
        parsed = [
            item if isinstance(item, RetainItem) else _build(RetainItem, "retain item", item)
            for item in items
        ]
        if async_ and operation_id is None:
            operation_id = str(uuid.uuid4())
        request = RetainRequest.model_validate(
            {"items": parsed, "async": async_, "operation_id": operation_id}
        )
        # An async retain with an operation id is idempotent on the server; a sync one is too unless it
        # appends to a document (a resend would append twice).
        idempotent = async_ or all(i.document_id and i.update_mode != "append" for i in parsed)
        return Operation(
            "retain",
            "POST",
            _bank_path(bank_id, "/memories"),
            _model_parser(RetainResponse),
            self._budget(self.timeouts.retain, timeout),
            body=_dump(request),
            idempotent=idempotent,
        )

    @staticmethod
    def _retain_item(
        content: str,
        context: str | None,
        timestamp: datetime | str | None,
        document_id: str | None,
        metadata: Mapping[str, str] | None,
        tags: Sequence[str] | None,
        update_mode: UpdateMode | None,
    ) -> RetainItem:
        if not isinstance(content, str) or not content.strip():
            raise ConfigurationError(f"retain content must be a non-empty string, got {content!r:.60}")
        result: RetainItem = _build(
            RetainItem,
            "retain item",
            {
                "content": content,
                "context": context,
                "timestamp": timestamp,
                "document_id": document_id,
                "metadata": dict(metadata) if metadata is not None else None,
                "tags": list(tags) if tags is not None else None,
                "update_mode": update_mode,
            },
        )
        return result

    def _op_recall(
        self,
        bank_id: str,
        query: str,
        budget: Budget | None,
        max_tokens: int | None,
        types: Sequence[str] | None,
        tags: Sequence[str] | None,
        tags_match: TagsMatch | None,
        include_entities: bool | None,
        trace: bool | None,
        query_timestamp: str | None,
        timeout: float | None,
    ) -> Operation[RecallResponse]:
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(f"recall query must be a non-empty string, got {query!r:.60}")
        include = None
        if include_entities is not None:
            include = RecallIncludeOptions(entities=EntityIncludeOptions() if include_entities else None)
        request = _build(
            RecallRequest,
            "recall options",
            {
                "query": query,
                "budget": budget,
                "max_tokens": max_tokens,
                "types": list(types) if types is not None else None,
                "tags": list(tags) if tags is not None else None,
                "tags_match": tags_match,
                "trace": trace,
                "query_timestamp": query_timestamp,
            },
        )
        body = request.model_dump(by_alias=True, exclude_none=True)
        if include is not None:
            # ``entities: null`` is meaningful (turns entities off), so it is sent explicitly.
            body["include"] = include.model_dump()
        return Operation(
            "recall",
            "POST",
            _bank_path(bank_id, "/memories/recall"),
            _model_parser(RecallResponse),
            self._budget(self.timeouts.recall, timeout),
            body=json.dumps(body).encode("utf-8"),
        )

    def _op_reflect(
        self,
        bank_id: str,
        query: str,
        budget: Budget | None,
        context: str | None,
        max_tokens: int | None,
        response_schema: Mapping[str, Any] | None,
        include_facts: bool,
        tags: Sequence[str] | None,
        tags_match: TagsMatch | None,
        fact_types: Sequence[str] | None,
        timeout: float | None,
    ) -> Operation[ReflectResponse]:
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(f"reflect query must be a non-empty string, got {query!r:.60}")
        request = _build(
            ReflectRequest,
            "reflect options",
            {
                "query": query,
                "budget": budget,
                "context": context,
                "max_tokens": max_tokens,
                "response_schema": dict(response_schema) if response_schema is not None else None,
                "include": ReflectIncludeOptions(facts={}) if include_facts else None,
                "tags": list(tags) if tags is not None else None,
                "tags_match": tags_match,
                "fact_types": list(fact_types) if fact_types is not None else None,
            },
        )
        return Operation(
            "reflect",
            "POST",
            _bank_path(bank_id, "/reflect"),
            _model_parser(ReflectResponse),
            self._budget(self.timeouts.reflect, timeout),
            body=_dump(request),
        )

    # ------------------------------------------------------------------------------- the retry engine

    def _request(self, op: Operation[Any], remaining: float) -> httpx.Request:
        timeout = httpx.Timeout(remaining, connect=min(self.timeouts.connect, remaining))
        return httpx.Request(
            op.method,
            self.base_url + op.path,
            params=op.params or None,
            content=op.body,
            headers=self._headers,
            extensions={"timeout": timeout.as_dict()},
        )

    def _plan(self, op: Operation[T]) -> Generator[Step, Outcome, T]:
        """Run ``op`` to completion: yields the I/O to do, receives its outcome, returns the result."""
        url = self.base_url + op.path
        deadline = time.monotonic() + op.budget
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            outcome = yield Send(self._request(op, remaining))
            if isinstance(outcome, httpx.Response):
                if outcome.is_success:
                    return self._parse(op, outcome, url, attempt)
                error: APIError = self._status_error(op, outcome, url, attempt)
                retryable = outcome.status_code in _RETRYABLE_STATUS and (
                    op.idempotent or outcome.status_code in _NOT_PROCESSED_STATUS
                )
                delay = self._retry_after(outcome) if retryable else None
            else:
                assert isinstance(outcome, httpx.HTTPError)
                error = self._transport_error(op, outcome, url, attempt)
                not_sent = isinstance(outcome, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                retryable = isinstance(outcome, httpx.TransportError) and (op.idempotent or not_sent)
                delay = None
            if not retryable or attempt > self.retry.max_retries:
                raise error
            if delay is None:
                delay = self.retry.backoff(attempt)
            if time.monotonic() + delay >= deadline:
                raise error  # no time left in the budget for another attempt
            yield Sleep(delay)

    def _parse(self, op: Operation[T], response: httpx.Response, url: str, attempts: int) -> T:
        try:
            return op.parse(response.content)
        except (pydantic.ValidationError, ValueError) as exc:
            detail = _describe_validation(exc) if isinstance(exc, pydantic.ValidationError) else str(exc)
            raise APIResponseValidationError(
                self._scrub(
                    f"Hindsight {op.name} returned a response that could not be read "
                    f"(HTTP {response.status_code}, {op.method} {url}): {detail[:300]}"
                ),
                operation=op.name,
                url=url,
                attempts=attempts,
            ) from None

    def _status_error(
        self, op: Operation[Any], response: httpx.Response, url: str, attempts: int
    ) -> APIStatusError:
        status = response.status_code
        detail = self._scrub(_error_detail(response))
        cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIStatusError)
        reason = response.reason_phrase or "error"
        message = f"Hindsight {op.name} failed with HTTP {status} {reason}"
        if detail:
            message += f": {detail}"
        message += f" ({op.method} {url}"
        message += f", {attempts} attempts)" if attempts > 1 else ")"
        if status == 401:
            message += (
                "; check the API key (api_key / HINDSIGHT_API_KEY)"
                if self._api_key
                else "; the server needs an API key (api_key / HINDSIGHT_API_KEY)"
            )
        return cls(
            message, operation=op.name, url=url, status_code=status, detail=detail or None, attempts=attempts
        )

    def _transport_error(self, op: Operation[Any], exc: httpx.HTTPError, url: str, attempts: int) -> APIError:
        cause = self._scrub(str(exc)) or type(exc).__name__
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, httpx.TimeoutException):
            phase = "connecting" if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "waiting"
            return APITimeoutError(
                f"Hindsight {op.name} timed out {phase} ({type(exc).__name__}) at {url}{tries}; "
                f"the {op.name} time budget is {op.budget:g} s",
                operation=op.name,
                url=url,
                attempts=attempts,
            )
        return APIConnectionError(
            f"Hindsight {op.name} could not reach {self.base_url}{tries}: {type(exc).__name__}: {cause}",
            operation=op.name,
            url=url,
            attempts=attempts,
        )

    def _retry_after(self, response: httpx.Response) -> float | None:
        """The server's requested wait (``retry-after-ms`` or ``Retry-After``), capped; None if absent."""
        value: float | None = None
        raw_ms = response.headers.get("retry-after-ms")
        raw = response.headers.get("retry-after")
        if raw_ms is not None:
            try:
                value = float(raw_ms) / 1000.0
            except ValueError:
                value = None
        if value is None and raw is not None:
            try:
                value = float(raw)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
                if parsed is not None:
                    value = parsed.timestamp() - time.time()
        if value is None or value < 0:
            return None
        return min(value, self.retry.max_retry_after)

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text


def _error_detail(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:300]
    detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
    if isinstance(detail, list):
        parts = []
        for entry in detail[:5]:
            if isinstance(entry, dict):
                location = ".".join(str(p) for p in entry.get("loc", []) if p != "body")
                parts.append(
                    f"{location}: {entry.get('msg', entry)}" if location else str(entry.get("msg", entry))
                )
            else:
                parts.append(str(entry))
        return "; ".join(parts)[:500]
    if isinstance(detail, dict):
        return json.dumps(detail)[:500]
    return str(detail)[:500]
