"""The examples of docs/llamaindex.md run as written (against the real server, bank name made unique)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hindsight_core import HindsightClient
from tests.helpers import recall_texts, wait_for

pytestmark = pytest.mark.server

DOC = Path(__file__).resolve().parents[2] / "docs" / "llamaindex.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_examples_run(
    hindsight_server: str, bank_id: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HINDSIGHT_API_URL", hindsight_server)
    with HindsightClient(hindsight_server) as client:
        client.create_bank(bank_id, extraction_mode="chunks")  # store verbatim: the test server has no LLM
    blocks = [block.replace('bank_id="alice"', f'bank_id="{bank_id}"') for block in examples()]
    assert len(blocks) == 8
    namespace: dict[str, Any] = {"__name__": "docs_example"}

    exec(blocks[0], namespace)  # first conversation, stored
    wait_for(lambda: any("Miso" in t for t in recall_texts(hindsight_server, bank_id, "cat")), what="storage")

    exec(blocks[1], namespace)  # a later conversation recalls it
    record = namespace["later"].last_debug
    assert record.injected
    assert "called Miso" in record.memory_context

    capsys.readouterr()
    exec(blocks[2], namespace)  # agent: prints its answer, then whether memories were injected
    assert capsys.readouterr().out.splitlines()[:2][-1].startswith("True ")

    exec(blocks[3], namespace)  # insert method
    assert namespace["memory"].insert_method.value == "user"

    exec(blocks[4], namespace)  # server down
    record = namespace["record"]
    assert not record.injected
    assert "APIConnectionError" in record.error

    exec(blocks[5], namespace)  # memory block
    assert "Miso" in str(namespace["messages"][0].content)

    capsys.readouterr()
    exec(blocks[6], namespace)  # agent-driven memory: a FunctionAgent searching memory with the tool spec
    assert capsys.readouterr().out.splitlines() == [
        "['retain_memory', 'recall_memory', 'reflect_on_memory']",
        "True",
    ]
    assert namespace["memory_tools"].last_debug.memories_used >= 1

    exec(blocks[7], namespace)  # a bad argument gets a message
    assert capsys.readouterr().out.startswith("'query' is empty.")
