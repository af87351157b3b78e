"""Typed wire models of the Hindsight API (server 1.1.0) as the integrations use it.

Request models forbid unknown fields, so a typo fails here and not on the server. Response models ignore
fields they do not know, so a newer server does not break an older client. Field names and required-ness
are checked against the server's ``/openapi.json`` by the test suite.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Bank",
    "BankConfig",
    "BankList",
    "BankProfile",
    "BankUpsertRequest",
    "Budget",
    "DeleteResult",
    "EntityIncludeOptions",
    "Health",
    "RecallIncludeOptions",
    "RecallRequest",
    "RecallResponse",
    "RecallResult",
    "ReflectBasedOn",
    "ReflectFact",
    "ReflectIncludeOptions",
    "ReflectRequest",
    "ReflectResponse",
    "RetainItem",
    "RetainRequest",
    "RetainResponse",
    "TagsMatch",
    "TokenUsage",
    "UpdateMode",
]

Budget = Literal["low", "mid", "high"]
"""How much work the server puts into a recall or reflect."""

TagsMatch = Literal["any", "all", "any_strict", "all_strict"]
"""How tags filter recall/reflect (``any``/``all`` include untagged memories, ``*_strict`` do not)."""

UpdateMode = Literal["replace", "append"]
"""What a retain does to an existing document with the same ``document_id``."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ---------------------------------------------------------------------------------------------- requests


class BankUpsertRequest(_Request):
    """Body of ``PUT /v1/default/banks/{bank_id}`` (create or update a bank)."""

    name: str | None = None
    reflect_mission: str | None = None
    retain_mission: str | None = None
    retain_extraction_mode: str | None = None
    retain_custom_instructions: str | None = None
    retain_chunk_size: int | None = None
    enable_observations: bool | None = None
    observations_mission: str | None = None


class RetainItem(_Request):
    """One piece of content to retain."""

    content: str
    context: str | None = None
    timestamp: datetime | str | None = None
    document_id: str | None = None
    metadata: dict[str, str] | None = None
    tags: list[str] | None = None
    update_mode: UpdateMode | None = None


class RetainRequest(_Request):
    """Body of ``POST /v1/default/banks/{bank_id}/memories``."""

    items: list[RetainItem]
    async_: bool = Field(default=False, alias="async")
    operation_id: str | None = None


class EntityIncludeOptions(_Request):
    max_tokens: int = 500


class RecallIncludeOptions(_Request):
    """What recall returns beside the memories. ``entities=None`` turns entity observations off."""

    entities: EntityIncludeOptions | None = None


class RecallRequest(_Request):
    """Body of ``POST /v1/default/banks/{bank_id}/memories/recall``."""

    query: str
    budget: Budget | None = None
    max_tokens: int | None = None
    types: list[str] | None = None
    tags: list[str] | None = None
    tags_match: TagsMatch | None = None
    include: RecallIncludeOptions | None = None
    trace: bool | None = None
    query_timestamp: str | None = None


class ReflectIncludeOptions(_Request):
    """``facts={}`` asks reflect for the facts it based its answer on."""

    facts: dict[str, Any] | None = None


class ReflectRequest(_Request):
    """Body of ``POST /v1/default/banks/{bank_id}/reflect``."""

    query: str
    budget: Budget | None = None
    context: str | None = None
    max_tokens: int | None = None
    response_schema: dict[str, Any] | None = None
    include: ReflectIncludeOptions | None = None
    tags: list[str] | None = None
    tags_match: TagsMatch | None = None
    fact_types: list[Literal["world", "experience", "observation"]] | None = None


# --------------------------------------------------------------------------------------------- responses


class TokenUsage(_Response):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class BankProfile(_Response):
    """What the server answers to a bank create/update."""

    bank_id: str
    name: str | None = None
    mission: str | None = None


class Bank(_Response):
    """One entry of ``GET /v1/default/banks``."""

    bank_id: str
    name: str | None = None
    mission: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    fact_count: int = 0


class BankList(_Response):
    """``GET /v1/default/banks``: one page of banks."""

    banks: list[Bank]
    total: int = 0


class BankConfig(_Response):
    """A bank's resolved configuration (``GET .../config``) and the bank-specific overrides in it."""

    bank_id: str
    config: dict[str, Any]
    overrides: dict[str, Any] = Field(default_factory=dict)

    @property
    def reflect_mission(self) -> str | None:
        value = self.config.get("reflect_mission")
        return value if isinstance(value, str) else None

    @property
    def retain_mission(self) -> str | None:
        value = self.config.get("retain_mission")
        return value if isinstance(value, str) else None

    @property
    def retain_extraction_mode(self) -> str | None:
        value = self.config.get("retain_extraction_mode")
        return value if isinstance(value, str) else None


class DeleteResult(_Response):
    success: bool
    message: str | None = None
    deleted_count: int | None = None


class RetainResponse(_Response):
    success: bool
    bank_id: str
    items_count: int
    async_: bool = Field(alias="async")
    operation_id: str | None = None
    operation_ids: list[str] | None = None
    usage: TokenUsage | None = None


class RecallResult(_Response):
    """One recalled memory. ``type`` is the fact type (``world``, ``experience``, ``observation``...)."""

    id: str
    text: str
    type: str | None = None
    entities: list[str] | None = None
    context: str | None = None
    occurred_start: str | None = None
    occurred_end: str | None = None
    mentioned_at: str | None = None
    document_id: str | None = None
    metadata: dict[str, str] | None = None
    chunk_id: str | None = None
    tags: list[str] | None = None
    scores: dict[str, float | None] | None = None
    """Relevance scores by retrieval stage; ``final`` is the one results are ranked by."""


class RecallResponse(_Response):
    results: list[RecallResult]
    trace: dict[str, Any] | None = None
    entities: dict[str, Any] | None = None


class ReflectFact(_Response):
    id: str | None = None
    text: str
    type: str | None = None
    context: str | None = None
    document_id: str | None = None
    tags: list[str] | None = None


class ReflectBasedOn(_Response):
    memories: list[ReflectFact] = Field(default_factory=list)
    mental_models: list[dict[str, Any]] = Field(default_factory=list)
    directives: list[dict[str, Any]] = Field(default_factory=list)


class ReflectResponse(_Response):
    text: str
    based_on: ReflectBasedOn | None = None
    structured_output: dict[str, Any] | None = None
    structured_output_error: str | None = None
    usage: TokenUsage | None = None


class Health(_Response):
    status: str
    database: str | None = None
