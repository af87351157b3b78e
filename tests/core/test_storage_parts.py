"""The storage package's parts on their own: no worker thread, no server, no clock (``now`` is passed in).

Lanes and batching (which turns go out together, which request is next), the outbox file format, the
connection book (which key sends which file), the retry backoff and the ledger behind ``flush()``. The worker
that ties them together is tested in ``test_storage.py`` (mock transport) and ``test_storage_server.py``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hindsight_core.connection import Connection
from hindsight_core.errors import ConfigurationError
from hindsight_core.storage import StorageResult, Turn
from hindsight_core.storage.batching import (
    Batch,
    Entry,
    Lanes,
    Ref,
    describe,
    group_entries,
    operation_id,
    retain_items,
)
from hindsight_core.storage.claims import Claim, adopt, owner_of, stem_of
from hindsight_core.storage.connections import ConnectionBook, fallback_connection, key_id, scrub
from hindsight_core.storage.ledger import Ledger, notify
from hindsight_core.storage.outbox import (
    FILE_FORMAT,
    Outbox,
    dead_letter_lines,
    decode_batch,
    encode_batch,
    read_batch_file,
)
from hindsight_core.storage.sender import Backoff

SECRET = "hs-key-PARTS-SECRET-never-on-disk-1234"
CONN = Connection(base_url="http://hindsight.test/", api_key=SECRET)
OTHER = Connection(base_url="http://other.test", api_key="hs-key-other")
WHEN = datetime(2025, 5, 6, 7, 8, 9, tzinfo=timezone.utc)

_seq = iter(range(1, 1_000_000))


def entry(
    text: str, *, bank: str = "bank-a", doc: str = "doc-1", conn: Connection = CONN, **kw: object
) -> Entry:
    turn = Turn(conn, bank, doc, text, timestamp=WHEN, **kw)  # type: ignore[arg-type]
    return Entry(turn, Ref(turn.turn_id, turn.document_id, next(_seq)))


def texts(batch: Batch) -> list[str]:
    assert batch.turns is not None
    return [t.content for t in batch.turns]


def no_connection(base_url: str, key: str | None) -> Connection | None:
    return None


# ------------------------------------------------------------------------------------ batching (pure)


def test_turns_of_one_bank_form_one_batch_in_order_and_banks_are_separate() -> None:
    entries = [entry("a1"), entry("b1", bank="bank-b"), entry("a2", doc="doc-2"), entry("a3")]
    groups = group_entries(entries, max_batch=100)
    assert [[e.turn.content for e in g] for g in groups] == [["a1", "a2", "a3"], ["b1"]]


def test_a_batch_never_exceeds_max_batch() -> None:
    groups = group_entries([entry(f"t{i}") for i in range(7)], max_batch=3)
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [e.turn.content for g in groups for e in g] == [f"t{i}" for i in range(7)]


def test_connections_with_different_keys_never_share_a_batch() -> None:
    same_url_other_key = Connection(base_url=CONN.base_url, api_key="hs-key-tenant-2")
    groups = group_entries([entry("x"), entry("y", conn=same_url_other_key), entry("z")], max_batch=10)
    assert [[e.turn.content for e in g] for g in groups] == [["x", "z"], ["y"]]


def test_a_turn_whose_context_tags_or_metadata_differ_in_its_document_starts_a_new_batch() -> None:
    entries = [
        entry("1", context="chat"),
        entry("2", context="chat"),
        entry("3", context="email"),  # same document, other context: cannot be merged into its item
        entry("4", doc="doc-2", tags=("t",)),  # another document may differ: it is its own item
        entry("5", context="email"),
    ]
    groups = group_entries(entries, max_batch=100)
    # later turns join the batch opened last (the earlier one is closed: turns are never sent out of order)
    assert [[e.turn.content for e in g] for g in groups] == [["1", "2"], ["3", "4", "5"]]
    assert [
        [e.turn.content for e in g]
        for g in group_entries([entry("m", metadata={"k": "1"}), entry("n", metadata={"k": "2"})], 9)
    ] == [["m"], ["n"]]


def test_retain_items_merge_a_documents_turns_with_newlines_stamped_with_the_first() -> None:
    early = datetime(2025, 1, 1, tzinfo=timezone.utc)
    turns = [
        Turn(CONN, "b", "doc-1", "user: hi\nassistant: hello", timestamp=early, tags=("x",), context="c"),
        Turn(CONN, "b", "doc-2", "other conversation"),
        Turn(CONN, "b", "doc-1", "user: more\nassistant: sure", tags=("x",), context="c"),
    ]
    items = retain_items(turns)
    assert [i.document_id for i in items] == ["doc-1", "doc-2"]
    first = items[0]
    assert first.content == "user: hi\nassistant: hello\nuser: more\nassistant: sure"
    assert first.timestamp == early
    assert first.update_mode == "append"
    assert first.tags == ["x"]
    assert first.context == "c"
    assert items[1].content == "other conversation"


def test_operation_ids_depend_on_exactly_the_turns_and_their_order() -> None:
    one = operation_id("http://h", "b", ["t1", "t2"])
    assert one == operation_id("http://h", "b", ["t1", "t2"])  # a resend is recognised
    assert one != operation_id("http://h", "b", ["t2", "t1"])
    assert one != operation_id("http://h", "b", ["t1"])
    assert one != operation_id("http://h", "b2", ["t1", "t2"])
    assert one != operation_id("http://h2", "b", ["t1", "t2"])


def test_describe_names_banks_and_documents_once_each() -> None:
    lanes = Lanes()
    batches = lanes.form(
        [entry("1"), entry("2"), entry("3", doc="doc-2"), entry("4", bank="bank-b")],
        max_batch=9,
        now=0.0,
        spill=False,
    )
    assert (
        describe(batches) == "bank 'bank-a' documents ['doc-1', 'doc-2']; bank 'bank-b' documents ['doc-1']"
    )


# --------------------------------------------------------------------------------------- lanes (pure)


def test_formed_batches_record_url_bank_key_fingerprint_and_count_as_held() -> None:
    lanes = Lanes()
    (batch,) = lanes.form([entry("1"), entry("2")], max_batch=10, now=5.0, spill=True)
    assert batch.base_url == "http://hindsight.test"  # normalised
    assert batch.lane == ("http://hindsight.test", "bank-a")
    assert batch.key_id == key_id(CONN)
    assert batch.operation_id == operation_id(batch.base_url, "bank-a", [r.turn_id for r in batch.refs])
    assert batch.ready_at == 5.0
    assert batch.spill
    assert texts(batch) == ["1", "2"]
    assert (lanes.held, lanes.on_disk) == (2, 0)
    assert list(lanes) == [batch]


def test_only_the_head_of_a_lane_is_ready_and_finishing_it_schedules_the_next() -> None:
    lanes = Lanes()
    first = lanes.form([entry("1")], max_batch=1, now=0.0, spill=False)[0]
    second = lanes.form([entry("2")], max_batch=1, now=0.0, spill=False)[0]
    assert lanes.pick(now=1.0) == (first, None)
    assert lanes.pick(now=1.0) == (None, None)  # the second waits for the first to be resolved
    lanes.finish(first, now=2.0)
    assert first.resolved
    assert lanes.pick(now=2.0) == (second, None)
    lanes.finish(second, now=3.0)
    assert not lanes
    assert lanes.held == 0


def test_a_lane_waiting_for_a_retry_does_not_hold_up_other_banks() -> None:
    lanes = Lanes()
    a = lanes.form([entry("a")], max_batch=9, now=0.0, spill=False)[0]
    b = lanes.form([entry("b", bank="bank-b")], max_batch=9, now=0.0, spill=False)[0]
    assert lanes.pick(now=0.0) == (a, None)
    a.ready_at = 10.0  # a transient failure: retry in 10 s
    lanes.push(a)
    assert lanes.pick(now=1.0) == (b, None)
    assert lanes.pick(now=1.0) == (None, 9.0)  # nothing ready; the retry is due in 9 s
    assert lanes.pick(now=10.0) == (a, None)


def test_ready_heads_go_oldest_first_and_rescheduling_leaves_no_stale_pick() -> None:
    lanes = Lanes()
    a = lanes.form([entry("a")], max_batch=9, now=3.0, spill=False)[0]
    b = lanes.form([entry("b", bank="bank-b")], max_batch=9, now=1.0, spill=False)[0]
    a.ready_at = 0.5
    lanes.push(a)  # the heap still holds a's entry at 3.0: it must be skipped, not picked twice
    assert lanes.pick(now=5.0) == (a, None)
    assert lanes.pick(now=5.0) == (b, None)
    assert lanes.pick(now=5.0) == (None, None)


def test_the_next_head_becomes_ready_now_when_its_predecessor_finishes() -> None:
    lanes = Lanes()
    first, second = lanes.form([entry("1"), entry("2")], max_batch=1, now=0.0, spill=False)
    second.ready_at = 100.0
    assert lanes.pick(now=0.0)[0] is first
    lanes.finish(first, now=4.0)
    assert second.ready_at == 4.0
    assert lanes.pick(now=4.0)[0] is second


def test_a_split_head_is_replaced_by_its_children_in_order() -> None:
    lanes = Lanes()
    parent = lanes.form([entry("1"), entry("2")], max_batch=9, now=0.0, spill=False)[0]
    after = lanes.form([entry("3")], max_batch=9, now=0.0, spill=False)[0]
    assert lanes.pick(now=0.0)[0] is parent
    assert parent.turns is not None
    children = [
        Batch(
            "op-1",
            parent.base_url,
            parent.bank_id,
            parent.key_id,
            CONN,
            [parent.refs[0]],
            [parent.turns[0]],
            "c1",
            lanes.next_order(),
            0.0,
        ),
        Batch(
            "op-2",
            parent.base_url,
            parent.bank_id,
            parent.key_id,
            CONN,
            [parent.refs[1]],
            [parent.turns[1]],
            "c2",
            lanes.next_order(),
            0.0,
        ),
    ]
    assert lanes.replace_head(parent, children)
    assert list(lanes) == [*children, after]
    assert lanes.pick(now=0.0)[0] is children[0]
    assert not lanes.replace_head(parent, children)  # no longer the head


def test_unloading_and_reloading_moves_turns_between_held_and_on_disk() -> None:
    lanes = Lanes()
    batch = lanes.form([entry("1"), entry("2")], max_batch=9, now=0.0, spill=True)[0]
    turns = batch.turns
    assert turns is not None
    lanes.unload(batch)
    assert batch.turns is None
    assert (lanes.held, lanes.on_disk) == (0, 2)
    lanes.reload(batch, turns)
    assert (lanes.held, lanes.on_disk) == (2, 0)
    lanes.unload(batch)
    lanes.finish(batch, now=0.0)
    assert (lanes.held, lanes.on_disk) == (0, 0)


def test_batches_from_disk_count_as_on_disk_and_hurry_makes_every_head_ready() -> None:
    lanes = Lanes()
    data = encode_batch(lanes.form([entry("1")], max_batch=9, now=0.0, spill=False)[0])
    lanes.clear()
    recovered = decode_batch(data, "n", no_connection, CONN)
    recovered.turns = None
    recovered.ready_at = 50.0
    lanes.add_from_disk(recovered)
    assert (lanes.held, lanes.on_disk) == (0, 1)
    assert lanes.names() == {"n"}
    assert lanes.pick(now=0.0) == (None, 50.0)
    lanes.hurry(now=1.0)
    assert lanes.pick(now=1.0) == (recovered, None)


# ------------------------------------------------------------------------------- outbox file format


def test_the_outbox_format_round_trips_a_batch_without_the_key() -> None:
    lanes = Lanes()
    batch = lanes.form(
        [
            entry("user: 你好 👋\nassistant: hi", context="chat", tags=("a", "b"), metadata={"k": "v"}),
            entry("second"),
        ],
        max_batch=9,
        now=0.0,
        spill=False,
    )[0]
    data = encode_batch(batch)
    assert SECRET.encode() not in data
    parsed = json.loads(data)
    assert parsed["format"] == FILE_FORMAT == "hindsight-outbox/1"
    assert parsed["key_id"] == key_id(CONN)
    assert "你好 👋".encode() in data  # stored as UTF-8, not escaped

    seen: list[tuple[str, str | None]] = []

    def resolve(base_url: str, key: str | None) -> Connection | None:
        seen.append((base_url, key))
        return CONN

    back = decode_batch(data, batch.name, resolve)
    assert seen == [("http://hindsight.test", key_id(CONN))]
    assert (back.operation_id, back.base_url, back.bank_id, back.key_id, back.name) == (
        batch.operation_id,
        batch.base_url,
        batch.bank_id,
        batch.key_id,
        batch.name,
    )
    assert back.persisted
    assert back.turns == batch.turns
    assert [(r.turn_id, r.document_id) for r in back.refs] == [(r.turn_id, r.document_id) for r in batch.refs]


def test_a_file_whose_key_is_unknown_decodes_without_turns_in_memory() -> None:
    batch = Lanes().form([entry("x")], max_batch=9, now=0.0, spill=False)[0]
    back = decode_batch(encode_batch(batch), "f", no_connection)
    assert back.connection is None
    assert back.turns is None
    assert [r.turn_id for r in back.refs] == [r.turn_id for r in batch.refs]


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        json.dumps({"format": "something-else/1"}).encode(),
        json.dumps(
            {"format": FILE_FORMAT, "base_url": "http://h", "bank_id": "b", "operation_id": "o", "turns": []}
        ).encode(),
        json.dumps({"format": FILE_FORMAT, "base_url": "http://h", "key_id": 7, "turns": [{}]}).encode(),
        json.dumps(
            {
                "format": FILE_FORMAT,
                "base_url": "http://h",
                "bank_id": "b",
                "operation_id": "o",
                "turns": [{"turn_id": "t"}],
            }
        ).encode(),
        b"\xff\xfe",
    ],
)
def test_data_that_is_not_an_outbox_file_is_refused(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_batch(data, "f", no_connection, Connection(base_url="http://h"))


def test_a_turn_recorded_for_another_server_is_refused() -> None:
    data = encode_batch(Lanes().form([entry("x")], max_batch=9, now=0.0, spill=False)[0])
    with pytest.raises(ConfigurationError, match="stored for"):
        decode_batch(data, "f", no_connection, OTHER)


def test_dead_letter_lines_hold_each_turn_with_the_error() -> None:
    batch = Lanes().form([entry("1"), entry("2", doc="doc-2")], max_batch=9, now=0.0, spill=False)[0]
    lines = dead_letter_lines(batch, "HTTP 422: bad", WHEN).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["turn"]["content"] for r in records] == ["1", "2"]
    assert {r["error"] for r in records} == {"HTTP 422: bad"}
    assert {r["operation_id"] for r in records} == {batch.operation_id}
    assert {r["failed_at"] for r in records} == {WHEN.isoformat()}
    assert SECRET not in "".join(lines)


def test_outbox_files_are_private_whole_and_read_back(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    assert outbox.ensure()
    assert stat.S_IMODE(os.stat(outbox.directory).st_mode) == 0o700
    batch = Lanes().form([entry("kept")], max_batch=9, now=0.0, spill=False)[0]
    assert outbox.write(batch)
    assert batch.persisted
    path = outbox.path(batch)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.name == f"{batch.name}.{outbox.claim.owner}.json"  # this process's file
    visible = [p.name for p in outbox.directory.iterdir() if not p.name.startswith(".owner-")]
    assert visible == [path.name]  # no temporary file left
    assert outbox.leftovers() == [path]
    back = read_batch_file(path, lambda url, key: CONN)
    assert back is not None
    assert back.turns == batch.turns
    outbox.remove(batch)
    assert outbox.leftovers() == []


def test_an_unreadable_outbox_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "00000000000000000001-0000001-00000001.json"
    broken.write_text("{ half a file")
    assert read_batch_file(broken, no_connection) is None
    assert not broken.exists()
    assert broken.with_name(broken.name + ".corrupt").exists()
    assert "cannot be read" in caplog.text


def test_leftovers_are_oldest_first_and_skip_temporary_and_other_files(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    for name in [
        "00000000000000000002-1-1.json",
        "00000000000000000001-1-1.json",
        "dead-letter.jsonl",
        ".x.json.abc.tmp",
        "y.json.corrupt",
    ]:
        (tmp_path / name).write_text("{}")
    owner = outbox.claim.owner  # files of no owner (an earlier run) are taken over: renamed to this process's
    assert [p.name for p in outbox.leftovers() or []] == [
        f"00000000000000000001-1-1.{owner}.json",
        f"00000000000000000002-1-1.{owner}.json",
    ]
    assert (tmp_path / ".x.json.abc.tmp").exists()  # recent: possibly being written by now


# ------------------------------------------------------------------------------------- connections


def test_the_key_fingerprint_is_stable_one_way_and_absent_without_a_key() -> None:
    assert key_id(CONN) == key_id(Connection(base_url="http://elsewhere", api_key=SECRET))
    assert key_id(CONN) != key_id(OTHER)
    assert key_id(Connection(base_url="http://h")) is None
    fingerprint = key_id(CONN)
    assert fingerprint is not None
    assert len(fingerprint) == 16
    assert fingerprint not in SECRET
    assert scrub(f"failed with {SECRET}", CONN) == "failed with ***"


def test_an_orphan_file_is_adopted_when_its_connection_is_registered() -> None:
    book = ConnectionBook()
    path = Path("/outbox/f.json")
    book.orphan("http://hindsight.test", key_id(CONN), path)
    book.register(OTHER)
    assert book.take_adopted() == []
    assert not book.knows(CONN)
    book.register(CONN)
    assert book.knows(CONN)
    assert book.get("http://hindsight.test", key_id(CONN)) == CONN
    assert book.take_adopted() == [path]
    assert book.take_adopted() == []


def test_fallback_uses_the_environment_only_for_its_own_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HINDSIGHT_API_URL", "http://hindsight.test")
    monkeypatch.setenv("HINDSIGHT_API_KEY", SECRET)
    found = fallback_connection("http://hindsight.test", key_id(CONN))
    assert found is not None
    assert found.api_key == SECRET
    assert fallback_connection("http://hindsight.test", key_id(OTHER)) is None  # another tenant's file
    keyless = fallback_connection("http://no-key.test", None)
    assert keyless is not None
    assert (keyless.base_url, keyless.api_key) == ("http://no-key.test", None)


# --------------------------------------------------------------------------------- backoff and ledger


def test_backoff_doubles_up_to_the_maximum_less_at_most_the_jitter() -> None:
    exact = Backoff(0.5, 30.0, 0.0)
    assert [exact.delay(n) for n in (1, 2, 3, 7, 8, 20)] == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
    jittered = Backoff(1.0, 30.0, 0.25)
    assert all(0.75 * 4 <= jittered.delay(3) <= 4 for _ in range(200))


def test_a_flush_waits_for_earlier_turns_only_and_after_their_callbacks() -> None:
    ledger = Ledger(max_failures=10)
    calls: list[str] = []
    first = ledger.new_ref(entry("1").turn, lambda r: calls.append(r.status))
    ledger.open(first)
    flushed = ledger.flush_future()
    later = ledger.new_ref(entry("2").turn, None)
    ledger.open(later)
    assert not flushed.done()
    notify([(first, StorageResult(first.turn_id, "stored"))])
    assert calls == ["stored"]
    ledger.close([first])
    assert flushed.result(0) is True  # the later turn is still open
    assert not ledger.flush_future().done()
    ledger.close([later])
    assert ledger.flush_future().done()
    assert ledger.submitted == 2


def test_a_raising_callback_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    def boom(result: StorageResult) -> None:
        raise RuntimeError("callback bug")

    seen: list[str] = []
    ledger = Ledger(max_failures=10)
    refs = [
        ledger.new_ref(entry("1").turn, boom),
        ledger.new_ref(entry("2").turn, lambda r: seen.append(r.turn_id)),
    ]
    notify([(r, StorageResult(r.turn_id, "failed", "x")) for r in refs])
    assert seen == [refs[1].turn_id]
    assert "on_done callback raised" in caplog.text


def test_failures_are_per_document_and_retrying_ones_are_listed_after_final_ones() -> None:
    ledger = Ledger(max_failures=10)
    batch = Lanes().form(
        [entry("1"), entry("2", doc="doc-2"), entry("3")], max_batch=9, now=0.0, spill=False
    )[0]
    batch.attempts = 2
    ledger.transient[batch.operation_id] = ledger.failures_for(
        batch, "HTTP 503", permanent=False, status_code=503
    )
    refused = entry("r").turn
    ledger.refuse(refused, "queue full")
    errors = ledger.pending_errors()
    assert [(e.document_id, len(e.turn_ids), e.permanent, e.attempts) for e in errors] == [
        ("doc-1", 1, True, 0),
        ("doc-1", 2, False, 2),
        ("doc-2", 1, False, 2),
    ]
    ledger.record_failure(batch, "HTTP 422", permanent=True, status_code=422)
    assert batch.operation_id not in ledger.transient
    assert [(e.error, e.attempts) for e in ledger.pending_errors()][1:] == [("HTTP 422", 3), ("HTTP 422", 3)]
    assert ledger.stats(pending=4, on_disk=1).failed == 1
    ledger.clear_errors()
    assert ledger.pending_errors() == []


def test_the_failure_list_is_bounded() -> None:
    ledger = Ledger(max_failures=3)
    for i in range(5):
        ledger.refuse(entry(str(i)).turn, f"refused {i}")
    assert [e.error for e in ledger.pending_errors()] == ["refused 2", "refused 3", "refused 4"]
    assert ledger.failed == 5


# ------------------------------------------------------------------------------------------ claims


def test_claims_keep_a_live_owner_s_files_and_hand_over_a_stopped_one_s(tmp_path: Path) -> None:
    """Two claims on one directory (in one process they are still two locks): a live owner's files are
    never taken; a released (or dead) owner's files and files of no owner are taken once, by one claim."""
    mine, theirs = Claim(tmp_path), Claim(tmp_path)
    assert mine.locked
    assert theirs.locked
    assert mine.owner != theirs.owner
    assert {p.name for p in tmp_path.iterdir()} == {
        f".owner-{mine.owner}.lock",
        f".owner-{theirs.owner}.lock",
    }
    (tmp_path / f"00000000000000000002-1-1.{theirs.owner}.json").write_text("{}")
    (tmp_path / "00000000000000000001-1-1.json").write_text("{}")  # written before outboxes were shared
    assert [p.name for p in adopt(mine)] == [f"00000000000000000001-1-1.{mine.owner}.json"]
    assert (tmp_path / f"00000000000000000002-1-1.{theirs.owner}.json").exists()  # alive: left alone
    theirs.release()
    assert [p.name for p in adopt(mine)] == [f"00000000000000000002-1-1.{mine.owner}.json"]
    assert not (tmp_path / f".owner-{theirs.owner}.lock").exists()
    assert adopt(mine) == []
    assert owner_of(tmp_path / "x.json") is None
    assert stem_of(tmp_path / f"abc.{mine.owner}.json") == "abc"


def test_one_claim_per_process_even_when_threads_ask_at_once(tmp_path: Path) -> None:
    """The worker thread and another thread (``outbox_dir`` users, ``close()``) asking for the claim at the
    same moment get the same one: two would each own files the other could not send or remove."""
    outbox = Outbox(tmp_path)
    start = threading.Barrier(8)
    seen: list[str] = []

    def ask() -> None:
        start.wait()
        seen.append(outbox.claim.owner)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1
    assert len(list(tmp_path.glob(".owner-*.lock"))) == 1
