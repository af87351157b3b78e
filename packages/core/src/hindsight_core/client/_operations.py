"""What each API call sends and how its answer is read (no I/O): :class:`Operation` and the request
builders of every endpoint the integrations use, shared by the sync and async clients."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from ..errors import ConfigurationError
from ..models import (
    Bank,
    BankConfig,
    BankList,
    BankProfile,
    BankUpsertRequest,
    Budget,
    DeleteResult,
    EntityIncludeOptions,
    Health,
    RecallIncludeOptions,
    RecallRequest,
    RecallResponse,
    ReflectIncludeOptions,
    ReflectRequest,
    ReflectResponse,
    RetainItem,
    RetainRequest,
    RetainResponse,
    TagsMatch,
    UpdateMode,
)
from .policy import Timeouts

__all__ = ["API_PATH", "Operation", "Outcome", "Requests", "Send", "Sleep", "Step", "describe_validation"]

API_PATH = "/v1/default/banks"
_API = API_PATH

T = TypeVar("T")


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One API call: what to send, within which budget, and how to read the answer."""

    name: str
    method: str
    path: str
    parse: Callable[[bytes], T]
    budget: float
    body: bytes | None = None
    params: Mapping[str, str | int] = field(default_factory=dict)
    idempotent: bool = True


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Outcome = httpx.Response | httpx.HTTPError | None


def _model_parser(model: type[pydantic.BaseModel]) -> Callable[[bytes], Any]:
    return model.model_validate_json


def _bank_path(bank_id: str, suffix: str = "") -> str:
    if not isinstance(bank_id, str) or not bank_id.strip():
        raise ConfigurationError(f"bank_id must be a non-empty string, got {bank_id!r}")
    return f"{_API}/{quote(bank_id, safe='')}{suffix}"


def _dump(model: pydantic.BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


def _build(model: type[pydantic.BaseModel], what: str, values: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(values))
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"invalid {what}: {describe_validation(exc)}") from None


