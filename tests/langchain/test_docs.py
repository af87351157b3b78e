"""The examples of docs/langchain.md run as written, against the real server.

Every ```python block runs, in order, in one namespace (later blocks use what earlier ones defined), with
``HINDSIGHT_API_URL`` pointing at the test server. The banks the examples name (``"alice"``, ``"bob"``)
are replaced by fresh bank names, created beforehand in ``chunks`` mode (text stored verbatim: the test
server has no LLM to extract facts with).
"""

from __future__ import annotations

import re
import sys
import types
import uuid
from pathlib import Path

import pytest

from hindsight_core import HindsightClient

pytestmark = pytest.mark.server

DOC = Path(__file__).resolve().parents[2] / "docs" / "langchain.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_docs_examples_run(
    hindsight_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HINDSIGHT_API_URL", hindsight_server)
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    monkeypatch.delenv("HINDSIGHT_API_KEY", raising=False)
    banks = {name: f"docs-{name}-{uuid.uuid4().hex}" for name in ("alice", "bob")}
    with HindsightClient(hindsight_server) as client:
        for bank in banks.values():
            client.create_bank(bank, extraction_mode="chunks")

    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    module = types.ModuleType("docs_langchain")  # a real module: the examples define a dataclass
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for index, block in enumerate(blocks):
        code = block
        for name, bank in banks.items():
            code = code.replace(f'"{name}"', f'"{bank}"')
        exec(compile(code, f"{DOC.name} (python block {index + 1})", "exec"), module.__dict__)

    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Then skip the satay sauce.", "True"]  # quick start: memory was injected
    assert banks["alice"] in out  # the bank came from config["configurable"]
    assert "unknown RunnableWithHindsight option 'budgte'; did you mean 'budget'?" in out
    assert "True What am I allergic to?" in out  # the debug record of the last call
    assert any(line.endswith("[WORLD] Alice is allergic to peanuts.") for line in out)
    assert "stored" in out
    assert any(line.startswith("APIConnectionError") for line in out)  # server down: still answered
    # agent-driven memory
    assert "['hindsight_retain', 'hindsight_recall', 'hindsight_reflect']" in out
    assert "hindsight_recall True" in out  # the tool message held the stored fact
    assert "You are allergic to peanuts: no satay for you." in out
    assert "['human', 'ai']" in out  # the graph's state: no memory block left in it
