"""Fixtures for the LangChain adapter tests: seeded banks on the real server, a callback handler that records
exactly what each chat model received, and helpers to read back what was stored."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from hindsight_core import HindsightClient
from hindsight_core.storage import default_worker

__all__ = ["Bank", "ModelInputs", "ToolCallingFake"]

_SETTLED = frozenset({"completed", "failed", "cancelled"})


class ToolCallingFake(GenericFakeChatModel):
    """GenericFakeChatModel that an agent can bind tools to (its scripted replies carry the tool calls)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        return self


class ModelInputs(BaseCallbackHandler):
    """Records the messages every chat model run received (``on_chat_model_start``), in call order."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.calls.extend(list(batch) for batch in messages)

    @property
    def texts(self) -> list[str]:
        """Everything each call received, as one string per call."""
        return ["\n".join(f"{m.type}: {m.text}" for m in call) for call in self.calls]


@dataclass
class Bank:
    """A bank on the real server, created in ``chunks`` mode so stored content comes back verbatim."""

    url: str
    bank_id: str
    client: HindsightClient

    def seed(self, *facts: str) -> None:
        """Retain ``facts`` and wait until recall finds each of them."""
        for fact in facts:
            self.client.retain(self.bank_id, fact)
        for fact in facts:
            self.wait_for(fact)

    def wait_for(self, text: str, *, attempts: int = 100) -> None:
        for _ in range(attempts):
            if any(text in r for r in self.world(text)):
                return
            time.sleep(0.1)
        pytest.fail(f"recall never found {text!r} in bank {self.bank_id}")

    def world(self, query: str) -> list[str]:
        """The verbatim stored chunks recall returns for ``query`` (world facts only, no derived ones)."""
        response = self.client.recall(self.bank_id, query, budget="high", types=["world"], max_tokens=8192)
        return [r.text for r in response.results]

    def settle(self, *, attempts: int = 300) -> None:
        """Flush our storage worker, then wait until the server has processed every retain it acknowledged
        (derived work such as consolidation is not waited for: only verbatim chunks are read back)."""
        assert default_worker().flush(timeout=60), "storage worker did not flush"
        assert not [f for f in default_worker().pending_errors() if f.bank_id == self.bank_id]
        for _ in range(attempts):
            response = httpx.get(f"{self.url}/v1/default/banks/{self.bank_id}/operations", timeout=10)
            if response.status_code == 404:
                return
            response.raise_for_status()
            operations = response.json().get("operations", [])
            retains = [op for op in operations if op.get("operation_type", op.get("task_type")) == "retain"]
            if all(op.get("status") in _SETTLED for op in retains):
                return
            time.sleep(0.1)
        pytest.fail(f"bank {self.bank_id}: the server never finished its operations")

    def stored(self, needle: str) -> list[str]:
        """After :meth:`settle`: the stored chunks containing ``needle``."""
        self.settle()
        return [text for text in self.world(needle) if needle in text]

    def exchanges(self, needle: str) -> list[str]:
        """After :meth:`settle`: the stored exchanges (``user: ...`` up to the next ``user: ...``)
        containing ``needle``. Turns of one conversation that reach the storage worker together are stored
        as one item, so one chunk may hold several exchanges: this counts each exchange, wherever it is."""
        found: list[str] = []
        for text in self.stored(needle):
            current: list[str] = []
            for line in text.split("\n"):
                if line.startswith("user: ") and current:
                    found.append("\n".join(current))
                    current = []
                current.append(line)
            if current:
                found.append("\n".join(current))
        return [exchange for exchange in found if needle in exchange]


@pytest.fixture
def make_bank(hindsight_server: str) -> Iterator[Callable[[], Bank]]:
    clients: list[HindsightClient] = []

    def make() -> Bank:
        client = HindsightClient(hindsight_server)
        clients.append(client)
        bank_id = f"test-lc-{uuid.uuid4().hex}"
        client.create_bank(bank_id, extraction_mode="chunks")
        return Bank(hindsight_server, bank_id, client)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def bank(hindsight_server: str, bank_id: str) -> Iterator[Bank]:
    """The test's own bank (``bank_id``), created in ``chunks`` mode."""
    with HindsightClient(hindsight_server) as client:
        client.create_bank(bank_id, extraction_mode="chunks")
        yield Bank(hindsight_server, bank_id, client)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def inputs() -> ModelInputs:
    return ModelInputs()
