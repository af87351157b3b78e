"""The wire models agree with the Hindsight server's OpenAPI document (stored copy, and the live server's)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from hindsight_core import models

SPEC_FILE = Path(__file__).parent / "data" / "hindsight-openapi-1.1.0.json"

# (our model, the server's schema, direction)
PAIRS: list[tuple[type[pydantic.BaseModel], str, str]] = [
    (models.BankUpsertRequest, "CreateBankRequest", "request"),
    (models.RetainItem, "MemoryItem", "request"),
    (models.RetainRequest, "RetainRequest", "request"),
    (models.RecallRequest, "RecallRequest", "request"),
    (models.RecallIncludeOptions, "IncludeOptions", "request"),
    (models.EntityIncludeOptions, "EntityIncludeOptions", "request"),
    (models.ReflectRequest, "ReflectRequest", "request"),
    (models.ReflectIncludeOptions, "ReflectIncludeOptions", "request"),
    (models.BankProfile, "BankProfileResponse", "response"),
    (models.Bank, "BankListItem", "response"),
    (models.BankList, "BankListResponse", "response"),
    (models.BankConfig, "BankConfigResponse", "response"),
    (models.DeleteResult, "DeleteResponse", "response"),
    (models.RetainResponse, "RetainResponse", "response"),
    (models.RecallResponse, "RecallResponse", "response"),
    (models.RecallResult, "RecallResult", "response"),
    (models.ReflectResponse, "ReflectResponse", "response"),
    (models.ReflectBasedOn, "ReflectBasedOn", "response"),
    (models.ReflectFact, "ReflectFact", "response"),
    (models.TokenUsage, "TokenUsage", "response"),
]

# The operations the client calls, with the schemas of their bodies.
OPERATIONS = [
    ("put", "/v1/default/banks/{bank_id}", "CreateBankRequest", "BankProfileResponse"),
    ("post", "/v1/default/banks/{bank_id}/memories", "RetainRequest", "RetainResponse"),
    ("post", "/v1/default/banks/{bank_id}/memories/recall", "RecallRequest", "RecallResponse"),
    ("post", "/v1/default/banks/{bank_id}/reflect", "ReflectRequest", "ReflectResponse"),
    ("get", "/v1/default/banks/{bank_id}/config", None, "BankConfigResponse"),
    ("patch", "/v1/default/banks/{bank_id}/config", "BankConfigUpdate", "BankConfigResponse"),
    ("get", "/v1/default/banks", None, "BankListResponse"),
    ("delete", "/v1/default/banks/{bank_id}", None, "DeleteResponse"),
    ("get", "/health", None, None),
]


def conformance_problems(spec: dict[str, Any]) -> list[str]:
    schemas = spec["components"]["schemas"]
    problems: list[str] = []
    for model, name, direction in PAIRS:
        schema = schemas.get(name)
        if schema is None:
            problems.append(f"{name}: missing from the server's schemas")
            continue
        properties = set(schema.get("properties", {}))
        required = set(schema.get("required", []))
        ours = {(field.alias or key): field for key, field in model.model_fields.items()}
        for wire_name, field in ours.items():
            if wire_name not in properties:
                problems.append(f"{model.__name__}.{wire_name}: not a field of the server's {name}")
            if direction == "response" and field.is_required() and wire_name not in required:
                problems.append(f"{model.__name__}.{wire_name}: we require it but the server may omit it")
        if direction == "request":
            for wire_name in required:
                if wire_name not in ours or not ours[wire_name].is_required():
                    problems.append(f"{model.__name__}.{wire_name}: the server requires it")
    for method, path, request, response in OPERATIONS:
        operation = spec["paths"].get(path, {}).get(method)
        if operation is None:
            problems.append(f"{method.upper()} {path}: no such operation")
            continue
        if request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            if not ref.endswith("/" + request):
                problems.append(f"{method.upper()} {path}: request body is {ref}, not {request}")
        if response is not None:
            ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            if not ref.endswith("/" + response):
                problems.append(f"{method.upper()} {path}: response is {ref}, not {response}")
    for literal, schema_name in [(models.Budget, "Budget")]:
        if set(typing.get_args(literal)) != set(schemas[schema_name]["enum"]):
            problems.append(f"{schema_name}: values differ from {typing.get_args(literal)}")
    update_modes = schemas["MemoryItem"]["properties"]["update_mode"]["anyOf"][0]["enum"]
    if set(typing.get_args(models.UpdateMode)) != set(update_modes):
        problems.append(f"UpdateMode: server has {update_modes}")
    return problems


def test_models_match_the_stored_openapi_document() -> None:
    spec = json.loads(SPEC_FILE.read_text())
    assert spec["info"]["version"] == "1.1.0"
    assert conformance_problems(spec) == []


def test_checker_notices_a_renamed_field() -> None:
    spec = json.loads(SPEC_FILE.read_text())
    properties = spec["components"]["schemas"]["RecallRequest"]["properties"]
    properties["question"] = properties.pop("query")
    spec["components"]["schemas"]["RecallRequest"]["required"] = ["question"]
    problems = conformance_problems(spec)
    assert "RecallRequest.query: not a field of the server's RecallRequest" in problems
    assert "RecallRequest.question: the server requires it" in problems


@pytest.mark.server
def test_models_match_the_live_servers_openapi_document(hindsight_server: str) -> None:
    spec = httpx.get(f"{hindsight_server}/openapi.json", timeout=30).json()
    assert conformance_problems(spec) == []