def describe_validation(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


class Requests:
    """The request builders: one :class:`Operation` per endpoint, within the client's time budgets."""

    timeouts: Timeouts

    # ------------------------------------------------------------------------------ operations (no I/O)

    def _budget(self, default: float, override: float | None) -> float:
        if override is None:
            return default
        if isinstance(override, bool) or not isinstance(override, (int, float)) or override <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {override!r}")
        return float(override)

    def _op_health(self, timeout: float | None) -> Operation[Health]:
        return Operation(
            "health", "GET", "/health", _model_parser(Health), self._budget(self.timeouts.health, timeout)
        )

    def _op_upsert_bank(
        self,
        bank_id: str,
        name: str | None,
        mission: str | None,
        retain_mission: str | None,
        extraction_mode: str | None,
        options: Mapping[str, Any],
        timeout: float | None,
    ) -> Operation[BankProfile]:
        body = _build(
            BankUpsertRequest,
            "bank options",
            {
                "name": name,
                "reflect_mission": mission,
                "retain_mission": retain_mission,
                "retain_extraction_mode": extraction_mode,
                **options,
            },
        )
        return Operation(
            "create_bank",
            "PUT",
            _bank_path(bank_id),
            _model_parser(BankProfile),
            self._budget(self.timeouts.bank, timeout),
            body=_dump(body),
        )

    def _op_update_bank_config(
        self, bank_id: str, updates: Mapping[str, Any], timeout: float | None
    ) -> Operation[BankConfig]:
        if not updates:
            raise ConfigurationError("update_bank_config needs at least one setting to change")
        return Operation(
            "update_bank_config",
            "PATCH",
            _bank_path(bank_id, "/config"),
            _model_parser(BankConfig),
            self._budget(self.timeouts.bank, timeout),
            body=json.dumps({"updates": dict(updates)}).encode("utf-8"),
        )

    def _op_get_bank(self, bank_id: str, timeout: float | None) -> Operation[BankConfig]:
        return Operation(
            "get_bank",
            "GET",
            _bank_path(bank_id, "/config"),
            _model_parser(BankConfig),
            self._budget(self.timeouts.bank, timeout),
        )

    def _op_list_banks(self, query: str | None, limit: int, timeout: float | None) -> Operation[list[Bank]]:
        def parse(content: bytes) -> list[Bank]:
            return BankList.model_validate_json(content).banks

        params: dict[str, str | int] = {"limit": limit}
        if query:
            params["q"] = query
        return Operation(
            "list_banks", "GET", _API, parse, self._budget(self.timeouts.bank, timeout), params=params
        )

    def _op_delete_bank(self, bank_id: str, timeout: float | None) -> Operation[DeleteResult]:
        return Operation(
            "delete_bank",
            "DELETE",
            _bank_path(bank_id),
            _model_parser(DeleteResult),
            self._budget(self.timeouts.bank, timeout),
        )

    def _op_retain(
        self,
        bank_id: str,
        items: Sequence[RetainItem | Mapping[str, Any]],
        async_: bool,
        operation_id: str | None,
        timeout: float | None,
    ) -> Operation[RetainResponse]:
        candidate: object = items
        if isinstance(candidate, (str, bytes)) or not isinstance(candidate, Sequence) or not candidate:
            raise ConfigurationError("retain needs a non-empty list of items (each with at least 'content')")
        parsed = [
            item if isinstance(item, RetainItem) else _build(RetainItem, "retain item", item)
            for item in items
        ]
        if async_ and operation_id is None:
            operation_id = str(uuid.uuid4())
        request = RetainRequest.model_validate(
            {"items": parsed, "async": async_, "operation_id": operation_id}
        )
        # An async retain with an operation id is idempotent on the server; a sync one is too unless it
        # appends to a document (a resend would append twice).
        idempotent = async_ or all(i.document_id and i.update_mode != "append" for i in parsed)
        return Operation(
            "retain",
            "POST",
            _bank_path(bank_id, "/memories"),
            _model_parser(RetainResponse),
            self._budget(self.timeouts.retain, timeout),
            body=_dump(request),
            idempotent=idempotent,
        )

    @staticmethod
    def _retain_item(
        content: str,
        context: str | None,
        timestamp: datetime | str | None,
        document_id: str | None,
        metadata: Mapping[str, str] | None,
        tags: Sequence[str] | None,
        update_mode: UpdateMode | None,
    ) -> RetainItem:
        if not isinstance(content, str) or not content.strip():
            raise ConfigurationError(f"retain content must be a non-empty string, got {content!r:.60}")
        result: RetainItem = _build(
            RetainItem,
            "retain item",
            {
                "content": content,
                "context": context,
                "timestamp": timestamp,
                "document_id": document_id,
                "metadata": dict(metadata) if metadata is not None else None,
                "tags": list(tags) if tags is not None else None,
                "update_mode": update_mode,
            },
        )
        return result

    def _op_recall(
        self,
        bank_id: str,
        query: str,
        budget: Budget | None,
        max_tokens: int | None,
        types: Sequence[str] | None,
        tags: Sequence[str] | None,
        tags_match: TagsMatch | None,
        include_entities: bool | None,
        trace: bool | None,
        query_timestamp: str | None,
        timeout: float | None,
    ) -> Operation[RecallResponse]:
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(f"recall query must be a non-empty string, got {query!r:.60}")
        include = None
        if include_entities is not None:
            include = RecallIncludeOptions(entities=EntityIncludeOptions() if include_entities else None)
        request = _build(
            RecallRequest,
            "recall options",
            {
                "query": query,
                "budget": budget,
                "max_tokens": max_tokens,
                "types": list(types) if types is not None else None,
                "tags": list(tags) if tags is not None else None,
                "tags_match": tags_match,
                "trace": trace,
                "query_timestamp": query_timestamp,
            },
        )
        body = request.model_dump(by_alias=True, exclude_none=True)
        if include is not None:
            # ``entities: null`` is meaningful (turns entities off), so it is sent explicitly.
            body["include"] = include.model_dump()
        return Operation(
            "recall",
            "POST",
            _bank_path(bank_id, "/memories/recall"),
            _model_parser(RecallResponse),
            self._budget(self.timeouts.recall, timeout),
            body=json.dumps(body).encode("utf-8"),
        )

    def _op_reflect(
        self,
        bank_id: str,
        query: str,
        budget: Budget | None,
        context: str | None,
        max_tokens: int | None,
        response_schema: Mapping[str, Any] | None,
        include_facts: bool,
        tags: Sequence[str] | None,
        tags_match: TagsMatch | None,
        fact_types: Sequence[str] | None,
        timeout: float | None,
    ) -> Operation[ReflectResponse]:
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(f"reflect query must be a non-empty string, got {query!r:.60}")
        request = _build(
            ReflectRequest,
            "reflect options",
            {
                "query": query,
                "budget": budget,
                "context": context,
                "max_tokens": max_tokens,
                "response_schema": dict(response_schema) if response_schema is not None else None,
                "include": ReflectIncludeOptions(facts={}) if include_facts else None,
                "tags": list(tags) if tags is not None else None,
                "tags_match": tags_match,
                "fact_types": list(fact_types) if fact_types is not None else None,
            },
        )
        return Operation(
            "reflect",
            "POST",
            _bank_path(bank_id, "/reflect"),
            _model_parser(ReflectResponse),
            self._budget(self.timeouts.reflect, timeout),
            body=_dump(request),
        )

    # ------------------------------------------------------------------------------- the retry engine
