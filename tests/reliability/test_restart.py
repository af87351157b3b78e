"""The Hindsight server going away in the middle of a long run, and the application process restarting with
turns still unsent: nothing is lost and nothing is stored twice.

The outage is a :class:`~tests.faults.CuttableProxy` between the integration and the real server: ``cut()``
drops every connection and refuses new ones, as a stopped server does; ``drop_responses(1)`` lets one
request reach the server but loses its acknowledgement. What was stored is read back from the server (banks
in ``chunks`` mode keep the text verbatim), once every retain the bank received has been processed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hindsight_litellm as hl
from hindsight_core.connection import Connection
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.storage import StorageWorker
from tests.faults import CuttableProxy
from tests.helpers import markers, seed_bank, settled_text, wait_for
from tests.reliability.conftest import soon, storage_for_every_integration

pytestmark = pytest.mark.server

TURNS = 200
OUTAGE = range(60, 140)  # the turns made while the server is unreachable
LOOKUP_EVERY = 20
"""Outside the outage, memory is looked up every so many turns only: a recall costs the real server
0.1-1 s here, and this test is about storage (recall through outages: ``test_failures.py``)."""
API_KEY = "hs-restart-test-key-7c1f0e"


@pytest.fixture
def proxy(hindsight_server: str) -> Iterator[CuttableProxy]:
    forwarder = CuttableProxy(hindsight_server)
    yield forwarder
    forwarder.close()


def turn(index: int, name: str, *, lookup: bool = True) -> InjectionDebugInfo:
    """One turn through ``hindsight_litellm.completion`` (LiteLLM's mock provider answers); without
    ``lookup``, no memory is looked up for it (the turn is still stored)."""
    response = hl.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": f"Turn {index}: please remember the code {name}."}],
        mock_response=f"Noted turn {index}.",
        hindsight_inject_memories=lookup,
    )
    assert response.choices[0].message.content == f"Noted turn {index}."
    record = hl.get_last_injection_debug()
    assert record is not None
    return record


def test_two_hundred_turns_through_an_outage_and_a_lost_acknowledgement_are_each_stored_once(
    hindsight_server: str,
    bank_id: str,
    proxy: CuttableProxy,
    worker: StorageWorker,
    caplog: pytest.LogCaptureFixture,
    figures: Callable[..., None],
) -> None:
    seed_bank(hindsight_server, bank_id)
    caplog.set_level(logging.INFO)
    hl.configure(
        hindsight_api_url=proxy.url, bank_id=bank_id, session_id="long-run", budget="low", max_retries=0
    )
    names = markers(TURNS)
    records: list[InjectionDebugInfo] = []
    started = time.monotonic()
    cut_at = restored_at = started
    stats_in_outage = worker.stats()
    for index, name in enumerate(names):
        if index == OUTAGE.start:
            proxy.cut()
            cut_at = time.monotonic()
        if index == OUTAGE.stop:
            # Storage has noticed the outage and is backing off before the server comes back.
            soon(lambda: worker.stats().retries >= 3, timeout=60, what="storage retrying in the outage")
            stats_in_outage = worker.stats()
            # Only the storage worker talks to the server now: its first request after the outage reaches
            # the server, but the acknowledgement is lost. It must be sent again and stored once.
            proxy.drop_responses(1)
            proxy.restore()
            soon(lambda: proxy.dropped == 1, timeout=60, what="the first request after the outage")
            restored_at = time.monotonic()
        records.append(turn(index, name, lookup=index in OUTAGE or index % LOOKUP_EVERY == 0))
    assert worker.flush(120), "storage did not drain after the outage"
    drained_at = time.monotonic()

    # Every LLM call returned; those made during the outage went on without memory, and said so. After the
    # first connection failure, lookups to the server are skipped at once (its circuit breaker is open)
    # until the background probe finds it again, which may still be so for the first lookups after.
    outage_errors = [records[i].error or "" for i in OUTAGE]
    assert all(error.startswith("APIConnectionError") for error in outage_errors), outage_errors[:3]
    paused = [i for i in range(TURNS) if "could not be reached" in (records[i].error or "")]
    assert all(records[i].error is None for i in range(TURNS) if i not in OUTAGE and i not in paused)
    assert [r.storage_status for r in records] == ["stored"] * TURNS
    skipped = [r for r in caplog.records if "memory skipped" in r.getMessage()]
    assert 1 <= len(skipped) <= 1 + int((restored_at - cut_at) // 60)  # rate-limited: one a minute at most

    stats = worker.stats()
    assert (stats.submitted, stats.stored, stats.failed, stats.pending) == (TURNS, TURNS, 0, 0)
    assert stats.retries >= 2  # the outage, and the lost acknowledgement
    assert stats_in_outage.pending >= 1
    assert worker.pending_errors() == []
    assert proxy.dropped == 1

    text = settled_text(hindsight_server, bank_id, "long-run", names)
    assert [text.count(name) for name in names] == [1] * TURNS
    injected = sum(r.injected for r in records)
    assert "<hindsight_memories>" not in text  # memory injected along the way is never stored

    # Memory works again: once the lookup pause has run out, a lookup finds a turn stored in the outage.
    wanted = names[OUTAGE.start + 10]

    def lookup() -> InjectionDebugInfo | None:
        response = hl.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": f"What was the code {wanted}?"}],
            mock_response="It was that one.",
            hindsight_store_conversations=False,
        )
        assert response.choices[0].message.content == "It was that one."
        record = hl.get_last_injection_debug()
        return record if record is not None and record.error is None else None

    after: InjectionDebugInfo = wait_for(lookup, timeout=30, what="lookups to resume after the outage")
    assert wanted in after.memory_context

    figures(
        turns=TURNS,
        outage_turns=len(OUTAGE),
        outage_seconds=round(restored_at - cut_at, 2),
        run_seconds=round(drained_at - started, 2),
        drain_after_restore_seconds=round(drained_at - restored_at, 2),
        turns_waiting_when_restored=stats_in_outage.pending,
        retries=stats.retries,
        requests=stats.requests,
        refused_connections=proxy.refused,
        dropped_acknowledgements=proxy.dropped,
        memory_warnings=len(skipped),
        storage_warnings=len([r for r in caplog.records if "storage is retrying" in r.getMessage()]),
        calls_with_memory_injected=injected,
        lookups_skipped_by_the_pause=len(paused),
    )


def test_turns_left_in_the_outbox_by_a_closed_worker_are_stored_once_by_the_next(
    hindsight_server: str,
    bank_id: str,
    proxy: CuttableProxy,
    tmp_path: Path,
    figures: Callable[..., None],
) -> None:
    seed_bank(hindsight_server, bank_id)
    outbox = tmp_path / "outbox"
    names = markers(20)
    first = StorageWorker(outbox_dir=outbox, retry_initial=0.05, retry_max=0.2)
    hl.configure(
        hindsight_api_url=proxy.url, bank_id=bank_id, session_id="restart", api_key=API_KEY, max_retries=0
    )
    proxy.cut()
    with storage_for_every_integration(first):
        records = [turn(index, name) for index, name in enumerate(names)]
    # The process ends while the server is down: the turns are deferred to disk, not lost.
    assert first.close(timeout=0.5) is False
    assert first.stats().deferred == len(names)
    assert [r.storage_status for r in records] == ["deferred"] * len(names)
    files = sorted(outbox.glob("*.json"))
    assert files
    on_disk: list[dict[str, Any]] = []
    for path in files:
        assert API_KEY not in path.read_text()
        on_disk.append({"name": path.name, "mode": oct(path.stat().st_mode & 0o777)})

    # The next process: the server is back, but the acknowledgement of its first request is lost.
    proxy.restore()
    proxy.drop_responses(1)
    second = StorageWorker(
        outbox_dir=outbox,
        connections=[Connection(base_url=proxy.url, api_key=API_KEY)],
        retry_initial=0.05,
        retry_max=0.2,
    )
    try:
        second.start()
        soon(lambda: second.stats().stored == len(names), timeout=60, what="the outbox to be sent")
        stats = second.stats()
    finally:
        second.close(timeout=5)
    assert (stats.recovered, stats.stored, stats.failed) == (len(names), len(names), 0)
    assert proxy.dropped == 1
    assert not list(outbox.glob("*.json")), "the outbox is empty once everything is acknowledged"

    text = settled_text(hindsight_server, bank_id, "restart", names)
    assert [text.count(name) for name in names] == [1] * len(names)
    figures(
        turns=len(names),
        outbox_files=len(files),
        file_modes=sorted({f["mode"] for f in on_disk}),
        deferred_by_first_worker=first.stats().deferred,
        recovered_by_second_worker=stats.recovered,
        requests=stats.requests,
        retries=stats.retries,
        dropped_acknowledgements=proxy.dropped,
    )
