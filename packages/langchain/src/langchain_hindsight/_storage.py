"""Waiting for, and reporting on, the background storage of conversations (the core's process-wide worker)."""

from __future__ import annotations

from hindsight_core.storage import StorageFailure, default_worker

__all__ = ["aflush_storage", "flush_storage", "get_pending_storage_errors"]


def flush_storage(timeout: float | None = None) -> bool:
    """Wait until every exchange queued so far is stored or given up on; False if ``timeout`` passed first.

    Storage happens in the background and never delays a call; call this before a short script exits or
    before reading back what was just stored.
    """
    return default_worker().flush(timeout)


async def aflush_storage(timeout: float | None = None) -> bool:
    """:func:`flush_storage` for asyncio (does not block the event loop)."""
    return await default_worker().aflush(timeout)


def get_pending_storage_errors() -> list[StorageFailure]:
    """Storage failures: those given up on, then those still being retried."""
    return default_worker().pending_errors()
