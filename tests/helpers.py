"""Helpers shared by the integration tests: seeding a bank, reading back what was stored."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from hindsight_core import AsyncHindsightClient, HindsightClient, NotFoundError
from hindsight_core.storage import default_worker

__all__ = [
    "PROXY_CONFIG",
    "SETTLE_TIMEOUT",
    "async_recall_threads",
    "closed_port_url",
    "document_text",
    "documents",
    "flush_storage",
    "free_port",
    "markers",
    "recall_texts",
    "retains_running",
    "seed_bank",
    "settled_text",
    "wait_for",
]

SETTLE_TIMEOUT = 120.0


def seed_bank(url: str, bank: str, facts: Iterable[str] = ()) -> None:
    """Create ``bank`` storing text verbatim (no LLM extraction), with ``facts`` retained synchronously."""
    with HindsightClient(url) as client:
        client.create_bank(bank, extraction_mode="chunks")
        items = [{"content": fact} for fact in facts]
        if items:
            client.retain_batch(bank, items)


def recall_texts(url: str, bank: str, query: str) -> list[str]:
    with HindsightClient(url) as client:
        try:
            return [r.text for r in client.recall(bank, query).results]
        except NotFoundError:
            return []


def flush_storage(timeout: float = 60.0) -> None:
    """Wait until every conversation handed to storage has been acknowledged by the server."""
    assert default_worker().flush(timeout=timeout), "storage did not drain in time"
    assert not [e for e in default_worker().pending_errors() if e.permanent], (
        default_worker().pending_errors()
    )


def document_text(url: str, bank: str, document_id: str) -> str | None:
    """The stored text of a document, or None while it does not exist."""
    response = httpx.get(
        f"{url}/v1/default/banks/{quote(bank, safe='')}/documents/{quote(document_id, safe='')}"
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    text: str = response.json()["original_text"]
    return text


def retains_running(url: str, bank: str) -> int:
    total = 0
    for state in ("pending", "processing"):
        response = httpx.get(
            f"{url}/v1/default/banks/{bank}/operations",
            params={"status": state, "type": "retain", "limit": 1},
            timeout=10,
        )
        response.raise_for_status()
        total += int(response.json()["total"])
    return total


def settled_text(url: str, bank: str, document_id: str, markers: list[str]) -> str:
    """The document text once every marker is in it and no retain of the bank is still running."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        text = document_text(url, bank, document_id) or ""
        if all(m in text for m in markers) and retains_running(url, bank) == 0:
            return document_text(url, bank, document_id) or ""
        if time.monotonic() > deadline:
            raise AssertionError(f"document {document_id!r} of {bank!r} never held all turns: {text!r:.500}")
        time.sleep(0.2)


def markers(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"zq{tag}m{i:02d}x" for i in range(n)]


def documents(url: str, bank: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/v1/default/banks/{quote(bank, safe='')}/documents", params={"limit": 100})
    if response.status_code == 404:
        return []
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (the server processes retains asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


PROXY_CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {api_base}
      api_key: sk-provider
litellm_settings:
  callbacks: {callbacks}
general_settings:
  master_key: sk-master
"""
"""A LiteLLM proxy ``config.yaml``: ``model`` served by the OpenAI-compatible ``api_base``, hooks
``callbacks``."""


def async_recall_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the sync client's recall fail and record the thread of each async client recall: an async path
    that used the sync client, or ran in a worker thread, shows up in the returned list (or fails)."""
    threads: list[int] = []
    original = AsyncHindsightClient.recall

    async def recorded(self: AsyncHindsightClient, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return await original(self, *args, **kwargs)

    def blocking(self: HindsightClient, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sync client was used on the async path")

    monkeypatch.setattr(AsyncHindsightClient, "recall", recorded)
    monkeypatch.setattr(HindsightClient, "recall", blocking)
    return threads
