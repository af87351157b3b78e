"""Settings: one validated model for everything a call can be told, and the layers it is resolved from.

Lowest to highest precedence::

    defaults < environment < configured defaults < scoped override < per-call

- environment: ``HINDSIGHT_API_URL``, ``HINDSIGHT_API_KEY``, ``HINDSIGHT_BANK_ID``;
- configured defaults: what the application set once (``configure()`` / ``set_defaults()``);
- scoped override: a ``with layers.scope(bank_id=...)`` block, held in a ``contextvars.ContextVar``, so it
  is seen only by the thread or asyncio task that opened it (and tasks it starts), never by concurrent
  requests of other users;
- per-call: options passed with one call (``hindsight_bank_id=...``).

Each layer is validated when it is set, so a bad value fails at configuration time with a message that
names the option and the allowed values; resolving the layers for a call is a dict merge.
"""

from __future__ import annotations

import contextvars
import difflib
import fnmatch
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .client import RetryPolicy, Timeouts
from .connection import Connection
from .errors import ConfigurationError
from .models import Budget, TagsMatch
from .pipeline.inject import InjectionMode

__all__ = [
    "ENV_VARS",
    "FACT_TYPES",
    "MemorySettings",
    "SettingsLayers",
    "server_fact_type",
    "validate_options",
]

FACT_TYPES = ("world", "experience", "observation")
_FACT_TYPE_ALIASES = {"agent": "experience", "opinion": "observation", "observations": "observation"}


def server_fact_type(name: object) -> str | None:
    """The server's name for a fact type given by a user (None when it is not one)."""
    if not isinstance(name, str):
        return None
    lowered = name.strip().lower()
    lowered = _FACT_TYPE_ALIASES.get(lowered, lowered)
    return lowered if lowered in FACT_TYPES else None


ENV_VARS = {
    "HINDSIGHT_API_URL": "hindsight_api_url",
    "HINDSIGHT_API_KEY": "api_key",
    "HINDSIGHT_BANK_ID": "bank_id",
}


