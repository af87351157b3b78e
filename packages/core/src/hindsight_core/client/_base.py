"""Everything the sync and async clients share: running a request (the retry loop), parsing the answer and
mapping errors; the request builders are in :mod:`._operations`, the policies in :mod:`.policy`. No I/O
happens here.

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
import time
from collections.abc import Generator, Mapping
from typing import Any, TypeVar

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
from ._operations import Operation, Outcome, Requests, Send, Sleep, Step, describe_validation
from .policy import NOT_PROCESSED_STATUS, RETRYABLE_STATUS, RetryPolicy, Timeouts

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
_MAX_CACHED_URLS = 1024
"""Parsed request URLs kept per client (one per bank and operation); the cache is emptied when full."""

T = TypeVar("T")


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


class BaseClient(Requests):
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
        # Parsed once: httpx parses a URL string character by character and normalises headers given as a
        # dict, which on a busy proxy was a tenth of memory's CPU per request.
        self._request_headers = httpx.Headers(self._headers)
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={key})"

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= _MAX_CACHED_URLS:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self.base_url + path)
        return url

    def _request(self, op: Operation[Any], remaining: float) -> httpx.Request:
        connect = min(self.timeouts.connect, remaining)
        return httpx.Request(
            op.method,
            self._url(op.path),
            params=op.params or None,
            content=op.body,
            headers=self._request_headers,
            extensions={
                "timeout": {"connect": connect, "read": remaining, "write": remaining, "pool": remaining}
            },
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
                retryable = outcome.status_code in RETRYABLE_STATUS and (
                    op.idempotent or outcome.status_code in NOT_PROCESSED_STATUS
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
            detail = describe_validation(exc) if isinstance(exc, pydantic.ValidationError) else str(exc)
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
                f"the {op.name} time budget is {op.budget:.3g} s",
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
