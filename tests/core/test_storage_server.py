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

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hindsight_core import HindsightClient, RetryPolicy, Timeouts
from hindsight_core.connection import Connection
from hindsight_core.storage import StorageResult, StorageWorker, Turn

pytestmark = pytest.mark.server

SETTLE_TIMEOUT = 120.0


# ------------------------------------------------------------------------------------------------ proxy


class CuttableProxy:
    """A loopback TCP forwarder to ``upstream`` that can be cut and restored (threads, no asyncio)."""

    def __init__(self, upstream: str) -> None:
        url = httpx.URL(upstream)
        self._upstream = (url.host, url.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._cut = False
        self._drop = 0
        self._stopping = False
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.refused = 0
        self.dropped = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name="test-proxy-accept", daemon=True)
        self._acceptor.start()

    # -- control

    def cut(self) -> None:
        """Act like a server that went away: close every open connection and refuse new ones."""
        with self._lock:
            self._cut = True
            doomed = list(self._sockets)
        for sock in doomed:
            self._kill(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def drop_responses(self, count: int) -> None:
        """Forward the next ``count`` requests but discard the server's responses and hang up."""
        with self._lock:
            self._drop = count

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        self.cut()
        self._acceptor.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    # -- machinery

    @staticmethod
    def _kill(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept_loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                refuse = self._cut or self._stopping
                if refuse:
                    self.refused += 1
            if refuse:
                self._kill(client)
                continue
            thread = threading.Thread(target=self._serve, args=(client,), name="test-proxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            self._kill(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.update((client, upstream))
        pump = threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True)
        pump.start()
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                with self._lock:
                    drop = self._drop > 0
                    if drop:
                        self._drop -= 1
                        self.dropped += 1
                if drop:
                    break  # the server answered; the client never hears it
                client.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)
            self._kill(client)
            self._kill(upstream)
            pump.join(5)

    @staticmethod
    def _pump_up(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)


# ----------------------------------------------------------------------------------------------- helpers


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


def chunk_bank(url: str, bank: str) -> None:
    """A bank that stores retained text verbatim, so the document text can be checked exactly."""
    with HindsightClient(url) as client:
        client.create_bank(bank, extraction_mode="chunks")


def document_text(url: str, bank: str, document_id: str) -> str:
    response = httpx.get(f"{url}/v1/default/banks/{bank}/documents/{document_id}", timeout=10)
    if response.status_code == 404:
        return ""
    response.raise_for_status()
    return str(response.json().get("original_text") or "")


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
        text = document_text(url, bank, document_id)
        if all(m in text for m in markers) and retains_running(url, bank) == 0:
            return document_text(url, bank, document_id)
        if time.monotonic() > deadline:
            raise AssertionError(f"document {document_id!r} of {bank!r} never held all turns: {text!r:.500}")
        time.sleep(0.2)


def markers(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"zq{tag}m{i:02d}x" for i in range(n)]


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
    chunk_bank(hindsight_server, bank_id)
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
    chunk_bank(hindsight_server, bank_id)
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
    chunk_bank(hindsight_server, bank_id)
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
        chunk_bank(hindsight_server, bank)
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
