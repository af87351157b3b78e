"""Fixtures for the LiteLLM integration tests: a clean integration state per test, a seeded bank."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import hindsight_litellm as hl
from hindsight_core.storage import StorageWorker
from hindsight_litellm import config, integration
from tests.helpers import seed_bank
from tests.providers import FakeOpenAI

FACTS = [
    "The user's favourite colour is teal.",
    "The user is building a FastAPI application.",
    "The user prefers pytest for testing.",
]


@pytest.fixture(autouse=True)
def clean_integration() -> Iterator[None]:
    """Each test starts unconfigured and disabled, and leaves LiteLLM unpatched."""
    hl.reset_config()
    hl.disable()
    hl.clear_injection_debug()
    yield
    hl.disable()
    integration._uninstall()
    hl.reset_config()


@pytest.fixture
def private_storage() -> Iterator[StorageWorker]:
    """A storage worker of the test's own, for tests whose conversations cannot be stored (Hindsight down):
    their retries must not hold up the shared worker that other tests flush. Dropped at the end."""
    worker = StorageWorker(retry_initial=0.05, retry_max=0.2, exit_timeout=0.5)
    previous = config.PIPELINE._storage
    config.PIPELINE._storage = worker
    try:
        yield worker
    finally:
        config.PIPELINE._storage = previous
        worker.close(timeout=0)


@pytest.fixture
def seeded(hindsight_server: str, bank_id: str) -> str:
    """A bank holding FACTS (stored verbatim); returns its id."""
    seed_bank(hindsight_server, bank_id, FACTS)
    return bank_id


def openai_call(fake: FakeOpenAI, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for a LiteLLM call to the fake OpenAI-compatible provider."""
    return {"model": "openai/gpt-4o-mini", "api_base": fake.base_url, "api_key": "sk-test", **kwargs}
