"""The storage worker against the real Hindsight server: each turn stored exactly once, through outages.

Outages are simulated with :class:`CuttableProxy`, a loopback TCP forwarder placed between the worker and
the server: ``cut()`` drops open connections and refuses new ones (as a stopped server does),
``restore()`` brings it back, and ``drop_responses(n)`` forwards the next ``n`` requests but throws away
the server's answers (a lost acknowledgement). The shared server itself is never disturbed.

What was stored is read back from the server: the bank's document text (``GET .../documents/{id}``,
banks in ``chunks`` mode keep the text verbatim) must contain each turn's marker exactly once, checked
after the bank's retain operations have all finished, and recall finds a turn by its marker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hindsight_core import HindsightClient, RetryPolicy, Timeouts
from hindsight_core.connection import Connection
from hindsight_core.storage import StorageResult, StorageWorker, Turn
from tests.faults import CuttableProxy
from tests.helpers import markers, seed_bank, settled_text

pytestmark = pytest.mark.server


@pytest.fixture
def proxy(hindsight_server: str) -> Iterator[CuttableProxy]:
    forwarder = CuttableProxy(hindsight_server)
    yield forwarder
    forwarder.close()


@pytest.fixture
def make_worker() -> Iterator[Callable[..., StorageWorker]]:
    workers: list[StorageWorker] = []

    def make(**options: Any) -> StorageWorker:
        options.setdefault("retry_initial", 0.05)
        options.setdefault("retry_max", 0.5)
        worker = StorageWorker(**options)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        thread = worker._thread
        worker.close(timeout=5)
        if thread is not None:
            thread.join(5)
            assert not thread.is_alive()


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[StorageResult] = []

    def __call__(self, result: StorageResult) -> None:
        with self.lock:
            self.items.append(result)


def fast_connection(url: str) -> Connection:
    """Short client budgets so an outage is noticed quickly (the worker does the long-term retrying)."""
    return Connection(
        base_url=url,
        timeouts=Timeouts(connect=1.0, retain=5.0),
        retry=RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.05),
    )


# ------------------------------------------------------------------------------------------------- tests


def test_ten_turns_to_one_document_are_each_stored_once(
    hindsight_server: str, bank_id: str, make_worker: Callable[..., StorageWorker]
) -> None:
    seed_bank(hindsight_server, bank_id)
    connection = Connection(base_url=hindsight_server)
    worker = make_worker()
    results = Results()
    names = markers(10)
    for i, name in enumerate(names):
        worker.submit(
            Turn(connection, bank_id, "conversation", f"user: note {name} please\nassistant: noted {i}"),
            on_done=results,
        )
    assert worker.flush(60)
    assert [r.status for r in results.items] == ["stored"] * 10

    text = settled_text(hindsight_server, bank_id, "conversation", names)
    assert [text.count(name) for name in names] == [1] * 10
    positions = [text.index(name) for name in names]
    assert positions == sorted(positions), "turns appear in the order they were submitted"
    with HindsightClient(hindsight_server) as client:
        found = client.recall(bank_id, f"note {names[3]}", budget="low").results
    assert any(names[3] in memory.text for memory in found)
    assert worker.pending_errors() == []


def test_an_outage_mid_conversation_loses_and_duplicates_nothing(
    hindsight_server: str,
    bank_id: str,
    proxy: CuttableProxy,
    make_worker: Callable[..., StorageWorker],
    tmp_path: Path,
) -> None:
    seed_bank(hindsight_server, bank_id)
    connection = fast_connection(proxy.url)
    worker = make_worker(outbox_dir=tmp_path)
    results = Results()
    names = markers(8)

    def say(i: int) -> None:
        worker.submit(Turn(connection, bank_id, "talk", f"turn {i}: {names[i]}"), on_done=results)

    for i in range(3):
        say(i)
    assert worker.flush(30)

    proxy.cut()
    for i in range(3, 8):
        say(i)  # returns at once although the server is unreachable
    assert worker.flush(0.5) is False
    waiting = worker.pending_errors()
    assert waiting
    assert all(not f.permanent and f.bank_id == bank_id for f in waiting)
    assert worker.stats().pending == 5
    assert proxy.refused > 0
    assert list(tmp_path.glob("*.json")), "unacknowledged turns are in the outbox"

    proxy.restore()
    assert worker.flush(60)
    assert sorted(r.status for r in results.items) == ["stored"] * 8
    assert worker.pending_errors() == []
    assert not list(tmp_path.glob("*.json"))
    text = settled_text(hindsight_server, bank_id, "talk", names)
    assert [text.count(name) for name in names] == [1] * 8


def test_a_lost_acknowledgement_is_resent_and_stored_once(
    hindsight_server: str, bank_id: str, proxy: CuttableProxy, make_worker: Callable[..., StorageWorker]
) -> None:
    seed_bank(hindsight_server, bank_id)
    connection = Connection(
        base_url=proxy.url, timeouts=Timeouts(connect=1.0, retain=5.0), retry=RetryPolicy(max_retries=0)
    )
    worker = make_worker()
    names = markers(3)
    proxy.drop_responses(2)  # the server gets the request twice, the worker hears nothing twice
    for i, name in enumerate(names):
        worker.submit(Turn(connection, bank_id, "acked", f"line {i} {name}"))
    assert worker.flush(60)
    assert proxy.dropped == 2
    assert worker.stats().retries >= 2
    text = settled_text(hindsight_server, bank_id, "acked", names)
    assert [text.count(name) for name in names] == [1] * 3


def test_twenty_threads_with_their_own_banks_store_only_their_own_turns(
    hindsight_server: str, make_worker: Callable[..., StorageWorker]
) -> None:
    banks = [f"test-storage-{uuid.uuid4().hex[:12]}" for _ in range(20)]
    for bank in banks:
        seed_bank(hindsight_server, bank)
    try:
        _twenty_threads(hindsight_server, banks, make_worker)
    finally:
        with HindsightClient(hindsight_server) as client:
            for bank in banks:
                client.delete_bank(bank)


def _twenty_threads(
    hindsight_server: str, banks: list[str], make_worker: Callable[..., StorageWorker]
) -> None:
    connection = Connection(base_url=hindsight_server)
    worker = make_worker()
    own = {bank: markers(3) for bank in banks}
    start = threading.Barrier(len(banks))

    def user(bank: str) -> None:
        start.wait()
        for i, name in enumerate(own[bank]):
            worker.submit(Turn(connection, bank, "session", f"{bank} says {i}: {name}"))

    threads = [threading.Thread(target=user, args=(bank,)) for bank in banks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert worker.flush(60)
    assert worker.stats().stored == 60

    everyone = [name for names in own.values() for name in names]
    for bank in banks:
        text = settled_text(hindsight_server, bank, "session", own[bank])
        assert [text.count(name) for name in own[bank]] == [1, 1, 1]
        assert [name for name in everyone if name in text] == own[bank]