class MemorySettings(BaseModel):
    """Everything that decides what one call does with memory."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_assignment=True)

    # Where the server is and how to talk to it.
    hindsight_api_url: str | None = None
    api_key: SecretStr | None = None
    connect_timeout: float = Field(default=2.0, gt=0)
    recall_timeout: float = Field(default=5.0, gt=0)
    reflect_timeout: float = Field(default=60.0, gt=0)
    retain_timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)

    # Which memory.
    bank_id: str | None = None
    bank_name: str | None = None
    mission: str | None = None
    session_id: str | None = None
    document_id: str | None = None

    # What to do.
    store_conversations: bool = True
    inject_memories: bool = True
    injection_mode: InjectionMode = InjectionMode.SYSTEM_MESSAGE
    use_reflect: bool = False
    reflect_context: str | None = None
    reflect_include_facts: bool = False
    reflect_response_schema: dict[str, Any] | None = None
    query: str | None = None
    excluded_models: tuple[str, ...] | None = None

    # How much.
    max_memories: int | None = Field(default=None, ge=0)
    max_memory_tokens: int | None = Field(default=4096, ge=1)
    budget: Budget = "mid"
    fact_types: tuple[str, ...] | None = None
    include_entities: bool = True
    trace: bool = False

    # Tags: written on stored conversations, and filtering recall.
    tags: tuple[str, ...] | None = None
    recall_tags: tuple[str, ...] | None = None
    recall_tags_match: TagsMatch = "any"

    # Behaviour.
    verbose: bool = False
    strict: bool = False
    sync_storage: bool = False

    @field_validator("hindsight_api_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @field_validator("bank_id", "session_id", "document_id")
    @classmethod
    def _check_identifier(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a non-empty string or None")
        return value

    @field_validator("fact_types", mode="before")
    @classmethod
    def _check_fact_types(cls, value: Any) -> Any:
        # Kept as the user gave them (``get_defaults().fact_types`` reads them back unchanged); translated
        # to the server's names on the wire only (:attr:`server_fact_types`).
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ValueError(f"must be a list of fact type names, got {type(value).__name__}")
        for item in value:
            if server_fact_type(item) is None:
                allowed = ", ".join(FACT_TYPES)
                raise ValueError(
                    f"unknown fact type {item!r}; allowed: {allowed} "
                    "(and 'agent' for 'experience', 'opinion' for 'observation')"
                )
        return tuple(value)

    @field_validator("tags", "recall_tags", "excluded_models", mode="before")
    @classmethod
    def _check_string_list(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return (value,)
        if not all(isinstance(item, str) for item in value):
            raise ValueError("must be a list of strings")
        return tuple(value)

    @field_validator("injection_mode", mode="before")
    @classmethod
    def _check_mode(cls, value: Any) -> Any:
        if isinstance(value, InjectionMode):
            return value
        try:
            return InjectionMode(str(getattr(value, "value", value)).lower())
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in InjectionMode)
            raise ValueError(f"must be one of {allowed}, got {value!r}") from None

    # ------------------------------------------------------------------------------------------ derived

    @property
    def connection(self) -> Connection:
        """The server connection these settings describe."""
        return Connection(
            base_url=self.hindsight_api_url or Connection.from_env().base_url,
            api_key=self.api_key.get_secret_value() if self.api_key is not None else None,
            timeouts=Timeouts(
                connect=self.connect_timeout,
                recall=self.recall_timeout,
                reflect=self.reflect_timeout,
                retain=self.retain_timeout,
            ),
            retry=RetryPolicy(max_retries=self.max_retries),
        )

    @property
    def effective_document_id(self) -> str | None:
        """The document a conversation is stored under: ``session_id``, else the deprecated
        ``document_id`` (hindsight-litellm 0.5.4's precedence)."""
        return self.session_id or self.document_id

    @property
    def server_fact_types(self) -> tuple[str, ...] | None:
        """``fact_types`` in the server's names (``agent`` -> ``experience``, ``opinion`` ->
        ``observation``), each once, in the order given."""
        if self.fact_types is None:
            return None
        names: list[str] = []
        for item in self.fact_types:
            name = server_fact_type(item)
            if name is not None and name not in names:
                names.append(name)
        return tuple(names)

    @property
    def mode(self) -> Literal["recall", "reflect"]:
        return "reflect" if self.use_reflect else "recall"

    def is_excluded(self, model: str | None) -> bool:
        """Whether ``model`` matches one of ``excluded_models`` (glob patterns, case-insensitive), as given
        or without its provider prefix (``gpt-3.5*`` excludes ``openai/gpt-3.5-turbo`` too)."""
        if not model or not self.excluded_models:
            return False
        names = {model.lower(), model.lower().rsplit("/", 1)[-1]}
        return any(
            fnmatch.fnmatchcase(name, pattern.lower()) for pattern in self.excluded_models for name in names
        )


_FIELDS = frozenset(MemorySettings.model_fields)


def validate_options(values: Mapping[str, Any], *, where: str = "option") -> dict[str, Any]:
    """Validate some settings on their own; returns them normalised. Raises :class:`ConfigurationError`."""
    unknown = [key for key in values if key not in _FIELDS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(_FIELDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known options: {', '.join(sorted(_FIELDS))}"
        raise ConfigurationError(f"unknown {where} {key!r}{hint}")
    try:
        model = MemorySettings(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "value"
        message = str(error["msg"]).removeprefix("Value error, ")
        given = values.get(name, error.get("input"))
        shown = "'***'" if name == "api_key" else repr(given)
        raise ConfigurationError(f"invalid {where} {name!r}: {message} (got {shown})") from None
    return {key: getattr(model, key) for key in values}


_env_cache: dict[tuple[str | None, ...], dict[str, Any]] = {}


def _environment() -> dict[str, Any]:
    raw = tuple(os.environ.get(variable) for variable in ENV_VARS)
    cached = _env_cache.get(raw)
    if cached is None:
        found = {name: value for name, value in zip(ENV_VARS.values(), raw, strict=True) if value}
        cached = validate_options(found, where="environment setting") if found else {}
        _env_cache.clear()
        _env_cache[raw] = cached
    return dict(cached)


_Scopes = tuple[tuple[dict[str, Any], frozenset[str] | None], ...]


class SettingsLayers:
    """The configured defaults of one integration, its scoped overrides, and their resolution."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._configured: dict[str, Any] = {}
        self._scope: contextvars.ContextVar[_Scopes] = contextvars.ContextVar(
            f"hindsight_scope_{name}", default=()
        )

    def configure(self, values: Mapping[str, Any], *, replace: bool = False) -> None:
        """Set configured defaults (merged into the existing ones unless ``replace``)."""
        validated = validate_options(values)
        with self._lock:
            self._configured = validated if replace else {**self._configured, **validated}

    def reset(self) -> None:
        with self._lock:
            self._configured = {}

    @property
    def configured(self) -> Mapping[str, Any]:
        """The configured defaults (validated values, as set)."""
        return dict(self._configured)

    @contextmanager
    def scope(self, values: Mapping[str, Any], *, inherit: Iterable[str] | None = None) -> Iterator[None]:
        """Override settings for the current thread/task (and tasks started inside) until the block ends.

        By default the block changes only the options in ``values``. With ``inherit`` it is a complete
        configuration of its own: inside it, only the options named in ``inherit`` keep the values of the
        layers below (configured defaults, enclosing blocks); every other option not in ``values`` has its
        default (or environment) value."""
        validated = validate_options(values)
        entry = (validated, frozenset(inherit) if inherit is not None else None)
        token = self._scope.set((*self._scope.get(), entry))
        try:
            yield
        finally:
            self._scope.reset(token)

    @property
    def scoped(self) -> tuple[Mapping[str, Any], ...]:
        """The scoped overrides active in this context, outermost first."""
        return tuple(values for values, _ in self._scope.get())

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> MemorySettings:
        """The settings for one call: every layer merged, ``overrides`` (per-call options) on top."""
        merged = _environment()
        merged.update(self._configured)
        for layer, inherit in self._scope.get():
            if inherit is not None:
                below = merged
                merged = _environment()
                merged.update({key: value for key, value in below.items() if key in inherit})
            merged.update(layer)
        if overrides:
            merged.update(validate_options(overrides))
        return MemorySettings.model_construct(**merged)
