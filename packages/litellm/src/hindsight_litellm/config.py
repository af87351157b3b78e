"""Configuration of the LiteLLM integration: ``configure()``, ``set_defaults()`` and their views.

The settings themselves live in a core :class:`~hindsight_core.settings.SettingsLayers` (one for this
integration): ``configure()`` replaces the configured defaults, ``set_defaults()`` changes some of them,
``hindsight_memory()`` overrides them for one thread or task, and ``hindsight_*`` keyword arguments for one
call. ``get_config()`` and ``get_defaults()`` return read-only snapshots shaped like hindsight-litellm 0.5.4's
``HindsightConfig`` and ``HindsightDefaults``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from hindsight_core import DEFAULT_BASE_URL, ConfigurationError, NotConfiguredError
from hindsight_core.memory import MemoryPipeline
from hindsight_core.pipeline import InjectionMode
from hindsight_core.settings import MemorySettings, SettingsLayers
from hindsight_core.warmup import warm_up

__all__ = [
    "DEFAULT_BANK_ID",
    "DEFAULT_HINDSIGHT_API_URL",
    "HINDSIGHT_API_KEY_ENV",
    "HindsightCallSettings",
    "HindsightConfig",
    "HindsightDefaults",
    "MemoryInjectionMode",
    "configure",
    "get_config",
    "get_defaults",
    "is_configured",
    "reset_config",
    "set_bank_mission",
    "set_defaults",
]

DEFAULT_HINDSIGHT_API_URL = DEFAULT_BASE_URL
"""Where memory lives when no URL is configured: Hindsight Cloud (``HINDSIGHT_API_URL`` overrides it)."""
DEFAULT_BANK_ID = "default"
"""The bank the SDK wrappers use when none is given or configured (as in hindsight-litellm 0.5.4)."""
HINDSIGHT_API_KEY_ENV = "HINDSIGHT_API_KEY"
"""The environment variable the API key is read from when none is configured."""

MemoryInjectionMode = InjectionMode
"""Where memories go: ``SYSTEM_MESSAGE`` (default) or ``PREPEND_USER`` (before the last user message)."""

LAYERS = SettingsLayers("litellm")
PIPELINE = MemoryPipeline(source="hindsight-litellm")

_state_lock = threading.Lock()
_state = {"configured": False}


@dataclass(frozen=True)
class HindsightDefaults:
    """The per-call defaults in effect (a snapshot; change them with ``set_defaults()``)."""

    bank_id: str | None = None
    session_id: str | None = None
    document_id: str | None = None
    store_conversations: bool = True
    inject_memories: bool = True
    injection_mode: InjectionMode = InjectionMode.SYSTEM_MESSAGE
    budget: str = "mid"
    fact_types: list[str] | None = None
    max_memories: int | None = None
    max_memory_tokens: int | None = 4096
    include_entities: bool = True
    trace: bool = False
    tags: list[str] | None = None
    recall_tags: list[str] | None = None
    recall_tags_match: str = "any"
    use_reflect: bool = False
    reflect_context: str | None = None
    reflect_response_schema: dict[str, Any] | None = None
    reflect_include_facts: bool = False
    query: str | None = None
    verbose: bool = False

    @property
    def effective_document_id(self) -> str | None:
        """The document conversations are stored under: ``session_id``, else the deprecated
        ``document_id``."""
        return self.session_id if self.session_id is not None else self.document_id

    @classmethod
    def from_settings(cls, settings: MemorySettings) -> HindsightDefaults:
        def listed(value: tuple[str, ...] | None) -> list[str] | None:
            return list(value) if value is not None else None

        return cls(
            bank_id=settings.bank_id,
            session_id=settings.session_id,
            document_id=settings.document_id,
            store_conversations=settings.store_conversations,
            inject_memories=settings.inject_memories,
            injection_mode=settings.injection_mode,
            budget=settings.budget,
            fact_types=listed(settings.fact_types),
            max_memories=settings.max_memories,
            max_memory_tokens=settings.max_memory_tokens,
            include_entities=settings.include_entities,
            trace=settings.trace,
            tags=listed(settings.tags),
            recall_tags=listed(settings.recall_tags),
            recall_tags_match=settings.recall_tags_match,
            use_reflect=settings.use_reflect,
            reflect_context=settings.reflect_context,
            reflect_response_schema=settings.reflect_response_schema,
            reflect_include_facts=settings.reflect_include_facts,
            query=settings.query,
            verbose=settings.verbose,
        )


HindsightCallSettings = HindsightDefaults


@dataclass(frozen=True)
class HindsightConfig:
    """The integration's configuration (a snapshot). The API key is never shown in its repr."""

    hindsight_api_url: str = DEFAULT_HINDSIGHT_API_URL
    api_key: str | None = field(default=None, repr=False)
    excluded_models: list[str] = field(default_factory=list)
    sync_storage: bool = False
    default_settings: HindsightDefaults = field(default_factory=HindsightDefaults)
    bank_name: str | None = None
    mission: str | None = None
    strict: bool = False
    recall_timeout: float = 5.0
    reflect_timeout: float = 60.0
    retain_timeout: float = 120.0
    max_retries: int = 2

    @property
    def bank_id(self) -> str | None:
        return self.default_settings.bank_id

    @property
    def store_conversations(self) -> bool:
        return self.default_settings.store_conversations

    @property
    def inject_memories(self) -> bool:
        return self.default_settings.inject_memories

    @property
    def injection_mode(self) -> InjectionMode:
        return self.default_settings.injection_mode

    @property
    def verbose(self) -> bool:
        return self.default_settings.verbose

    @classmethod
    def from_settings(cls, settings: MemorySettings) -> HindsightConfig:
        return cls(
            hindsight_api_url=settings.connection.base_url,
            api_key=settings.api_key.get_secret_value() if settings.api_key is not None else None,
            excluded_models=list(settings.excluded_models or ()),
            sync_storage=settings.sync_storage,
            default_settings=HindsightDefaults.from_settings(settings),
            bank_name=settings.bank_name,
            mission=settings.mission,
            strict=settings.strict,
            recall_timeout=settings.recall_timeout,
            reflect_timeout=settings.reflect_timeout,
            retain_timeout=settings.retain_timeout,
            max_retries=settings.max_retries,
        )


