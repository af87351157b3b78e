"""Settings for one call: the component's validated options, then per-call options from the run's config.

Layers, lowest to highest (resolved by the core's :class:`~hindsight_core.settings.SettingsLayers`):
environment (``HINDSIGHT_API_URL``, ``HINDSIGHT_API_KEY``, ``HINDSIGHT_BANK_ID``) < the options given to the
component's constructor < per-call options (``config["configurable"]["hindsight_<setting>"]``, and for the
agent middleware the runtime context).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig

from hindsight_core.errors import ConfigurationError
from hindsight_core.settings import MemorySettings, SettingsLayers, validate_options

__all__ = [
    "BANK_KEY",
    "CONFIG_PREFIX",
    "LAYERS",
    "SESSION_KEY",
    "bank_to_set_up",
    "configurable_options",
    "resolve",
    "validate_constructor_options",
]

CONFIG_PREFIX = "hindsight_"
BANK_KEY = "hindsight_bank_id"
"""``config["configurable"]`` key of the memory bank for one call."""
SESSION_KEY = "hindsight_session_id"
"""``config["configurable"]`` key of the conversation (session) a call belongs to."""

LAYERS = SettingsLayers("langchain")


def validate_constructor_options(options: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Validate constructor options with the core (``ConfigurationError`` naming the bad one)."""
    return validate_options(options, where=f"{owner} option")


def _setting_name(key: str) -> str:
    name = key[len(CONFIG_PREFIX) :]
    # ``hindsight_api_url`` is itself a setting name; ``hindsight_hindsight_api_url`` is accepted too.
    return "hindsight_api_url" if name == "api_url" else name


def configurable_options(config: RunnableConfig | None) -> dict[str, Any]:
    """The ``hindsight_*`` entries of ``config["configurable"]`` as validated settings (prefix removed).

    Entries whose value is None are ignored. A bad one raises :class:`ConfigurationError` naming the key.
    """
    configurable = (config or {}).get("configurable") or {}
    found: dict[str, Any] = {}
    for key, value in configurable.items():
        if not isinstance(key, str) or not key.startswith(CONFIG_PREFIX) or value is None:
            continue
        name = _setting_name(key)
        try:
            found.update(validate_options({name: value}))
        except ConfigurationError as exc:
            raise ConfigurationError(f"config['configurable'][{key!r}]: {exc}") from None
    return found


def resolve(defaults: Mapping[str, Any], per_call: Mapping[str, Any], *, missing_bank: str) -> MemorySettings:
    """The settings of one call; raises :class:`ConfigurationError` (``missing_bank``) when no layer names a
    bank."""
    settings = LAYERS.resolve({**defaults, **per_call})
    if not settings.bank_id:
        raise ConfigurationError(missing_bank)
    return settings


_set_up: set[tuple[str, str, str | None, str | None]] = set()
_set_up_lock = threading.Lock()


def bank_to_set_up(settings: MemorySettings) -> bool:
    """Whether the caller should create/update the call's bank now (the core's ``ensure_bank``): the first
    time in this process that a bank is used with a ``mission`` or ``bank_name``. Never in a constructor,
    which does no I/O."""
    if not settings.bank_id or not (settings.mission or settings.bank_name):
        return False
    key = (settings.connection.base_url, settings.bank_id, settings.mission, settings.bank_name)
    with _set_up_lock:
        if key in _set_up:
            return False
        _set_up.add(key)
        return True
