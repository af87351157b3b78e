"""The error tree of the Hindsight integrations.

::

    HindsightError
    ├── ConfigurationError            bad option or argument (also a ValueError)
    ├── NotConfiguredError            memory is used before it is configured (also a RuntimeError)
    ├── StorageError                  a conversation could not be stored (get_pending_storage_errors)
    └── APIError                      talking to the Hindsight server failed
        ├── APIConnectionError        the server could not be reached
        │   └── APITimeoutError       it did not answer in time
        ├── APIResponseValidationError  it answered with something we cannot read
        └── APIStatusError            it answered with an error status
            ├── BadRequestError               400
            ├── AuthenticationError           401
            ├── PermissionDeniedError         403
            ├── NotFoundError                 404
            ├── ConflictError                 409
            ├── UnprocessableEntityError      422
            ├── RateLimitError                429
            └── ServerError                   5xx

Every message is non-empty and says which operation failed against which server. Messages never contain
the API key: the key only ever travels in a request header, and any text that comes back from the server
is scrubbed of it before it is put in a message.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "HindsightError",
    "NotConfiguredError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "StorageError",
    "UnprocessableEntityError",
]


class HindsightError(Exception):
    """Base class of every error raised by the Hindsight integrations."""


class ConfigurationError(HindsightError, ValueError):
    """An option or argument has an invalid value; the message names it and what is allowed."""


class NotConfiguredError(HindsightError, RuntimeError):
    """Memory was asked for before it was configured (no configuration, or no bank): the message says what
    to call. A RuntimeError too, as hindsight-litellm 0.5.4 raised for the same mistakes."""


class StorageError(HindsightError):
    """A conversation that could not be stored (yet: ``permanent`` is False while the worker retries).

    ``failure`` is the storage worker's record of it (bank, document, turns, attempts)."""

    def __init__(self, message: str, *, failure: object, permanent: bool) -> None:
        super().__init__(message)
        self.failure = failure
        self.permanent = permanent


class APIError(HindsightError):
    """A request to the Hindsight server failed.

    ``operation`` is what was being done (``"recall"``, ``"retain"``...), ``url`` the request URL,
    ``attempts`` how many times the request was sent.
    """

    def __init__(self, message: str, *, operation: str, url: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.url = url
        self.attempts = attempts

    def __str__(self) -> str:
        return self.message


class APIConnectionError(APIError):
    """The server could not be reached (refused, reset, DNS failure...)."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the operation's time budget."""


class APIResponseValidationError(APIError):
    """The server answered successfully but with a body that is not what the API promises."""


class APIStatusError(APIError):
    """The server answered with an HTTP error status. ``detail`` is its explanation, when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        url: str,
        status_code: int,
        detail: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, operation=operation, url=url, attempts=attempts)
        self.status_code = status_code
        self.detail = detail


class BadRequestError(APIStatusError):
    """HTTP 400."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404, e.g. an unknown memory bank."""


class ConflictError(APIStatusError):
    """HTTP 409."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: the server rejected the request's fields."""


class RateLimitError(APIStatusError):
    """HTTP 429."""


class ServerError(APIStatusError):
    """HTTP 5xx."""