_P = ParamSpec("_P")
_R = TypeVar("_R")
_passed: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "hindsight_passed", default=frozenset()
)


def records_passed(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Let ``function`` know which of its arguments the caller actually passed (``passed_arguments()``),
    so that an argument left at its default does not override a value configured earlier."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        token = _passed.set(frozenset(signature.bind(*args, **kwargs).arguments))
        try:
            return function(*args, **kwargs)
        finally:
            _passed.reset(token)

    return wrapper


def passed_arguments() -> frozenset[str]:
    return _passed.get()


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


@records_passed
def configure(
    hindsight_api_url: str | None = None,
    api_key: str | None = None,
    excluded_models: list[str] | None = None,
    sync_storage: bool = False,
    mission: str | None = None,
    bank_name: str | None = None,
    bank_id: str | None = None,
    session_id: str | None = None,
    document_id: str | None = None,
    store_conversations: bool = True,
    inject_memories: bool = True,
    injection_mode: InjectionMode | str = InjectionMode.SYSTEM_MESSAGE,
    budget: str = "mid",
    fact_types: list[str] | None = None,
    max_memories: int | None = None,
    max_memory_tokens: int | None = 4096,
    include_entities: bool = True,
    trace: bool = False,
    tags: list[str] | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str = "any",
    use_reflect: bool = False,
    reflect_context: str | None = None,
    reflect_response_schema: dict[str, Any] | None = None,
    reflect_include_facts: bool = False,
    verbose: bool = False,
    *,
    recall_budget: str | None = None,
    strict: bool = False,
    recall_timeout: float | None = None,
    reflect_timeout: float | None = None,
    retain_timeout: float | None = None,
    max_retries: int | None = None,
) -> HindsightConfig:
    """Configure the integration and return the configuration now in effect.

    The options you pass are set; the others keep what an earlier ``configure()`` or ``set_defaults()``
    set (``reset_config()`` starts over). Options never set come from the environment
    (``HINDSIGHT_API_URL``, ``HINDSIGHT_API_KEY``, ``HINDSIGHT_BANK_ID``) or the defaults.
    ``recall_budget`` is another name for ``budget``. Once a mission or bank name and a bank are known
    (from this call or ``set_defaults()``), the bank is created or updated on the server (a failure is
    logged as a warning, or raised with ``strict=True``). Invalid values raise
    :class:`~hindsight_core.ConfigurationError` naming the option and what is allowed.
    """
    if recall_budget is not None:
        if budget not in ("mid", recall_budget):
            raise ConfigurationError(
                f"budget={budget!r} and recall_budget={recall_budget!r} disagree; pass one"
            )
        budget = recall_budget
    values = _given(
        {
            "hindsight_api_url": hindsight_api_url,
            "api_key": api_key,
            "excluded_models": excluded_models,
            "sync_storage": sync_storage,
            "mission": mission,
            "bank_name": bank_name,
            "bank_id": bank_id,
            "session_id": session_id,
            "document_id": document_id,
            "store_conversations": store_conversations,
            "inject_memories": inject_memories,
            "injection_mode": injection_mode,
            "budget": budget,
            "fact_types": fact_types,
            "max_memories": max_memories,
            "include_entities": include_entities,
            "trace": trace,
            "tags": tags,
            "recall_tags": recall_tags,
            "recall_tags_match": recall_tags_match,
            "use_reflect": use_reflect,
            "reflect_context": reflect_context,
            "reflect_response_schema": reflect_response_schema,
            "reflect_include_facts": reflect_include_facts,
            "verbose": verbose,
            "strict": strict,
            "recall_timeout": recall_timeout,
            "reflect_timeout": reflect_timeout,
            "retain_timeout": retain_timeout,
            "max_retries": max_retries,
        }
    )
    values["max_memory_tokens"] = max_memory_tokens  # None is meaningful here: no token limit
    passed = passed_arguments() | ({"budget"} if recall_budget is not None else set())
    values = {key: value for key, value in values.items() if key in passed}
    if document_id is not None:
        warn_document_id(stacklevel=4)
    with _state_lock:
        LAYERS.configure(values)
        _state["configured"] = True
    warm_up()
    return HindsightConfig.from_settings(_ensure_bank())


def set_defaults(
    bank_id: str | None = None,
    session_id: str | None = None,
    document_id: str | None = None,
    store_conversations: bool | None = None,
    inject_memories: bool | None = None,
    injection_mode: InjectionMode | str | None = None,
    budget: str | None = None,
    fact_types: list[str] | None = None,
    max_memories: int | None = None,
    max_memory_tokens: int | None = None,
    include_entities: bool | None = None,
    trace: bool | None = None,
    tags: list[str] | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str | None = None,
    use_reflect: bool | None = None,
    reflect_context: str | None = None,
    reflect_response_schema: dict[str, Any] | None = None,
    reflect_include_facts: bool | None = None,
    verbose: bool | None = None,
    **more: Any,
) -> HindsightDefaults:
    """Change some per-call defaults (``None`` leaves an option as it is); returns the defaults now in effect.

    Any other setting (``query``, ``excluded_models``, ``strict``, timeouts...) can be passed by name too.
    """
    values = _given(
        {
            "bank_id": bank_id,
            "session_id": session_id,
            "document_id": document_id,
            "store_conversations": store_conversations,
            "inject_memories": inject_memories,
            "injection_mode": injection_mode,
            "budget": budget,
            "fact_types": fact_types,
            "max_memories": max_memories,
            "max_memory_tokens": max_memory_tokens,
            "include_entities": include_entities,
            "trace": trace,
            "tags": tags,
            "recall_tags": recall_tags,
            "recall_tags_match": recall_tags_match,
            "use_reflect": use_reflect,
            "reflect_context": reflect_context,
            "reflect_response_schema": reflect_response_schema,
            "reflect_include_facts": reflect_include_facts,
            "verbose": verbose,
            **more,
        }
    )
    if document_id is not None:
        warn_document_id(stacklevel=3)
    with _state_lock:
        LAYERS.configure(values)
        _state["configured"] = True  # as in 0.5.4, set_defaults() alone configures (with the defaults)
    warm_up()
    return HindsightDefaults.from_settings(_ensure_bank())


def warn_document_id(*, stacklevel: int) -> None:
    """``document_id`` is the deprecated name of ``session_id`` (0.5.4 warned the same way)."""
    warnings.warn(
        "document_id is deprecated; use session_id instead.", DeprecationWarning, stacklevel=stacklevel
    )


_ensured: set[tuple[str, str, str | None, str | None]] = set()


def _ensure_bank() -> MemorySettings:
    """Create or update the bank when a mission or display name is configured and the bank is known,
    once per (server, bank, mission, name): the mission may come with ``configure()`` and the bank with
    ``set_defaults()``, in either order."""
    settings = LAYERS.resolve()
    if settings.bank_id and (settings.mission or settings.bank_name):
        key = (settings.connection.base_url, settings.bank_id, settings.mission, settings.bank_name)
        if key not in _ensured and PIPELINE.ensure_bank(settings):
            _ensured.add(key)
    return settings


def is_active_configuration() -> bool:
    """Whether a configuration is in effect here: ``configure()``/``set_defaults()`` was called, or this
    thread or task is inside a ``hindsight_memory()`` block."""
    return _state["configured"] or bool(LAYERS.scoped)


def get_config() -> HindsightConfig | None:
    """The configuration in effect (inside a ``hindsight_memory()`` block: the block's), or None before
    ``configure()``/``set_defaults()``."""
    return HindsightConfig.from_settings(LAYERS.resolve()) if is_active_configuration() else None


def get_defaults() -> HindsightDefaults | None:
    """The per-call defaults in effect (inside a ``hindsight_memory()`` block: the block's), or None before
    ``configure()``/``set_defaults()``."""
    return HindsightDefaults.from_settings(LAYERS.resolve()) if is_active_configuration() else None


def is_configured() -> bool:
    """Whether memory is configured and has a bank to use (``configure()``/``set_defaults()`` with a
    ``bank_id``, or ``HINDSIGHT_BANK_ID``; inside a ``hindsight_memory()`` block: the block's)."""
    return is_active_configuration() and bool(LAYERS.resolve().bank_id)


def reset_config() -> None:
    """Forget the configuration and the defaults (the environment still applies)."""
    with _state_lock:
        LAYERS.reset()
        _state["configured"] = False


def set_bank_mission(
    mission: str,
    *,
    bank_id: str | None = None,
    name: str | None = None,
    hindsight_api_url: str | None = None,
    api_key: str | None = None,
) -> None:
    """Create or update a bank's mission (and display name) on the server now. Raises on failure."""
    settings = LAYERS.resolve(
        _given(
            {"bank_id": bank_id, "hindsight_api_url": hindsight_api_url, "api_key": api_key, "strict": True}
        )
    )
    if not settings.bank_id:
        raise NotConfiguredError(
            "set_bank_mission needs a bank_id: pass bank_id=..., or configure(bank_id=...) / "
            "set_defaults(bank_id=...) first (or set HINDSIGHT_BANK_ID)"
        )
    PIPELINE.ensure_bank(settings.model_copy(update={"mission": mission, "bank_name": name}))
