"""The core's agent tools (``hindsight_core.tools``): definitions, argument checks, and runs through the
memory pipeline against the real server (failure policy, settings, storage)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hindsight_core import HindsightClient, MemoryPipeline, MemorySettings, StorageWorker
from hindsight_core.debug import get_last_debug
from hindsight_core.errors import ConfigurationError, StorageError
from hindsight_core.models import ReflectResponse
from hindsight_core.tools import (
    MAX_RETAIN_TOKENS,
    MEMORY_TOOLS,
    RECALL_TOOL,
    REFLECT_TOOL,
    RETAIN_TOOL,
    MemoryToolRunner,
    ToolResult,
    check_arguments,
    select_tools,
)
from tests.helpers import closed_port_url, document_text, recall_texts, seed_bank, wait_for


def test_definitions() -> None:
    assert [t.name for t in MEMORY_TOOLS.values()] == [
        "hindsight_retain",
        "hindsight_recall",
        "hindsight_reflect",
    ]
    assert RECALL_TOOL.json_schema() == {
        "type": "object",
        "properties": {"query": {"type": "string", "description": RECALL_TOOL.parameters[0].description}},
        "required": ["query"],
        "additionalProperties": False,
    }
    for tool in MEMORY_TOOLS.values():
        assert len(tool.description) > 100  # written for a model to choose by
        assert all(p.description for p in tool.parameters)


def test_select_tools() -> None:
    assert select_tools(["recall", "hindsight_retain", "recall"]) == (RECALL_TOOL, RETAIN_TOOL)
    assert select_tools("reflect") == (REFLECT_TOOL,)
    with pytest.raises(ConfigurationError, match="unknown memory tool 'forget'; choose from"):
        select_tools(["forget"])
    with pytest.raises(ConfigurationError, match="no memory tool selected"):
        select_tools([])


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (RECALL_TOOL, {}, "Missing 'query'. What to look up"),
        (RECALL_TOOL, {"query": ""}, "'query' is empty."),
        (RECALL_TOOL, {"query": " \n "}, "'query' is empty."),
        (RECALL_TOOL, {"query": None}, "'query' must be text (a string), not null."),
        (RECALL_TOOL, {"query": 3.5}, "'query' must be text (a string), not a number."),
        (RECALL_TOOL, {"query": True}, "'query' must be text (a string), not true/false."),
        (REFLECT_TOOL, {"query": ["a"]}, "'query' must be text (a string), not a list."),
        (
            RETAIN_TOOL,
            {"content": {"a": 1}},
            "'content' must be text (a string), not an object",
        ),
        (
            RETAIN_TOOL,
            {"content": "x", "when": "now"},
            "Unknown argument 'when': this tool takes only 'content'.",
        ),
        (RETAIN_TOOL, "remember this", "The arguments must be an object with 'content', not text."),
        (
            RETAIN_TOOL,
            {"content": "word " * 2500},
            "'content' is too long (2,501 tokens; at",
        ),
        (
            RETAIN_TOOL,
            {"content": "y" * 200_000},
            "'content' is too long (200,000 characters",
        ),
    ],
)
def test_bad_arguments_get_a_message(tool: Any, arguments: Any, message: str) -> None:
    result = check_arguments(tool, arguments)
    assert isinstance(result, ToolResult)
    assert result.status == "invalid"
    assert result.text.startswith(message)


def test_good_arguments_are_stripped() -> None:
    assert check_arguments(RECALL_TOOL, {"query": "  allergies \n"}) == {"query": "allergies"}
    assert check_arguments(RETAIN_TOOL, {"content": "word " * (MAX_RETAIN_TOKENS - 1)}) is not None


@pytest.fixture
def worker() -> Iterator[StorageWorker]:
    own = StorageWorker(retry_initial=0.05, retry_max=0.2, exit_timeout=0.5)
    yield own
    own.close(timeout=0)


@pytest.fixture
def runner(worker: StorageWorker) -> MemoryToolRunner:
    return MemoryToolRunner(MemoryPipeline(source="test-tools", storage=worker))


def test_no_bank_raises_a_configuration_error(runner: MemoryToolRunner) -> None:
    with pytest.raises(ConfigurationError, match="hindsight_recall: no Hindsight bank_id"):
        runner.run(RECALL_TOOL, {"query": "x"}, MemorySettings(hindsight_api_url="http://127.0.0.1:9"))


@pytest.mark.server
def test_recall_ignores_the_automatic_memory_switches(
    runner: MemoryToolRunner, hindsight_server: str, bank_id: str
) -> None:
    seed_bank(hindsight_server, bank_id, ["The user drinks oat milk."])
    wait_for(lambda: recall_texts(hindsight_server, bank_id, "oat milk"), what="the seeded fact")
    settings = MemorySettings(
        hindsight_api_url=hindsight_server,
        bank_id=bank_id,
        inject_memories=False,
        use_reflect=True,
        query="something else",
    )
    result = runner.run(RECALL_TOOL, {"query": "oat milk"}, settings)
    assert result.status == "ok"
    assert "The user drinks oat milk." in result.text
    assert result.record is get_last_debug()
    assert result.record is not None
    assert result.record.mode == "recall"
    assert result.record.query == "oat milk"


@pytest.mark.server
def test_retain_stores_even_with_conversation_storage_off(
    runner: MemoryToolRunner, worker: StorageWorker, hindsight_server: str, bank_id: str
) -> None:
    seed_bank(hindsight_server, bank_id)
    note = f"The user's train leaves at {uuid.uuid4().hex[:4]}."
    settings = MemorySettings(
        hindsight_api_url=hindsight_server, bank_id=bank_id, store_conversations=False, document_id="doc-7"
    )
    result = runner.run(RETAIN_TOOL, {"content": note}, settings)
    assert result.status == "ok"
    assert worker.flush(timeout=30)
    assert result.record is not None
    assert result.record.storage_status == "stored"
    text = wait_for(lambda: document_text(hindsight_server, bank_id, "doc-7"), what="the note's document")
    assert text == note


def test_reflect_honours_reflect_context(runner: MemoryToolRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def reflect(self: HindsightClient, bank: str, query: str, **options: Any) -> ReflectResponse:
        seen.append({"bank": bank, "query": query, **options})
        return ReflectResponse(text="The user likes mountains.")

    monkeypatch.setattr(HindsightClient, "reflect", reflect)
    settings = MemorySettings(
        hindsight_api_url="http://127.0.0.1:9", bank_id="b", reflect_context="planning a holiday"
    )
    result = runner.run(REFLECT_TOOL, {"query": "Where should we go?"}, settings)
    assert "The user likes mountains." in result.text
    assert seen[0]["context"] == "planning a holiday"
    assert seen[0]["query"] == "Where should we go?"


def test_unreachable_memory_fails_open_with_a_record_and_one_warning(
    runner: MemoryToolRunner, caplog: pytest.LogCaptureFixture
) -> None:
    settings = MemorySettings(hindsight_api_url=closed_port_url(), bank_id="b", max_retries=0)
    with caplog.at_level(logging.WARNING, logger="hindsight_core.test-tools"):
        first = runner.run(RECALL_TOOL, {"query": "x"}, settings)
        second = asyncio.run(runner.arun(REFLECT_TOOL, {"query": "y"}, settings))
    for result in (first, second):
        assert result.status == "unavailable"
        assert result.text.startswith("Long-term memory is unavailable right now (APIConnectionError)")
        assert result.record is not None
        assert result.record.error is not None
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # rate limited


def test_sync_storage_failure_is_unavailable_or_raises_in_strict_mode(
    runner: MemoryToolRunner, caplog: pytest.LogCaptureFixture
) -> None:
    settings = MemorySettings(
        hindsight_api_url=closed_port_url(), bank_id="b", sync_storage=True, retain_timeout=0.5, max_retries=0
    )
    with caplog.at_level(logging.WARNING, logger="hindsight_core.test-tools"):
        result = runner.run(RETAIN_TOOL, {"content": "The user has a boat."}, settings)
    assert result.status == "unavailable"
    assert result.text.startswith(
        "Long-term memory is unavailable right now (StorageError), so saving it did not complete"
    )
    assert result.record is not None
    assert result.record.error is not None
    assert "StorageError" in caplog.text
    with pytest.raises(StorageError):
        asyncio.run(runner.arun(RETAIN_TOOL, {"content": "x"}, settings.model_copy(update={"strict": True})))


@pytest.mark.server
def test_each_recall_asks_the_server_so_a_fact_just_retained_is_found(
    runner: MemoryToolRunner, worker: StorageWorker, hindsight_server: str, bank_id: str
) -> None:
    # A tool call continues no user message: its lookups are never reused (the same query again must
    # see what was stored in between).
    seed_bank(hindsight_server, bank_id)
    tag = uuid.uuid4().hex[:8]
    settings = MemorySettings(hindsight_api_url=hindsight_server, bank_id=bank_id)
    query = {"query": f"boat named {tag}"}
    assert runner.run(RECALL_TOOL, query, settings).status == "empty"
    runner.run(RETAIN_TOOL, {"content": f"The user owns a boat named {tag}."}, settings)
    assert worker.flush(timeout=30)
    wait_for(lambda: tag in runner.run(RECALL_TOOL, query, settings).text, what="the new fact in a recall")
