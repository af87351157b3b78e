"""Fixtures for the LlamaIndex integration tests: seeded banks, memories pointed at the real server, and
helpers that read back what reached the LLM and what was stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, TextBlock
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index.memory.hindsight import HindsightMemory
from tests.helpers import document_text, flush_storage, recall_texts, seed_bank, wait_for

CAT_FACT = "The user's cat is called Miso and sleeps on the piano."
DOG_FACT = "The user's dog is called Rex and loves the beach."
QUESTION = "What is my cat called?"

__all__ = ["CAT_FACT", "DOG_FACT", "QUESTION", "FixedRetriever", "seed", "sent_text", "stored_text"]


def sent_text(messages: Sequence[ChatMessage] | None) -> str:
    """Everything the LLM was given, as one string."""
    assert messages is not None, "the LLM was not called"
    return "\n".join(
        f"{m.role.value}: " + "\n".join(b.text for b in m.blocks if isinstance(b, TextBlock))
        for m in messages
    )


def stored_text(url: str, bank: str, document_id: str | None, *expected: str) -> str:
    """The stored text of ``document_id`` once storage drained and it holds every ``expected`` string."""
    assert document_id, "no document id in the debug record"
    flush_storage()

    def ready() -> str | None:
        text = document_text(url, bank, document_id)
        return text if text is not None and all(e in text for e in expected) else None

    result: str = wait_for(ready, what=f"document {document_id} to hold {expected}")
    return result


def seed(url: str, bank: str, facts: Iterable[str]) -> None:
    """Create ``bank`` (verbatim chunks) holding ``facts``; return once recall finds each of them."""
    facts = list(facts)
    seed_bank(url, bank, facts)
    for fact in facts:

        def found(fact: str = fact) -> bool:
            return fact in recall_texts(url, bank, fact)

        wait_for(found, what=f"recall to find {fact!r}")


class FixedRetriever(BaseRetriever):
    """A retriever (for the context chat engines) that always returns one document."""

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(text="Pets need fresh water every day."), score=1.0)]


@pytest.fixture
def cat_bank(hindsight_server: str, bank_id: str) -> str:
    """A bank (storing verbatim) that knows the user's cat; returns its id."""
    seed(hindsight_server, bank_id, [CAT_FACT])
    return bank_id


@pytest.fixture
def make_memory(hindsight_server: str) -> Callable[..., HindsightMemory]:
    """``make_memory(bank, **options)``: a HindsightMemory on the test server."""

    def make(bank: str, **options: Any) -> HindsightMemory:
        return HindsightMemory.from_defaults(bank_id=bank, hindsight_api_url=hindsight_server, **options)

    return make
