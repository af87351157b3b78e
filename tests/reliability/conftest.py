"""Fixtures for the reliability tests: a fault server in front of the real Hindsight server, a storage
worker of the test's own (installed in every integration), and clean integration state."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

import hindsight_litellm as hl
from hindsight_core.breaker import reset_breakers
from hindsight_core.memory import MemoryPipeline
from hindsight_core.storage import StorageWorker
from hindsight_litellm import config as litellm_config
from hindsight_litellm import integration
from langchain_hindsight import runnable as langchain_runnable
from llama_index.memory.hindsight import _core as llamaindex_core
from tests.reliability.hindsight_faults import HindsightFaults

T = TypeVar("T")

PIPELINES: tuple[MemoryPipeline, ...] = (
    litellm_config.PIPELINE,
    langchain_runnable._PIPELINE,
    llamaindex_core.PIPELINE,
)
"""The integrations' process-wide memory pipelines (LiteLLM and its SDK wrappers, LangChain, LlamaIndex)."""


def forget_lookup_pauses() -> None:
    """Forget that servers could not be reached (their circuit breakers skip lookups until they answer) and
    the lookups made for earlier conversations."""
    reset_breakers()
    for pipeline in PIPELINES:
        pipeline.lookups.clear()


@pytest.fixture(autouse=True)
def clean_integrations() -> Iterator[None]:
    """Each test starts with the LiteLLM integration unconfigured, every memory-warning rate limit reset (a
    warning held back by an earlier test would hide this test's) and no lookup pause left by an earlier
    test's unreachable server (a later test's server may get the same port)."""
    hl.reset_config()
    hl.disable()
    hl.clear_injection_debug()
    for pipeline in PIPELINES:
        pipeline._warn.reset()
    forget_lookup_pauses()
    yield
    hl.disable()
    integration._uninstall()
    hl.reset_config()


@contextmanager
def storage_for_every_integration(worker: StorageWorker) -> Iterator[StorageWorker]:
    """Make ``worker`` the storage of every integration's pipeline inside the block."""
    previous = [pipeline._storage for pipeline in PIPELINES]
    for pipeline in PIPELINES:
        pipeline._storage = worker
    try:
        yield worker
    finally:
        for pipeline, storage in zip(PIPELINES, previous, strict=True):
            pipeline._storage = storage


@pytest.fixture
def worker() -> Iterator[StorageWorker]:
    """A storage worker of the test's own (quick retries), used by every integration during the test, so
    turns that cannot be stored never hold up the process-wide worker other tests flush."""
    own = StorageWorker(retry_initial=0.05, retry_max=0.2, exit_timeout=0.5)
    try:
        with storage_for_every_integration(own):
            yield own
    finally:
        own.close(timeout=0)


@pytest.fixture
def faults(hindsight_server: str) -> Iterator[HindsightFaults]:
    """A fault server in front of the real Hindsight server (no fault until the test sets one)."""
    server = HindsightFaults(hindsight_server)
    try:
        yield server
    finally:
        server.close()
    assert not server.errors, server.errors


FIGURES_ENV = "HINDSIGHT_RELIABILITY_FIGURES"
"""A file the reliability tests append their figures to (one JSON line per test), for docs/reliability.md."""


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(**values)``: report what a run measured (printed; appended to the file named by
    ``$HINDSIGHT_RELIABILITY_FIGURES`` when set). Reported, never asserted: timings are not pass/fail."""

    def report(**values: Any) -> None:
        line = json.dumps({"test": request.node.name, **values}, default=str)
        print(f"reliability figures: {line}")
        path = os.environ.get(FIGURES_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    return report


def soon(predicate: Callable[[], T | None], *, what: str, timeout: float = 60.0) -> T:
    """Poll ``predicate`` every 20 ms until it returns something truthy (``tests.helpers.wait_for``
    polls every 200 ms, which adds up over the parametrized cases here). Not a timing assertion: the
    timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
