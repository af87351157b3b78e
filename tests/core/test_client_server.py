"""Every client operation round-trips against the real Hindsight server, with both clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hindsight_core import AsyncHindsightClient, HindsightClient, NotFoundError

pytestmark = pytest.mark.server


class Driver:
    """Calls the same operations on the sync or the async client, so both run one scenario."""

    def __init__(self, flavour: str, url: str) -> None:
        self.flavour = flavour
        self.loop = asyncio.new_event_loop() if flavour == "async" else None
        self.client: HindsightClient | AsyncHindsightClient = (
            HindsightClient(url) if flavour == "sync" else AsyncHindsightClient(url)
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if self.loop is None:
            return method  # type: ignore[no-any-return]
        loop = self.loop
        return lambda *args, **kwargs: loop.run_until_complete(method(*args, **kwargs))

    def close(self) -> None:
        if isinstance(self.client, AsyncHindsightClient):
            assert self.loop is not None
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
        else:
            self.client.close()


@pytest.fixture(params=["sync", "async"])
def hs(request: pytest.FixtureRequest, hindsight_server: str) -> Iterator[Driver]:
    driver = Driver(str(request.param), hindsight_server)
    yield driver
    driver.close()


def texts(response: Any) -> list[str]:
    return [r.text for r in response.results]


def test_health(hs: Driver) -> None:
    assert hs.health().status == "healthy"


def test_bank_create_get_update_list_delete(hs: Driver, bank_id: str) -> None:
    profile = hs.create_bank(
        bank_id,
        name="Support Router",
        mission="Route customer issues to the right team.",
        retain_mission="Keep team assignments.",
        extraction_mode="chunks",
    )
    assert profile.bank_id == bank_id
    assert profile.name == "Support Router"
    bank = hs.get_bank(bank_id)
    assert bank.reflect_mission == "Route customer issues to the right team."
    assert bank.retain_mission == "Keep team assignments."
    assert bank.retain_extraction_mode == "chunks"
    updated = hs.update_bank_config(bank_id, {"retain_mission": "Keep preferences too."})
    assert updated.retain_mission == "Keep preferences too."
    hs.create_bank(bank_id, name="Support Router v2")  # update keeps the other settings
    assert hs.get_bank(bank_id).retain_extraction_mode == "chunks"
    listed = {b.bank_id: b for b in hs.list_banks(query=bank_id)}
    assert listed[bank_id].name == "Support Router v2"
    assert hs.delete_bank(bank_id).success
    with pytest.raises(NotFoundError) as info:
        hs.get_bank(bank_id)
    assert info.value.status_code == 404
    assert bank_id in str(info.value)


def test_retain_then_recall_by_content(hs: Driver, bank_id: str) -> None:
    hs.create_bank(bank_id, extraction_mode="chunks")
    response = hs.retain(
        bank_id,
        "Alice is allergic to peanuts and loves hiking in the Alps.",
        context="onboarding chat",
        timestamp="2026-11-01T10:00:00Z",
        metadata={"source": "test"},
        tags=["user:alice"],
        document_id="conv-1",
    )
    assert response.success
    assert response.items_count == 1
    assert not response.async_
    recalled = hs.recall(bank_id, "What is Alice allergic to?", budget="low", max_tokens=1024)
    assert any("peanuts" in t for t in texts(recalled))
    first = recalled.results[0]
    assert first.type
    assert first.document_id == "conv-1"
    assert first.tags == ["user:alice"]


def test_retain_batch_append_tags_and_filters(hs: Driver, bank_id: str) -> None:
    hs.create_bank(bank_id, extraction_mode="chunks")
    hs.retain_batch(
        bank_id,
        [
            {
                "content": "Bob prefers Python for data work.",
                "document_id": "conv-2",
                "update_mode": "append",
                "tags": ["user:bob"],
            },
            {
                "content": "Carol prefers Rust for systems work.",
                "document_id": "conv-3",
                "tags": ["user:carol"],
            },
        ],
    )
    hs.retain(
        bank_id,
        "Bob also enjoys chess on weekends.",
        document_id="conv-2",
        update_mode="append",
        tags=["user:bob"],
    )
    bob = texts(
        hs.recall(bank_id, "What does Bob prefer and enjoy?", tags=["user:bob"], tags_match="all_strict")
    )
    assert any("Python" in t for t in bob)
    assert any("chess" in t for t in bob)  # the append kept the first turn and added the second
    assert not any("Rust" in t for t in bob)
    carol = texts(hs.recall(bank_id, "Who prefers Rust?", tags=["user:carol"], tags_match="any_strict"))
    assert any("Rust" in t for t in carol)
    world = hs.recall(bank_id, "Who prefers Rust?", types=["world"], include_entities=False, trace=True)
    assert all(r.type == "world" for r in world.results)


def test_async_retain_is_acknowledged_then_recallable(hs: Driver, bank_id: str) -> None:
    hs.create_bank(bank_id, extraction_mode="chunks")
    response = hs.retain(bank_id, "Dana's favourite colour is teal.", document_id="conv-4", async_=True)
    assert response.async_
    assert response.operation_id
    deadline = time.monotonic() + 60
    found: list[str] = []
    while time.monotonic() < deadline and not any("teal" in t for t in found):
        found = texts(hs.recall(bank_id, "What is Dana's favourite colour?"))
        time.sleep(0.3)
    assert any("teal" in t for t in found)


def test_reflect_answers_with_facts_and_schema(hs: Driver, bank_id: str) -> None:
    hs.create_bank(bank_id, extraction_mode="chunks", mission="Remember user preferences.")
    hs.retain(bank_id, "Erin drinks oat milk lattes every morning.")
    answer = hs.reflect(bank_id, "What does Erin drink?", budget="low", context="barista assistant")
    assert answer.text.strip()
    with_facts = hs.reflect(bank_id, "What does Erin drink?", include_facts=True, max_tokens=512)
    assert with_facts.based_on is not None
    assert any("oat milk" in f.text for f in with_facts.based_on.memories)
    structured = hs.reflect(
        bank_id,
        "What does Erin drink?",
        response_schema={"type": "object", "properties": {"drink": {"type": "string"}}},
    )
    assert isinstance(structured.structured_output, dict)
    assert "drink" in structured.structured_output


def test_unknown_bank_maps_to_not_found(hs: Driver) -> None:
    with pytest.raises(NotFoundError) as info:
        hs.recall("no-such-bank-for-sure", "anything")
    assert "not found" in str(info.value).lower()
    assert info.value.operation == "recall"
