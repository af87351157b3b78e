"""The memory pipeline end to end against the real server: conversations stored once, outages survived,
concurrent users kept apart."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from hindsight_core import MemoryPipeline, MemorySettings, StorageWorker
from hindsight_core.pipeline import MEMORY_OPEN
from tests.faults import CuttableProxy
from tests.helpers import documents, markers, seed_bank, settled_text

pytestmark = pytest.mark.server


@pytest.fixture
def pipeline() -> Iterator[MemoryPipeline]:
    worker = StorageWorker(retry_initial=0.05, retry_max=0.5)
    yield MemoryPipeline(source="test", storage=worker)
    worker.close(timeout=10)


def test_ten_turn_conversation_is_one_document_with_each_turn_once(
    pipeline: MemoryPipeline, hindsight_server: str, bank_id: str
) -> None:
    seed_bank(hindsight_server, bank_id)
    settings = MemorySettings(hindsight_api_url=hindsight_server, bank_id=bank_id, session_id="chat-1")
    tags = markers(10)
    messages: list[dict[str, str]] = []
    injected_turns = 0
    for index, tag in enumerate(tags):
        messages.append({"role": "user", "content": f"Turn {index} fact: remember the code word {tag}."})
        call = pipeline.prepare(messages, settings, model="test-model")
        assert call.original == messages
        injected_turns += call.record.injected
        reply = f"Noted {tag}."
        pipeline.finish(call, reply)
        messages.append({"role": "assistant", "content": reply})
        assert pipeline.storage.flush(timeout=60)
        # let the server make the turn recallable, so later turns get it injected (and must not re-store it)
        settled_text(hindsight_server, bank_id, "chat-1", [tag])
    assert injected_turns > 0  # memory was injected along the way, so the check below means something
    text = settled_text(hindsight_server, bank_id, "chat-1", tags)
    for tag in tags:
        assert text.count(f"remember the code word {tag}.") == 1
        assert text.count(f"Noted {tag}.") == 1
    assert MEMORY_OPEN not in text
    assert "# Relevant Memories" not in text
    assert len(text.splitlines()) == 20  # a user and an assistant line per turn: no growth
    assert [d["id"] for d in documents(hindsight_server, bank_id)] == ["chat-1"]


def test_server_outage_mid_conversation_every_turn_stored_after_recovery(
    pipeline: MemoryPipeline, hindsight_server: str, bank_id: str
) -> None:
    seed_bank(hindsight_server, bank_id)
    proxy = CuttableProxy(hindsight_server)
    try:
        settings = MemorySettings(
            hindsight_api_url=proxy.url,
            bank_id=bank_id,
            session_id="outage",
            recall_timeout=1.0,
            max_retries=0,
        )
        tags = markers(9)
        messages: list[dict[str, str]] = []
        errors = []
        for index, tag in enumerate(tags):
            if index == 3:
                proxy.cut()
            if index == 6:
                proxy.restore()
            messages.append({"role": "user", "content": f"Outage turn {tag}"})
            call = pipeline.prepare(messages, settings)  # returns whatever the server's state
            errors.append(call.record.error)
            pipeline.finish(call, f"ok {tag}")
            messages.append({"role": "assistant", "content": f"ok {tag}"})
        assert all(errors[i] is not None for i in (3, 4, 5))  # the LLM calls during the outage went on
        assert pipeline.storage.flush(timeout=120)
    finally:
        proxy.close()
    text = settled_text(hindsight_server, bank_id, "outage", tags)
    for tag in tags:
        assert text.count(f"Outage turn {tag}") == 1
        assert text.count(f"ok {tag}") == 1


def test_fifty_concurrent_tasks_with_their_own_banks(
    pipeline: MemoryPipeline, hindsight_server: str, bank_id: str
) -> None:
    users = [f"{bank_id}-task{i}" for i in range(50)]
    secrets = markers(50)
    for bank, secret in zip(users, secrets, strict=True):
        seed_bank(hindsight_server, bank, [f"The user's secret is {secret}."])

    async def user(bank: str, secret: str) -> tuple[str, str]:
        settings = MemorySettings(
            hindsight_api_url=hindsight_server, bank_id=bank, session_id="s", recall_timeout=60
        )
        messages = [{"role": "user", "content": f"What is my secret? I am {bank}."}]
        call = await pipeline.aprepare(messages, settings)
        await pipeline.afinish(call, f"Your secret is {secret}.")
        return bank, call.record.memory_context

    async def everyone() -> list[tuple[str, str]]:
        return await asyncio.gather(*(user(b, s) for b, s in zip(users, secrets, strict=True)))

    results = asyncio.run(everyone())
    assert pipeline.storage.flush(timeout=120)
    for index, (bank, context) in enumerate(results):
        assert secrets[index] in context
        assert sum(secret in context for secret in secrets) == 1
        stored = settled_text(hindsight_server, bank, "s", [f"I am {bank}."])
        assert sum(secret in stored for secret in secrets) == 1
        assert stored.count(f"I am {bank}.") == 1


def test_twenty_threads_with_their_own_banks(
    pipeline: MemoryPipeline, hindsight_server: str, bank_id: str
) -> None:
    users = [f"{bank_id}-thread{i}" for i in range(20)]
    secrets = markers(20)
    for bank, secret in zip(users, secrets, strict=True):
        seed_bank(hindsight_server, bank, [f"The user's secret is {secret}."])
    contexts: dict[str, str] = {}
    barrier = threading.Barrier(len(users))

    def user(bank: str, secret: str) -> None:
        settings = MemorySettings(
            hindsight_api_url=hindsight_server, bank_id=bank, session_id="s", recall_timeout=60
        )
        barrier.wait(30)
        call = pipeline.prepare([{"role": "user", "content": f"What is my secret? I am {bank}."}], settings)
        pipeline.finish(call, f"Your secret is {secret}.")
        contexts[bank] = call.record.memory_context

    threads = [threading.Thread(target=user, args=pair) for pair in zip(users, secrets, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert pipeline.storage.flush(timeout=120)
    for bank, secret in zip(users, secrets, strict=True):
        assert secret in contexts[bank]
        assert sum(s in contexts[bank] for s in secrets) == 1
        stored = settled_text(hindsight_server, bank, "s", [f"I am {bank}."])
        assert sum(s in stored for s in secrets) == 1


def test_store_without_lookup_appends_the_turn(
    pipeline: MemoryPipeline, hindsight_server: str, bank_id: str
) -> None:
    from hindsight_core import get_last_debug

    seed_bank(hindsight_server, bank_id)
    settings = MemorySettings(hindsight_api_url=hindsight_server, bank_id=bank_id, session_id="store-only")
    before = get_last_debug()
    record = pipeline.store([{"role": "user", "content": "Stored directly, no recall."}], "Fine.", settings)
    assert get_last_debug() is before  # storage-only calls leave the last lookup record alone
    assert record.storage_status in ("queued", "stored")
    assert pipeline.storage.flush(timeout=60)
    assert record.storage_status == "stored"
    text = settled_text(hindsight_server, bank_id, "store-only", ["Stored directly"])
    assert text == "user: Stored directly, no recall.\nassistant: Fine."
    excluded = settings.model_copy(update={"excluded_models": ("secret-*",)})
    skipped = pipeline.store([{"role": "user", "content": "x"}], "y", excluded, model="secret-model")
    assert skipped.storage_status == "skipped"


async def test_astore(pipeline: MemoryPipeline, hindsight_server: str, bank_id: str) -> None:
    seed_bank(hindsight_server, bank_id)
    settings = MemorySettings(hindsight_api_url=hindsight_server, bank_id=bank_id, session_id="astore")
    record = await pipeline.astore([{"role": "user", "content": "Async store."}], "Ok.", settings)
    assert await pipeline.storage.aflush(timeout=60)
    assert record.storage_status == "stored"
    assert "user: Async store." in settled_text(hindsight_server, bank_id, "astore", ["Async store."])
