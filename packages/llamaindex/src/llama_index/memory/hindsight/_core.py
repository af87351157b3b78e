"""The core objects this integration shares: its settings layers and its memory pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from hindsight_core.memory import MemoryPipeline
from hindsight_core.settings import MemorySettings, SettingsLayers, validate_options

__all__ = ["LAYERS", "PIPELINE", "SOURCE", "check_options", "core_options", "hide_api_key", "resolve"]

SOURCE = "llama-index-memory-hindsight"

LAYERS = SettingsLayers("llamaindex")
"""Environment (``HINDSIGHT_API_URL``, ``HINDSIGHT_API_KEY``, ``HINDSIGHT_BANK_ID``), then each memory's
options."""

PIPELINE = MemoryPipeline(source=SOURCE)

# Options that are fields of the LlamaIndex objects (or decided by them), not free-form core options.
_OWN = frozenset({"bank_id", "session_id", "injection_mode"})


def core_options(bank_id: str | None, session_id: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The core settings of one memory: its ``options`` with ``bank_id``/``session_id`` when they are set."""
    merged = {key: value for key, value in options.items() if key not in _OWN}
    if bank_id is not None:
        merged["bank_id"] = bank_id
    elif options.get("bank_id") is not None:
        merged["bank_id"] = options["bank_id"]
    if session_id is not None:
        merged["session_id"] = session_id
    elif options.get("session_id") is not None:
        merged["session_id"] = options["session_id"]
    return merged


def hide_api_key(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with its ``api_key`` held as a ``SecretStr``, so that the repr of the object holding them
    never shows the key (the core takes a ``SecretStr`` as it is)."""
    key = options.get("api_key")
    return {**options, "api_key": SecretStr(key)} if isinstance(key, str) else options


def check_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate core options now (raises ``ConfigurationError`` naming the option and what is allowed)."""
    return validate_options(values, where="Hindsight option")


def resolve(options: Mapping[str, Any]) -> MemorySettings:
    """The settings for one call: environment, then ``options``."""
    return LAYERS.resolve(options)
