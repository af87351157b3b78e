"""Shared fixtures: a real Hindsight server for the whole session, and a fresh bank per test.

``HINDSIGHT_TEST_API_URL`` points the tests at a server that is already running; otherwise
``hindsight_core.local`` provisions and starts one (see docs/local-server.md) and stops it at the end.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no internet: never fetch LiteLLM's cost map

import uuid
from collections.abc import Iterator

import pytest

from hindsight_core.local import LocalHindsightServer, LocalServerError, check_health

__all__ = ["bank_id", "hindsight_server"]

pytest_plugins = ["tests.providers"]  # fake_openai, fake_anthropic: loopback LLM providers

EXTERNAL_SERVER_ENV = "HINDSIGHT_TEST_API_URL"


@pytest.fixture(scope="session")
def hindsight_server() -> Iterator[str]:
    """The base URL of a healthy Hindsight server (no trailing slash)."""
    external = os.environ.get(EXTERNAL_SERVER_ENV, "").strip().rstrip("/")
    if external:
        if not check_health(external, timeout=10.0):
            pytest.fail(
                f"{EXTERNAL_SERVER_ENV}={external} does not answer GET /health with 200", pytrace=False
            )
        yield external
        return
    server = LocalHindsightServer()
    failure: LocalServerError | None = None
    try:
        url = server.start()
    except LocalServerError as exc:
        failure = exc
    if failure is not None:  # outside the except block, so the report is just the message and the log
        pytest.fail(failure.details(40), pytrace=False)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def bank_id() -> str:
    """A bank name no other test uses."""
    return f"test-{uuid.uuid4().hex}"
