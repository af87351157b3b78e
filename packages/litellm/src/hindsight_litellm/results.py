"""The result types of the direct memory APIs (``recall``, ``reflect``, ``retain``), shaped as
hindsight-litellm 0.5.4's: a ``RecallResponse`` behaves like a list of ``RecallResult``; ``debug`` is filled
when ``verbose`` is set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, overload

from hindsight_core.models import ReflectFact

__all__ = [
    "RecallDebugInfo",
    "RecallResponse",
    "RecallResult",
    "ReflectDebugInfo",
    "ReflectResult",
    "RetainDebugInfo",
    "RetainResult",
]


@dataclass
class RecallResult:
    """One memory: its ``text``, ``fact_type`` (``world``, ``experience``, ``observation``), relevance
    ``weight`` (the server's final score, when it gives one) and ``metadata``."""

    text: str
    fact_type: str
    weight: float = 1.0
    metadata: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.text


@dataclass
class RecallDebugInfo:
    query: str
    bank_id: str
    budget: str
    max_tokens: int | None
    fact_types: list[str] | None
    results_count: int
    api_url: str


@dataclass
class RecallResponse:
    """The memories found, best first. Iterate it, index it, or take ``len()`` of it like a list."""

    results: list[RecallResult] = field(default_factory=list)
    debug: RecallDebugInfo | None = None

    def __iter__(self) -> Iterator[RecallResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> RecallResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecallResult]: ...

    def __getitem__(self, index: int | slice) -> RecallResult | list[RecallResult]:
        return self.results[index]

    def __bool__(self) -> bool:
        return bool(self.results)


@dataclass
class ReflectDebugInfo:
    query: str
    bank_id: str
    budget: str
    context: str | None
    api_url: str


@dataclass
class ReflectResult:
    """The synthesized answer (``text``), the facts it used (``based_on``, when asked for) and, with a
    ``response_schema``, the ``structured_output``."""

    text: str
    based_on: list[ReflectFact] | None = None
    debug: ReflectDebugInfo | None = None
    structured_output: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.text


@dataclass
class RetainDebugInfo:
    content: str
    bank_id: str
    context: str | None
    document_id: str | None
    tags: list[str] | None
    metadata: dict[str, str] | None
    api_url: str


@dataclass
class RetainResult:
    """Whether the server took the content (``bool(result)`` is ``success``)."""

    success: bool
    items_count: int = 0
    debug: RetainDebugInfo | None = None

    def __bool__(self) -> bool:
        return self.success
