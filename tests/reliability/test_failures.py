"""Hindsight refusing connections, hanging, answering 5xx, 429 or malformed JSON, for recall and storage at
once, through every integration: the LLM call returns, the debug record says why, one rate-limited WARNING
says memory was skipped, and the turns that could not be stored are visible (pending errors, a storage
WARNING), kept, and stored once Hindsight answers again.

The faults come from :class:`~tests.reliability.hindsight_faults.HindsightFaults`, a loopback HTTP server
in front of the real Hindsight server. Client-level retry counts, backoff and ``Retry-After`` are proven
with a mock transport in ``tests/core/test_client_faults.py``; the worker's retry and outbox mechanics in
``tests/core/test_storage.py`` and ``tests/core/test_storage_server.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest

from hindsight_core.pipeline import MEMORY_OPEN
from hindsight_core.storage import StorageWorker
from tests.helpers import seed_bank
from tests.providers import FakeOpenAI
from tests.reliability.adapters import ADAPTERS, Target
from tests.reliability.conftest import soon
from tests.reliability.hindsight_faults import KINDS, HindsightFaults

pytestmark = pytest.mark.server


STORAGE_ERRORS = {
    "refused": "could not reach",
    "hung": "timed out",
    "5xx": "HTTP 503",
    "429": "HTTP 429",
}
"""What a pending storage error says, per kind of failure."""


def _settings(kind: str) -> dict[str, object]:
    """Short budgets where the fault is a hang (the call waits at most ``recall_timeout``), one client
    retry otherwise (retried 5xx/429 are seen by the fault server)."""
    if kind == "hung":
        return {"recall_timeout": 0.5, "retain_timeout": 0.5, "max_retries": 0}
    return {"max_retries": 1}


def _warnings(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith(logger) and text in r.getMessage()
    ]


@pytest.fixture(scope="module")
def matrix_bank(hindsight_server: str) -> str:
    """One bank for the whole matrix (each case stores under its own session); its content does not
    matter: every lookup is answered by the fault server."""
    bank = f"test-failures-{uuid.uuid4().hex}"
    seed_bank(hindsight_server, bank)
    return bank


@pytest.mark.parametrize("adapter_name", list(ADAPTERS))
@pytest.mark.parametrize("kind_name", list(KINDS))
async def test_misbehaving_hindsight_never_breaks_the_llm_call(
    kind_name: str,
    adapter_name: str,
    hindsight_server: str,
    faults: HindsightFaults,
    worker: StorageWorker,
    fake_openai: FakeOpenAI,
    matrix_bank: str,
    caplog: pytest.LogCaptureFixture,
    figures: Callable[..., None],
) -> None:
    kind = KINDS[kind_name]
    bank_id = matrix_bank
    caplog.set_level(logging.INFO)
    session = f"{kind_name}-{adapter_name}-{uuid.uuid4().hex[:8]}"
    target = Target(faults.url, bank_id, session, fake_openai, worker, _settings(kind_name))
    adapter = ADAPTERS[adapter_name](target)
    faults.apply(kind)

    answers = [
        await adapter.ask("What is my favourite colour?"),
        await adapter.ask("And my favourite tea?"),
        await adapter.ask("And my favourite city?"),
    ]

    # The LLM answered every call, without memory, and each record says why. After a connection failure
    # (refused, timed out) the next lookups to that server are skipped at once (its circuit breaker is
    # open until the background probe finds it answering): the later calls do not wait again.
    for answer in answers:
        assert answer.text == adapter.reply
        assert MEMORY_OPEN not in answer.sent
        assert not answer.record.injected
    first, *later = (answer.record.error or "" for answer in answers)
    assert first.startswith(kind.error), first
    for error in later:
        if kind.pauses:
            assert error.startswith("APIConnectionError"), error
            assert "could not be reached" in error, error
            assert "checked in the background" in error, error
        else:
            assert error.startswith(kind.error), error
    if kind.pauses:
        assert faults.hits["recall"] == (0 if kind_name == "refused" else 1)  # the later ones were not sent
    else:
        assert faults.hits["recall"] >= len(answers)  # every lookup reached Hindsight, answered badly
    if kind_name in ("5xx", "429"):
        assert "HTTP " + kind_name.replace("5xx", "503") in first

    # WARNINGs are rate-limited per kind of error: one per kind, not one per call.
    skipped = _warnings(caplog, "hindsight_core.", "memory skipped")
    kinds_of_error = {error.split(":", 1)[0] for error in (first, *later)}
    assert len(skipped) == len(kinds_of_error) < len(answers), skipped
    assert kind.error in skipped[0]
    assert bank_id in skipped[0]

    if not kind.transient:
        # A retain answered 2xx counts as accepted by the server, even if its body is unreadable.
        assert worker.flush(30)
        assert worker.stats().stored == len(answers)
        assert worker.pending_errors() == []
        assert [a.record.storage_status for a in answers] == ["stored"] * len(answers)
        assert _warnings(caplog, "hindsight_core.storage", "treating the turns as stored")
        figures(recall_requests=faults.hits["recall"], retain_requests=faults.hits["retain"])
        return

    # Storage: nothing raised, the turns wait, and the failure is visible.
    retrying = soon(worker.pending_errors, timeout=30, what="a pending storage error")
    assert all(not f.permanent and f.bank_id == bank_id for f in retrying), retrying
    assert all(STORAGE_ERRORS[kind_name] in f.error for f in retrying), retrying
    assert worker.stats().pending == len(answers)
    assert [a.record.storage_status for a in answers] == ["queued"] * len(answers)
    # (logged just after the error is recorded: wait for it rather than race it)
    soon(lambda: _warnings(caplog, "hindsight_core.storage", "Hindsight storage is retrying"), what="warning")
    assert worker.running

    # Hindsight answers again: every waiting turn is stored, and the records say so.
    faults.clear()
    assert worker.flush(60)
    assert worker.pending_errors() == []
    stats = worker.stats()
    assert (stats.stored, stats.failed, stats.pending) == (len(answers), 0, 0)
    assert stats.retries >= 1
    assert [a.record.storage_status for a in answers] == ["stored"] * len(answers)
    figures(
        recall_requests=faults.hits["recall"],
        retain_requests=faults.hits["retain"],
        storage_retries=stats.retries,
        storage_requests=stats.requests,
    )
