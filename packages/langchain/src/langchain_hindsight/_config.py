"""Settings for one call: the component's validated options, then per-call options from the run's config.

Layers, lowest to highest (resolved by the core's :class:`~hindsight_core.settings.SettingsLayers`):
environment (``HINDSIGHT_API_URL``, ``HINDSIGHT_API_KEY``, ``HINDSIGHT_BANK_ID``) < the options given to the
component's constructor < per-call options (``config["configurable"]["hindsight_<setting>"]``, and for the
agent middleware the runtime context).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.utils import ConfigurableFieldSpec

from hindsight_core.errors import ConfigurationError
from hindsight_core.settings import MemorySettings, SettingsLayers, validate_options

__all__ = [
    "BANK_KEY",
    "CONFIG_PREFIX",
    "LAYERS",
    "SESSION_KEY",
    "bank_key_spec",
    "bank_to_set_up",
    "call_settings",
    "check_bank_key",
    "configurable_options",
    "missing_bank",
    "resolve",
    "thread_session",
    "use_config_bank",
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


def check_bank_key(key: Any, owner: str) -> str | None:
    """Validate a ``bank_id_from_config`` argument: None, or the name of a ``config["configurable"]`` key."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            f"{owner}: bank_id_from_config must be the name of a config['configurable'] key (e.g. "
            f"'user_id'), got {key!r}"
        )
    return key


def bank_key_spec(key: str) -> ConfigurableFieldSpec:
    """The ``config_specs`` entry of a ``bank_id_from_config`` key."""
    return ConfigurableFieldSpec(
        id=key,
        annotation=str,
        name=key,
        description=f"Also the Hindsight memory bank of the call (bank_id_from_config={key!r}).",
        default=None,
        is_shared=True,
    )


def use_config_bank(
    per_call: dict[str, Any], defaults: Mapping[str, Any], config: RunnableConfig | None, key: str | None
) -> dict[str, Any]:
    """``per_call`` with the bank taken from ``config["configurable"][key]`` when neither the call's own
    options nor the component's (a static ``bank_id``) name one. Accepts a string, an int or a UUID; anything
    else raises :class:`ConfigurationError` naming the key."""
    if key is None or per_call.get("bank_id") or defaults.get("bank_id"):
        return per_call
    value = ((config or {}).get("configurable") or {}).get(key)
    if value is None:
        return per_call
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)) or not str(value).strip():
        raise ConfigurationError(
            f"config['configurable'][{key!r}] names the Hindsight bank (bank_id_from_config={key!r}): it "
            f"must be a non-empty string (or an int or UUID), got {value!r:.60}"
        )
    return {**per_call, "bank_id": str(value)}


def missing_bank(message: str, key: str | None) -> str:
    """The "no bank" error of a component, naming its ``bank_id_from_config`` key first when it has one."""
    if key is None:
        return message
    return f"config['configurable'][{key!r}] is not set (bank_id_from_config={key!r}). {message}"


def thread_session(
    per_call: dict[str, Any], defaults: Mapping[str, Any], config: RunnableConfig | None
) -> dict[str, Any]:
    """``per_call`` with the run's ``thread_id`` as the session when nothing else names the conversation
    (with a checkpointer, each LangGraph thread is one stored conversation)."""
    if any(per_call.get(k) or defaults.get(k) for k in ("session_id", "document_id")):
        return per_call
    thread = ((config or {}).get("configurable") or {}).get("thread_id")
    return per_call if thread is None else {**per_call, "session_id": str(thread)}


def resolve(defaults: Mapping[str, Any], per_call: Mapping[str, Any], *, missing_bank: str) -> MemorySettings:
    """The settings of one call; raises :class:`ConfigurationError` (``missing_bank``) when no layer names a
    bank."""
    settings = LAYERS.resolve({**defaults, **per_call})
    if not settings.bank_id:
        raise ConfigurationError(missing_bank)
    return settings


def call_settings(
    defaults: Mapping[str, Any],
    config: RunnableConfig | None,
    *,
    bank_key: str | None,
    missing: str,
    overrides: Mapping[str, Any] | None = None,
) -> MemorySettings:
    """The settings of one call of a component run inside an agent or a graph. Bank, first found:
    ``overrides`` (e.g. the agent's runtime context), ``config["configurable"]["hindsight_bank_id"]``, the
    component's ``bank_id``, ``config["configurable"][bank_key]``, ``HINDSIGHT_BANK_ID``; else
    :class:`ConfigurationError` (``missing``, naming ``bank_key``). Session: ``overrides``, the config's
    ``hindsight_session_id``, the component's ``session_id``/``document_id``, else the run's ``thread_id``."""
    per_call = {**configurable_options(config), **(overrides or {})}
    per_call = use_config_bank(per_call, defaults, config, bank_key)
    per_call = thread_session(per_call, defaults, config)
    return resolve(defaults, per_call, missing_bank=missing_bank(missing, bank_key))


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
