"""The background storage worker, against an httpx mock transport (no server, fast).

Each test drives a :class:`FakeServer` (a scripted handler that records every retain request) and a worker
built with small backoff delays. Blocking points use events, not sleeps; ``wait_until`` polls a condition
only where the thing waited for has no event of its own (files appearing, a thread reading the outbox).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from hindsight_core import ConfigurationError, HindsightClient, RetryPolicy
from hindsight_core.connection import Connection
from hindsight_core.storage import (
    OUTBOX_DIR_ENV,
    StorageResult,
    StorageWorker,
    Turn,
    default_worker,
)

SECRET = "hs-key-STORAGE-SECRET-must-never-leak-9876"
BASE = "http://hindsight.test"
CONN = Connection(base_url=BASE, api_key=SECRET)
LOGGER = "hindsight_core.storage"

Reply = Callable[[dict[str, Any], httpx.Request], "httpx.Response | Exception | None"]


def ok(body: dict[str, Any], request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "success": True,
            "bank_id": request.url.path.split("/")[4],
            "items_count": len(body["items"]),
            "async": True,
            "operation_id": body.get("operation_id"),
        },
    )


def status(code: int, detail: str = "nope") -> Reply:
    def reply(body: dict[str, Any], request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json={"detail": detail})

    return reply


class FakeServer:
    """A mock-transport Hindsight that records retain requests and answers with ``reply`` (200 by default).

    ``gate`` (when cleared) holds every request until it is set; ``entered`` is set when a request arrives.
    """

    def __init__(self) -> None:
        self.reply: Reply = ok
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.on_request: Callable[[dict[str, Any]], None] | None = None
        self._clients: list[HindsightClient] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        record = {
            "bank": request.url.path.split("/")[4],
            "body": body,
            "auth": request.headers.get("authorization"),
            "operation_id": body.get("operation_id"),
            "items": body["items"],
        }
        with self.lock:
            self.requests.append(record)
        if self.on_request is not None:
            self.on_request(record)
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        outcome = self.reply(body, request)
        if isinstance(outcome, Exception):
            raise outcome
        response = outcome if outcome is not None else ok(body, request)
        record["stored"] = response.status_code == 200
        return response

    def client_for(self, connection: Connection) -> HindsightClient:
        client = HindsightClient(
            connection.base_url,
            connection.api_key or "",
            retry=RetryPolicy(max_retries=0),
            http_client=httpx.Client(transport=httpx.MockTransport(self.handler)),
        )
        self._clients.append(client)
        return client

    def contents(self, document_id: str | None = None, *, stored_only: bool = False) -> list[str]:
        """Every turn text sent (or only acknowledged), in send order (merged items split on newlines)."""
        out: list[str] = []
        for record in self.requests:
            if stored_only and not record.get("stored"):
                continue
            for item in record["items"]:
                if document_id is None or item["document_id"] == document_id:
                    out.extend(item["content"].split("\n"))
        return out


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


def turn(text: str, *, bank: str = "bank-a", doc: str = "conv-1", **kwargs: Any) -> Turn:
    return Turn(CONN, bank, doc, text, **kwargs)


class Recorder:
    """An ``on_done`` callback collecting results, with an event per turn."""

    def __init__(self) -> None:
        self.results: dict[str, StorageResult] = {}
        self.done = threading.Condition()

    def __call__(self, result: StorageResult) -> None:
        with self.done:
            self.results[result.turn_id] = result
            self.done.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> None:
        with self.done:
            assert self.done.wait_for(lambda: len(self.results) >= count, timeout), self.results

    def statuses(self) -> list[str]:
        return [r.status for r in self.results.values()]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.gate.set()
    for client in fake._clients:
        client.close()


@pytest.fixture
def make_worker(server: FakeServer) -> Iterator[Callable[..., StorageWorker]]:
    """Build workers with fast retries; every one is closed and its thread checked gone afterwards."""
    workers: list[StorageWorker] = []

    def make(**options: Any) -> StorageWorker:
        options.setdefault("client_for", server.client_for)
        options.setdefault("retry_initial", 0.005)
        options.setdefault("retry_max", 0.02)
        options.setdefault("exit_timeout", 2.0)
        worker = StorageWorker(**options)
        workers.append(worker)
        return worker

    yield make
    server.gate.set()
    for worker in workers:
        thread = worker._thread
        worker.close(timeout=0.5)
        if thread is not None:
            thread.join(2)
            assert not thread.is_alive(), "storage worker thread left running"


def outbox_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json"))


# ----------------------------------------------------------------------------------------------- Turn


def test_turn_validates_and_round_trips_without_the_key() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    original = Turn(
        CONN,
        "b",
        "d",
        "user: hi\nassistant: hello",
        context="chat",
        tags=("t1",),
        metadata={"k": "v"},
        timestamp=when,
    )
    assert original.timestamp.tzinfo == timezone.utc
    data = original.to_dict()
    assert SECRET not in json.dumps(data)
    assert data["base_url"] == BASE
    assert Turn.from_dict(json.loads(json.dumps(data)), CONN) == original
    with pytest.raises(ConfigurationError, match="stored for"):
        Turn.from_dict(data, Connection(base_url="http://elsewhere.test"))
    with pytest.raises(ConfigurationError, match="content"):
        Turn(CONN, "b", "d", "   ")
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        Turn(CONN, "b", "d", "x", timestamp=datetime(2025, 1, 1))
    with pytest.raises(ConfigurationError, match="metadata"):
        Turn(CONN, "b", "d", "x", metadata={"k": 1})  # type: ignore[dict-item]
    caller_meta = {"k": "v"}
    frozen = Turn(CONN, "b", "d", "x", metadata=caller_meta)
    caller_meta["k"] = "changed"
    assert frozen.metadata == {"k": "v"}


def test_constructor_starts_no_thread_and_touches_no_disk(tmp_path: Path) -> None:
    before = threading.active_count()
    worker = StorageWorker(outbox_dir=tmp_path / "outbox")
    assert not worker.running
    assert not (tmp_path / "outbox").exists()
    assert threading.active_count() == before
    assert worker.flush(0) is True  # nothing submitted: nothing to wait for
    assert worker.close() is True


def test_invalid_options_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="max_queue"):
        StorageWorker(max_queue=0)
    with pytest.raises(ConfigurationError, match="retry_jitter"):
        StorageWorker(retry_jitter=2)
    with pytest.raises(ConfigurationError, match="linger"):
        StorageWorker(linger=-1)


# -------------------------------------------------------------------------------------------- batching


def test_waiting_turns_are_batched_per_bank_merged_per_document_in_order(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker()
    server.gate.clear()
    when = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)
    worker.submit(turn("first"))
    assert server.entered.wait(5)
    # These wait while the first request is in flight, so they go out together.
    for i in range(3):
        worker.submit(turn(f"a-{i}", context="ctx", tags=("x",), metadata={"m": "1"}, timestamp=when))
    worker.submit(turn("b-0", bank="bank-b", doc="conv-b"))
    worker.submit(turn("a-other-doc", doc="conv-2"))
    server.gate.set()
    assert worker.flush(5)

    assert [r["bank"] for r in server.requests] == ["bank-a", "bank-a", "bank-b"]
    batch = server.requests[1]["body"]
    assert batch["async"] is True
    assert [i["document_id"] for i in batch["items"]] == ["conv-1", "conv-2"]
    merged = batch["items"][0]
    assert merged["content"] == "a-0\na-1\na-2"
    assert merged["update_mode"] == "append"
    assert merged["context"] == "ctx"
    assert merged["tags"] == ["x"]
    assert merged["metadata"] == {"m": "1"}
    assert datetime.fromisoformat(merged["timestamp"].replace("Z", "+00:00")) == when
    assert server.contents("conv-1") == ["first", "a-0", "a-1", "a-2"]
    stats = worker.stats()
    assert (stats.submitted, stats.stored, stats.failed, stats.pending, stats.requests) == (6, 6, 0, 0, 3)


def test_turns_arriving_within_the_linger_go_out_in_one_request(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    """Under load (turns of many conversations arriving one after another), the linger gathers them: one
    request per bank, each conversation's turns in order, and the thread woken once, not once per turn."""
    worker = make_worker(linger=0.5)

    def conversation(n: int) -> None:
        for t in range(3):
            worker.submit(turn(f"c{n}-t{t}", doc=f"conv-{n}"))

    threads = [threading.Thread(target=conversation, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    worker.submit(turn("other bank", bank="bank-b", doc="conv-b"))
    assert worker.flush(5)
    assert sorted(r["bank"] for r in server.requests) == ["bank-a", "bank-b"]
    for n in range(10):
        assert server.contents(f"conv-{n}") == [f"c{n}-t{t}" for t in range(3)]
    assert worker.stats().stored == 31


def test_a_flush_or_a_full_batch_ends_the_linger(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker(linger=60.0, max_batch=5)
    for i in range(5):  # a full batch does not wait
        worker.submit(turn(f"full-{i}", doc=f"d{i}"))
    wait_until(lambda: len(server.requests) == 1)
    worker.submit(turn("alone"))
    assert worker.flush(5)  # a waiter does not wait for the linger either
    assert server.contents(stored_only=True)[-1] == "alone"
    assert len(server.requests) == 2


def test_without_a_linger_each_turn_goes_at_once(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker(linger=0)
    worker.submit(turn("now"))
    wait_until(lambda: len(server.requests) == 1)


def test_turns_that_cannot_merge_go_in_later_requests_keeping_order(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker(max_batch=2)
    server.gate.clear()
    worker.submit(turn("t0"))
    assert server.entered.wait(5)
    worker.submit(turn("t1", tags=("x",)))
    worker.submit(turn("t2", tags=("y",)))  # other tags: not merged into t1's item
    worker.submit(turn("t3", doc="d2", tags=("y",)))
    worker.submit(turn("t4", doc="d3"))  # max_batch=2 ends the batch
    server.gate.set()
    assert worker.flush(5)
    assert [len(r["items"]) for r in server.requests] == [1, 1, 2, 1]
    assert server.contents() == ["t0", "t1", "t2", "t3", "t4"]
    ids = [r["operation_id"] for r in server.requests]
    assert len(set(ids)) == len(ids)


def test_many_threads_each_turn_sent_once_to_its_own_bank(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker()

    def user(n: int) -> None:
        for i in range(25):
            worker.submit(turn(f"u{n}-{i}", bank=f"bank-{n}", doc=f"conv-{n}"))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert worker.flush(10)
    for n in range(12):
        sent = [
            part
            for r in server.requests
            if r["bank"] == f"bank-{n}"
            for item in r["items"]
            for part in item["content"].split("\n")
        ]
        assert sent == [f"u{n}-{i}" for i in range(25)]
    assert worker.stats().stored == 300


# ---------------------------------------------------------------------------------------------- retries


def test_transient_failures_retry_with_the_same_operation_id_until_stored(
    server: FakeServer, make_worker: Callable[..., StorageWorker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    script: list[Reply] = [
        status(503),
        lambda b, r: httpx.ConnectError("refused"),
        status(429),
        lambda b, r: httpx.ReadTimeout("slow"),
        status(500),
    ]

    def reply(body: dict[str, Any], request: httpx.Request) -> httpx.Response | Exception | None:
        return script.pop(0)(body, request) if script else None

    server.reply = reply
    worker = make_worker(warn_interval=3600)
    done = Recorder()
    worker.submit(turn("hello"), on_done=done)
    assert worker.flush(5)
    assert done.statuses() == ["stored"]
    assert len(server.requests) == 6
    assert len({r["operation_id"] for r in server.requests}) == 1
    assert len({json.dumps(r["body"], sort_keys=True) for r in server.requests}) == 1
    stats = worker.stats()
    assert (stats.stored, stats.retries, stats.requests) == (1, 5, 6)
    assert worker.pending_errors() == []
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, "the retry warning is rate-limited"
    assert "1 turns are waiting" in warnings[0].getMessage()


def test_retrying_turns_are_visible_as_pending_errors(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    healthy = threading.Event()
    server.reply = lambda b, r: (
        None if healthy.is_set() else httpx.Response(502, text=f"bad gateway {SECRET}")
    )
    worker = make_worker()
    worker.submit(turn("waiting", bank="bank-w", doc="doc-w"))
    wait_until(lambda: bool(worker.pending_errors()))
    assert worker.flush(0.05) is False
    [error] = worker.pending_errors()
    assert (error.bank_id, error.document_id, error.permanent, error.status_code) == (
        "bank-w",
        "doc-w",
        False,
        502,
    )
    assert SECRET not in error.error
    assert worker.stats().pending == 1
    healthy.set()
    assert worker.flush(5)
    assert worker.pending_errors() == []


def test_a_bank_in_backoff_does_not_hold_up_other_banks(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    server.reply = lambda b, r: status(503)(b, r) if "bank-down" in str(r.url) else None
    worker = make_worker()
    done = Recorder()
    worker.submit(turn("stuck", bank="bank-down"), on_done=done)
    wait_until(lambda: worker.stats().retries >= 2)
    worker.submit(turn("free", bank="bank-up"), on_done=done)
    done.wait(1, timeout=10)
    assert [r.status for r in done.results.values()] == ["stored"]
    assert worker.stats().pending == 1


# -------------------------------------------------------------------------------------------- failures


def test_permanent_failure_is_recorded_and_the_next_batch_still_sent(
    server: FakeServer,
    make_worker: Callable[..., StorageWorker],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server.reply = lambda b, r: status(403, "forbidden bank")(b, r) if "bank-bad" in str(r.url) else None
    worker = make_worker(outbox_dir=tmp_path)
    done = Recorder()
    bad = turn("rejected text", bank="bank-bad", doc="doc-bad")
    good = turn("fine", bank="bank-good")
    worker.submit(bad, on_done=done)
    worker.submit(good, on_done=done)
    assert worker.flush(5)
    assert done.results[bad.turn_id].status == "failed"
    assert "403" in (done.results[bad.turn_id].error or "")
    assert done.results[good.turn_id].status == "stored"
    assert len(server.requests) == 2, "a permanent failure is not retried"
    [failure] = worker.pending_errors()
    assert (failure.bank_id, failure.document_id, failure.turn_ids, failure.permanent) == (
        "bank-bad",
        "doc-bad",
        (bad.turn_id,),
        True,
    )
    errors = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert any("bank-bad" in m and "doc-bad" in m for m in errors)
    dead = (tmp_path / "dead-letter.jsonl").read_text().splitlines()
    assert [json.loads(line)["turn"]["turn_id"] for line in dead] == [bad.turn_id]
    assert outbox_files(tmp_path) == []
    worker.clear_errors()
    assert worker.pending_errors() == []
    assert worker.stats().failed == 1


def test_a_rejected_batch_is_split_so_only_the_bad_turn_fails(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    server.reply = lambda b, r: (
        status(422, "bad item")(b, r) if any("POISON" in i["content"] for i in b["items"]) else None
    )
    worker = make_worker()
    done = Recorder()
    server.gate.clear()
    worker.submit(turn("opener", bank="bank-z"))
    assert server.entered.wait(5)
    turns = [turn("good-1", doc="d1"), turn("POISON", doc="d2"), turn("good-2", doc="d3")]
    for t in turns:
        worker.submit(t, on_done=done)
    server.gate.set()
    assert worker.flush(5)
    assert [done.results[t.turn_id].status for t in turns] == ["stored", "failed", "stored"]
    assert [len(r["items"]) for r in server.requests] == [1, 3, 1, 1, 1]
    assert worker.stats().stored == 3


def test_an_unexpected_client_error_fails_the_turn_not_the_worker(
    make_worker: Callable[..., StorageWorker], server: FakeServer
) -> None:
    calls = []

    def client_for(connection: Connection) -> HindsightClient:
        calls.append(connection)
        if len(calls) == 1:
            raise RuntimeError(f"factory broke with {SECRET}")
        return server.client_for(connection)

    worker = make_worker(client_for=client_for)
    done = Recorder()
    worker.submit(turn("one"), on_done=done)
    worker.flush(5)
    worker.submit(turn("two"), on_done=done)
    assert worker.flush(5)
    assert done.statuses() == ["failed", "stored"]
    assert all(SECRET not in (r.error or "") for r in done.results.values())


def test_an_unreadable_success_answer_counts_as_stored(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    server.reply = lambda b, r: httpx.Response(200, text="<html>proxy page</html>")
    worker = make_worker()
    done = Recorder()
    worker.submit(turn("accepted"), on_done=done)
    assert worker.flush(5)
    assert done.statuses() == ["stored"]
    assert len(server.requests) == 1, "a 2xx is an acknowledgement: not sent again"


def test_callbacks_report_each_turn_once_and_a_raising_callback_is_harmless(
    server: FakeServer, make_worker: Callable[..., StorageWorker], caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker()
    seen: list[StorageResult] = []

    def explode(result: StorageResult) -> None:
        seen.append(result)
        raise ValueError("callback bug")

    first = turn("one")
    worker.submit(first, on_done=explode)
    assert worker.flush(5)
    done = Recorder()
    second = turn("two")
    worker.submit(second, on_done=done)
    assert worker.flush(5)
    assert seen == [StorageResult(first.turn_id, "stored")]
    assert done.results == {second.turn_id: StorageResult(second.turn_id, "stored")}
    assert any("on_done" in r.getMessage() for r in caplog.records if r.name == LOGGER)


# ------------------------------------------------------------------------------------------ queue full


def test_queue_full_without_outbox_refuses_visibly_and_never_blocks(
    server: FakeServer, make_worker: Callable[..., StorageWorker], caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(max_queue=3)
    done = Recorder()
    server.gate.clear()
    turns = [turn(f"t{i}", doc=f"doc-{i}") for i in range(5)]
    worker.submit(turns[0], on_done=done)
    assert server.entered.wait(5)  # t0 is in flight and counts against the queue
    for t in turns[1:]:
        worker.submit(t, on_done=done)
    # t3 and t4 are refused at once, from this thread, while the worker is stuck.
    assert [done.results[t.turn_id].status for t in turns[3:]] == ["failed", "failed"]
    assert "queue full" in (done.results[turns[3].turn_id].error or "")
    refused = [f for f in worker.pending_errors() if f.permanent]
    assert [f.document_id for f in refused] == ["doc-3", "doc-4"]
    errors = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "doc-3" in errors[0]
    server.gate.set()
    assert worker.flush(5)
    assert server.contents() == ["t0", "t1", "t2"]
    stats = worker.stats()
    assert (stats.submitted, stats.stored, stats.failed) == (5, 3, 2)


def test_queue_full_with_outbox_spills_to_disk_and_keeps_order(
    server: FakeServer, make_worker: Callable[..., StorageWorker], tmp_path: Path
) -> None:
    healthy = threading.Event()
    server.reply = lambda b, r: None if healthy.is_set() else status(503)(b, r)
    worker = make_worker(max_queue=3, outbox_dir=tmp_path)
    done = Recorder()
    turns = [turn(f"t{i}") for i in range(7)]
    for count, t in enumerate(turns, start=1):
        worker.submit(t, on_done=done)
        wait_until(lambda count=count: len(outbox_files(tmp_path)) == count)  # type: ignore[misc]
    stats = worker.stats()
    assert stats.on_disk == 4, "turns beyond max_queue are kept on disk only"
    assert stats.pending == 7
    assert done.results == {}
    healthy.set()
    assert worker.flush(5)
    assert done.statuses() == ["stored"] * 7
    assert server.contents(stored_only=True) == [f"t{i}" for i in range(7)]
    assert outbox_files(tmp_path) == []
    assert worker.stats().on_disk == 0


# ------------------------------------------------------------------------------------------- flushing


def test_flush_waits_for_turns_submitted_before_it(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker()
    server.gate.clear()
    worker.submit(turn("held"))
    assert server.entered.wait(5)
    assert worker.flush(0.02) is False
    server.gate.set()
    assert worker.flush(5) is True
    assert worker.stats().stored == 1
    assert worker.flush(0) is True


async def test_aflush_ignores_turns_submitted_after_it(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    server.reply = lambda b, r: status(503)(b, r) if "bank-down" in str(r.url) else None
    worker = make_worker()
    server.gate.clear()
    worker.submit(turn("before"))
    assert server.entered.wait(5)
    waiting = asyncio.ensure_future(worker.aflush(timeout=5))
    await asyncio.sleep(0)
    worker.submit(turn("after", bank="bank-down"))  # never stored: the flush must not wait for it
    server.gate.set()
    assert await waiting is True
    assert worker.stats().pending == 1
    assert await worker.aflush(timeout=0.02) is False


async def test_aflush_does_not_block_the_event_loop(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker()
    server.gate.clear()
    worker.submit(turn("slow"))
    assert server.entered.wait(5)
    flushing = asyncio.ensure_future(worker.aflush(timeout=5))
    ticks = 0
    for _ in range(20):  # if aflush blocked the loop, none of this would run until it timed out
        await asyncio.sleep(0)
        ticks += 1
    assert not flushing.done()
    server.gate.set()  # released by this coroutine, while aflush waits
    assert await flushing is True
    assert ticks == 20


def test_flush_from_the_worker_thread_is_refused(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker()
    errors: list[BaseException] = []

    def callback(result: StorageResult) -> None:
        try:
            worker.flush(1)
        except RuntimeError as exc:
            errors.append(exc)

    worker.submit(turn("x"), on_done=callback)
    assert worker.flush(5)
    assert len(errors) == 1


# --------------------------------------------------------------------------------------------- outbox


def test_outbox_file_is_written_before_the_first_send_and_removed_after_ack(
    server: FakeServer, make_worker: Callable[..., StorageWorker], tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    worker = make_worker(outbox_dir=outbox)
    on_disk_at_send: list[list[str]] = []

    def look(record: dict[str, Any]) -> None:
        on_disk_at_send.append(
            [t["turn_id"] for p in outbox_files(outbox) for t in json.loads(p.read_text())["turns"]]
        )

    server.on_request = look
    first = turn("persist me")
    worker.submit(first)
    assert worker.flush(5)
    assert on_disk_at_send == [[first.turn_id]]
    assert outbox_files(outbox) == []
    assert oct(outbox.stat().st_mode & 0o777) == oct(0o700)


def test_outbox_is_reloaded_after_a_restart_with_the_same_operation_id(
    server: FakeServer, make_worker: Callable[..., StorageWorker], tmp_path: Path
) -> None:
    healthy = threading.Event()
    server.reply = lambda b, r: None if healthy.is_set() else status(503)(b, r)
    first = make_worker(outbox_dir=tmp_path)
    done = Recorder()
    turns = [turn(f"t{i}") for i in range(3)]
    server.gate.clear()
    first.submit(turns[0], on_done=done)
    assert server.entered.wait(5)
    first.submit(turns[1], on_done=done)
    first.submit(turns[2], on_done=done)
    server.gate.set()
    wait_until(lambda: len(server.requests) >= 3)  # the first batch is being retried
    assert first.close(timeout=0.05) is False  # the server is still down: the turns are left on disk
    assert done.statuses() == ["deferred"] * 3
    files = outbox_files(tmp_path)
    assert len(files) == 2, "one file per batch: [t0] and [t1, t2]"
    assert all(SECRET not in path.read_text() for path in files)
    file_ops = [json.loads(path.read_text())["operation_id"] for path in files]
    assert {r["operation_id"] for r in server.requests} == {file_ops[0]}
    sent_before = len(server.requests)

    healthy.set()
    second = make_worker(outbox_dir=tmp_path, connections=[CONN])
    second.start()
    wait_until(lambda: second.stats().recovered == 3)
    assert second.flush(5)
    resent = server.requests[sent_before:]
    assert [r["operation_id"] for r in resent] == file_ops
    assert server.contents(stored_only=True) == ["t0", "t1", "t2"]
    assert all(r["auth"] == f"Bearer {SECRET}" for r in resent)
    assert outbox_files(tmp_path) == []
    assert second.stats().stored == 3

    third = make_worker(outbox_dir=tmp_path, connections=[CONN])
    third.start()
    assert third.flush(1)
    assert len(server.requests) == sent_before + len(resent), "nothing is sent twice"


def test_outbox_turns_wait_for_the_connection_with_their_key(
    server: FakeServer,
    make_worker: Callable[..., StorageWorker],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.reply = status(503)
    first = make_worker(outbox_dir=tmp_path)
    first.submit(turn("keyed"))
    wait_until(lambda: len(server.requests) >= 1)
    first.close(timeout=0.05)
    server.reply = ok
    sent_before = len(server.requests)

    other_key = Connection(base_url=BASE, api_key="another-tenant-key")
    second = make_worker(outbox_dir=tmp_path, connections=[other_key])
    second.start()
    wait_until(lambda: any("does not know" in r.getMessage() for r in caplog.records if r.name == LOGGER))
    assert second.flush(1)
    assert second.stats().recovered == 0
    assert len(server.requests) == sent_before, "never sent with another key"
    assert len(outbox_files(tmp_path)) == 1
    second.register_connection(CONN)
    wait_until(lambda: second.stats().stored == 1)
    assert server.requests[-1]["auth"] == f"Bearer {SECRET}"
    assert outbox_files(tmp_path) == []


def test_a_corrupt_outbox_file_is_moved_aside(
    make_worker: Callable[..., StorageWorker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "00000000000000000001-0000001-00000001.json").write_text("{not json")
    worker = make_worker(outbox_dir=tmp_path)
    worker.start()
    wait_until((tmp_path / "00000000000000000001-0000001-00000001.json.corrupt").exists)
    assert any("cannot be read" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_the_api_key_is_never_written_to_disk_or_errors(
    server: FakeServer,
    make_worker: Callable[..., StorageWorker],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def echo(body: dict[str, Any], request: httpx.Request) -> httpx.Response:
        code = 503 if len(server.requests) == 1 else 400
        return httpx.Response(code, json={"detail": f"got {request.headers['authorization']}"})

    server.reply = echo
    worker = make_worker(outbox_dir=tmp_path, warn_interval=0)
    done = Recorder()
    worker.submit(turn("secret-free"), on_done=done)
    assert worker.flush(5)
    assert done.statuses() == ["failed"]
    texts = [p.read_text() for p in tmp_path.iterdir() if p.is_file()]
    assert texts, "the dead-letter file exists"
    assert all(SECRET not in text for text in texts)
    assert all(SECRET not in f.error for f in worker.pending_errors())
    assert all(SECRET not in (r.error or "") for r in done.results.values())
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert "***" in worker.pending_errors()[0].error


# ----------------------------------------------------------------------------------------- exit, close


def test_exit_handler_flushes_what_it_can(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker(exit_timeout=5)
    done = Recorder()
    server.gate.clear()
    worker.submit(turn("last words"), on_done=done)
    assert server.entered.wait(5)
    exiting = threading.Thread(target=worker._at_exit)
    exiting.start()
    server.gate.set()
    exiting.join(10)
    assert done.statuses() == ["stored"]
    assert not worker.running


def test_exit_handler_without_outbox_reports_unsent_turns(
    server: FakeServer, make_worker: Callable[..., StorageWorker], caplog: pytest.LogCaptureFixture
) -> None:
    server.reply = status(503)
    worker = make_worker(exit_timeout=0.05)
    done = Recorder()
    worker.submit(turn("lost-1", bank="bank-x", doc="doc-x"), on_done=done)
    worker.submit(turn("lost-2", bank="bank-x", doc="doc-y"), on_done=done)
    wait_until(lambda: worker.stats().retries >= 1)
    worker._at_exit()
    assert done.statuses() == ["failed", "failed"]
    errors = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "2 turns" in errors[0]
    assert "bank-x" in errors[0]
    assert "doc-x" in errors[0]
    assert "doc-y" in errors[0]
    assert {f.document_id for f in worker.pending_errors() if f.permanent} == {"doc-x", "doc-y"}
    assert worker.stats().pending == 0
    wait_until(lambda: not worker.running)


def test_exit_handler_with_outbox_keeps_unsent_turns_for_the_next_run(
    server: FakeServer, make_worker: Callable[..., StorageWorker], tmp_path: Path
) -> None:
    server.reply = status(503)
    worker = make_worker(exit_timeout=0.05, outbox_dir=tmp_path)
    done = Recorder()
    kept = turn("keep me")
    worker.submit(kept, on_done=done)
    wait_until(lambda: worker.stats().retries >= 1)
    worker._at_exit()
    assert done.statuses() == ["deferred"]
    assert worker.stats().deferred == 1
    [path] = outbox_files(tmp_path)
    assert json.loads(path.read_text())["turns"][0]["turn_id"] == kept.turn_id

    server.reply = ok
    nxt = make_worker(outbox_dir=tmp_path, connections=[CONN])
    nxt.start()
    wait_until(lambda: nxt.stats().stored == 1)
    assert outbox_files(tmp_path) == []


def test_close_stops_the_thread_and_submit_starts_it_again(
    server: FakeServer, make_worker: Callable[..., StorageWorker]
) -> None:
    worker = make_worker()
    worker.submit(turn("one"))
    thread = worker._thread
    assert worker.close(timeout=5) is True
    assert thread is not None
    thread.join(2)
    assert not thread.is_alive()
    assert not worker.running
    worker.submit(turn("two"))
    assert worker.flush(5)
    assert server.contents() == ["one", "two"]


def test_default_worker_is_one_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OUTBOX_DIR_ENV, raising=False)
    found: list[StorageWorker] = []
    threads = [threading.Thread(target=lambda: found.append(default_worker())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(w) for w in found}) == 1
    assert found[0] is default_worker()


def test_from_env_reads_the_outbox_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(OUTBOX_DIR_ENV, str(tmp_path))
    assert StorageWorker.from_env().outbox_dir == tmp_path
    assert StorageWorker.from_env(outbox_dir=None).outbox_dir is None
