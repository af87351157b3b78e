"""HTTP clients for the Hindsight API: :class:`HindsightClient` and :class:`AsyncHindsightClient`."""

from ._base import DEFAULT_BASE_URL, RetryPolicy, Timeouts
from .async_ import AsyncHindsightClient
from .sync import HindsightClient

__all__ = ["DEFAULT_BASE_URL", "AsyncHindsightClient", "HindsightClient", "RetryPolicy", "Timeouts"]
