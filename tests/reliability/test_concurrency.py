"""A hundred users at once, each with a bank of their own, through ``hindsight_litellm.acompletion``: each
sees only their own memories and each bank stores only its own user's turn.

Each bank holds one secret; each user asks about theirs with a note only they use. What reached the model
is read from the fake provider's request log; what was sent for storage from the requests the server got
(through :class:`~tests.reliability.hindsight_faults.HindsightFaults`, here without any fault), and what
was stored from the server's documents. The recall and connect time budgets are raised so that a hundred
simultaneous lookups on one local server do not turn into fail-open (which would prove nothing about
isolation).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import hindsight_litellm as hl
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.storage import StorageWorker
from tests.helpers import document_text, markers, seed_bank, wait_for
from tests.providers import FakeOpenAI, assert_no_hindsight_keys
from tests.reliability.hindsight_faults import HindsightFaults

pytestmark = pytest.mark.server

USERS = 100


def _system_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m["content"]) for m in messages if m["role"] == "system")


async def test_a_hundred_concurrent_users_see_and_store_only_their_own_memories(
    hindsight_server: str,
    faults: HindsightFaults,
    worker: StorageWorker,
    fake_openai: FakeOpenAI,
    figures: Callable[..., None],
) -> None:
    t0 = time.monotonic()
    run = uuid.uuid4().hex[:8]
    banks = [f"test-users-{run}-{i:03d}" for i in range(USERS)]
    secrets = markers(USERS)
    notes = markers(USERS)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: seed_bank(hindsight_server, banks[i], [f"The user's secret word is {secrets[i]}."]),
                range(USERS),
            )
        )
    fake_openai.reply = "Noted."
    seeded = time.monotonic()

    async def user(i: int) -> InjectionDebugInfo:
        await asyncio.sleep(0)
        response = await hl.acompletion(
            model="openai/gpt-4o-mini",
            api_base=fake_openai.base_url,
            api_key="sk-test",
            messages=[{"role": "user", "content": f"What is my secret word? Note {notes[i]}."}],
            hindsight_bank_id=banks[i],
            hindsight_api_url=faults.url,
            hindsight_session_id="chat",
            hindsight_recall_timeout=120,
            hindsight_connect_timeout=30,
        )
        assert response.choices[0].message.content == "Noted."
        record = hl.get_last_injection_debug()
        assert record is not None
        return record

    started = time.monotonic()
    records = await asyncio.gather(*(user(i) for i in range(USERS)))
    calls_done = time.monotonic()

    # Each call's debug record (per task): its own bank, its own secret, nobody else's.
    errors = [(i, r.error) for i, r in enumerate(records) if r.error is not None]
    assert not errors, f"{len(errors)} lookups failed, e.g. {errors[:3]}"
    for i, record in enumerate(records):
        assert record.bank_id == banks[i]
        assert record.injected, record
        assert [s for s in secrets if s in record.memory_context] == [secrets[i]]

    # What each request to the model carried: its user's secret only.
    requests = fake_openai.requests
    assert len(requests) == USERS
    asked: set[int] = set()
    for request in requests:
        assert_no_hindsight_keys(request)
        messages = request.json["messages"]
        i = next(n for n, note in enumerate(notes) if note in str(messages[-1]["content"]))
        asked.add(i)
        assert [s for s in secrets if s in _system_text(messages)] == [secrets[i]]
    assert asked == set(range(USERS))

    assert await worker.aflush(120)
    assert worker.pending_errors() == []
    stats = worker.stats()
    assert (stats.submitted, stats.stored, stats.failed) == (USERS, USERS, 0)

    # Sent for storage: one retain per bank, holding its own user's turn and nothing else.
    retains: dict[str, list[str]] = {}
    for seen in faults.seen:
        if seen.operation == "retain":
            retains.setdefault(seen.path.split("/")[4], []).append(seen.body.decode())
    for i, bank in enumerate(banks):
        sent = "\n".join(retains.get(bank, []))
        assert len(retains.get(bank, [])) == 1, bank
        assert [n for n in notes if n in sent] == [notes[i]]
        assert not [s for s in secrets if s in sent], "recalled memory is never stored"
    flushed = time.monotonic()

    # Stored: each bank's document holds its own user's turn, once, and nothing of anyone else's.
    def stored(i: int) -> str:
        def ready() -> str | None:
            text = document_text(hindsight_server, banks[i], "chat")
            return text if text is not None and notes[i] in text else None

        text: str = wait_for(ready, what=f"the turn of {banks[i]} in its document")
        return text

    with ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(stored, range(USERS)))
    settled = time.monotonic()
    for i, text in enumerate(texts):
        assert text.count(notes[i]) == 1
        assert [n for n in notes if n in text] == [notes[i]]
        assert not [s for s in secrets if s in text]

    figures(
        users=USERS,
        seed_seconds=round(seeded - t0, 2),
        flush_seconds=round(flushed - calls_done, 2),
        settle_seconds=round(settled - flushed, 2),
        calls_seconds=round(calls_done - started, 2),
        recall_ms_max=round(max(r.timings_ms.get("recall", 0.0) for r in records)),
        storage_requests=stats.requests,
        stored=stats.stored,
    )
