"""Memory around LiteLLM calls: ``completion()``/``acompletion()``, ``enable()``/``disable()`` and the
``hindsight_memory()`` scope.

``completion()`` and ``acompletion()`` always go through memory: recall (or reflect) and inject once,
call LiteLLM's own function, store the exchange once. ``enable()`` puts the same wrappers in place of
``litellm.completion`` and ``litellm.acompletion``; the wrappers always call LiteLLM's originals, so a call
is never injected or stored twice whichever way it enters. While memory is not active (not enabled, and
outside any ``hindsight_memory()`` block) the patched functions only remove ``hindsight_*`` options and
call LiteLLM.

``hindsight_*`` keyword arguments are this integration's per-call options (``hindsight_bank_id``,
``hindsight_query``, ``hindsight_budget``...: any setting, with the prefix). They are always removed
before LiteLLM sees the call, so they never reach a provider.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from hindsight_core._logging import verbose_logger
from hindsight_core.connection import close_clients
from hindsight_core.debug import InjectionDebugInfo, clear_last_debug, get_last_debug
from hindsight_core.errors import NotConfiguredError, StorageError
from hindsight_core.pipeline import MEMORY_OPEN, InjectionMode, content_text
from hindsight_core.settings import MemorySettings, validate_options
from hindsight_core.warmup import warm_up

from ._calls import acall_with_memory, call_with_memory
from ._messages import openai_reply, to_message_dicts
from ._streams import OpenAICollector
from .config import (
    LAYERS,
    PIPELINE,
    is_active_configuration,
    passed_arguments,
    records_passed,
    reset_config,
    warn_document_id,
)

__all__ = [
    "acompletion",
    "cleanup",
    "clear_injection_debug",
    "completion",
    "disable",
    "enable",
    "get_last_injection_debug",
    "get_pending_retain_errors",
    "get_pending_storage_errors",
    "hindsight_memory",
    "is_enabled",
    "pop_hindsight_options",
]

PREFIX = "hindsight_"
_RENAMES = {"api_url": "hindsight_api_url", "recall_budget": "budget"}

_lock = threading.Lock()
_switch = {"enabled": False}  # process-wide: enable() is an application-level decision
_originals: dict[str, Callable[..., Any]] = {}


def pop_hindsight_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove every ``hindsight_*`` keyword from ``kwargs``; return them as settings (prefix removed)."""
    found: dict[str, Any] = {}
    for key in [k for k in kwargs if k.startswith(PREFIX)]:
        name = key[len(PREFIX) :]
        found[_RENAMES.get(name, name)] = kwargs.pop(key)
    return found


def _litellm(name: str) -> Callable[..., Any]:
    """LiteLLM's ``completion``/``acompletion`` as it is now (a user's mock or spy included), except that
    our own patched function is looked through to LiteLLM's original behind it, so that a call is never
    injected or stored twice."""
    import litellm

    function: Callable[..., Any] = getattr(litellm, name)
    return _original(name) if function is _PATCHED.get(name) else function


def _split_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """Model and messages of a ``litellm.completion(model, messages, ...)`` call, moved into ``kwargs``."""
    args_list = list(args)
    if args_list and "model" not in kwargs:
        kwargs["model"] = args_list.pop(0)
    if args_list and "messages" not in kwargs:
        kwargs["messages"] = args_list.pop(0)
    if args_list:
        raise TypeError(
            "hindsight_litellm: pass options other than model and messages by keyword "
            f"({len(args_list)} extra positional argument(s) given)"
        )
    model = kwargs.get("model")
    messages = to_message_dicts(kwargs.get("messages") or [])
    return (str(model) if model is not None else None), messages


def _send_arguments(kwargs: dict[str, Any], injected: list[dict[str, Any]]) -> dict[str, Any]:
    """The call as LiteLLM gets it: the injected messages, and a ``litellm_call_id`` that marks it as
    handled by memory (so ``HindsightCallback`` never stores it again; LiteLLM does not send it on)."""
    from .callbacks import memory_call_id  # imports LiteLLM, which this call is about to use anyway

    return {**kwargs, "messages": injected, "litellm_call_id": memory_call_id(kwargs)}


def _require_bank(settings: MemorySettings, model: str | None) -> None:
    """A configured integration with no bank for this call is a mistake to report, not to skip quietly:
    raise before anything is sent, as hindsight-litellm 0.5.4 did. (Unconfigured, the call goes on without
    memory and a warning says why.)"""
    if settings.bank_id or not is_active_configuration() or settings.is_excluded(model):
        return
    if settings.inject_memories or settings.store_conversations:
        raise NotConfiguredError(
            "No bank_id configured: call set_defaults(bank_id=...) (or configure(bank_id=...)), or pass "
            "hindsight_bank_id=... to the completion call"
        )


def completion(*args: Any, **kwargs: Any) -> Any:
    """``litellm.completion`` with memory: memories injected before the call, the exchange stored after.

    Takes everything ``litellm.completion`` takes, plus ``hindsight_*`` per-call options. With
    ``stream=True`` the chunks pass through as they come and the reply is stored when the stream ends.
    """
    settings = LAYERS.resolve(pop_hindsight_options(kwargs))
    model, messages = _split_call(args, kwargs)
    _require_bank(settings, model)

    def send(injected: list[dict[str, Any]]) -> Any:
        return _litellm("completion")(**_send_arguments(kwargs, injected))

    return call_with_memory(
        settings,
        messages,
        model,
        send,
        stream=bool(kwargs.get("stream")),
        reply=openai_reply,
        collector=OpenAICollector,
    )


async def acompletion(*args: Any, **kwargs: Any) -> Any:
    """``litellm.acompletion`` with memory (recall and storage never block the event loop)."""
    settings = LAYERS.resolve(pop_hindsight_options(kwargs))
    model, messages = _split_call(args, kwargs)
    _require_bank(settings, model)

    async def send(injected: list[dict[str, Any]]) -> Any:
        return await _litellm("acompletion")(**_send_arguments(kwargs, injected))

    return await acall_with_memory(
        settings,
        messages,
        model,
        send,
        stream=bool(kwargs.get("stream")),
        reply=openai_reply,
        collector=OpenAICollector,
    )


# ---------------------------------------------------------------------------------------- enable/disable


def _active() -> bool:
    return _switch["enabled"] or bool(LAYERS.scoped)


def _already_injected(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether memory already went into this call's messages: LiteLLM calls the patched functions again
    for ``fallbacks`` and retries, and those must get no second block and must not be stored twice."""
    messages = kwargs.get("messages", args[1] if len(args) > 1 else None)
    if not isinstance(messages, list):
        return False
    return any(isinstance(m, Mapping) and MEMORY_OPEN in content_text(m.get("content")) for m in messages)


def _original(name: str) -> Callable[..., Any]:
    """LiteLLM's own function behind our patch (what the patched function passes a call on to)."""
    original = _originals.get(name)
    if original is None:
        import litellm

        original = getattr(litellm, name)
    return original


def _patched_completion(*args: Any, **kwargs: Any) -> Any:
    if _active() and not _already_injected(args, kwargs):
        return completion(*args, **kwargs)
    pop_hindsight_options(kwargs)
    return _original("completion")(*args, **kwargs)


async def _patched_acompletion(*args: Any, **kwargs: Any) -> Any:
    if _active() and not _already_injected(args, kwargs):
        return await acompletion(*args, **kwargs)
    pop_hindsight_options(kwargs)
    return await _original("acompletion")(*args, **kwargs)


_PATCHED: dict[str, Callable[..., Any]] = {
    "completion": _patched_completion,
    "acompletion": _patched_acompletion,
}


def _install() -> None:
    """Put the memory wrappers in place of ``litellm.completion``/``acompletion`` (idempotent)."""
    import litellm

    with _lock:
        for name, patched in _PATCHED.items():
            if getattr(litellm, name) is not patched:
                _originals[name] = getattr(litellm, name)
                setattr(litellm, name, patched)


def _uninstall() -> None:
    """Give LiteLLM its own functions back (``cleanup()``). Until then the patched functions stay in place
    even while memory is off, as a filter that removes ``hindsight_*`` options (so they never reach a
    provider) and calls LiteLLM's own function."""
    import litellm

    with _lock:
        for name, patched in _PATCHED.items():
            if getattr(litellm, name) is patched and name in _originals:
                setattr(litellm, name, _originals[name])
        _originals.clear()


def _warn_if_callback_registered() -> None:
    import litellm

    from .callbacks import HindsightCallback

    registered = [
        callback
        for callback in (getattr(litellm, "callbacks", None) or [])
        if isinstance(callback, HindsightCallback)
    ]
    if registered:
        warnings.warn(
            "enable() found a HindsightCallback in litellm.callbacks: that is two memory paths for the same "
            "calls. enable() already injects and stores; remove the callback from litellm.callbacks (this "
            "integration never injects or stores a call twice, but the callback is not needed).",
            RuntimeWarning,
            stacklevel=3,
        )


def enable() -> None:
    """Give plain ``litellm.completion``/``litellm.acompletion`` calls memory, process-wide.

    Needs a configuration with a bank: ``configure()`` (and ``set_defaults(bank_id=...)`` or
    ``configure(bank_id=...)``) first, else :class:`~hindsight_core.NotConfiguredError` (a
    ``RuntimeError``) says what to call. Code that imported the functions by name before this call
    (``from litellm import completion``) keeps the unpatched function: call ``litellm.completion`` or
    ``hindsight_litellm.completion`` instead.
    """
    if not is_active_configuration():
        raise NotConfiguredError("Hindsight not configured: call configure() before enable().")
    settings = LAYERS.resolve()
    if not settings.bank_id:
        raise NotConfiguredError(
            "Hindsight bank_id not set: call set_defaults(bank_id=...) (or configure(bank_id=...)) "
            "before enable()."
        )
    _warn_if_callback_registered()
    _install()
    warm_up()
    _switch["enabled"] = True
    if settings.verbose:
        verbose_logger().info("Hindsight memory enabled for bank %r", settings.bank_id)


def disable() -> None:
    """Stop giving plain LiteLLM calls memory (``hindsight_litellm.completion()`` still uses it). Plain
    calls still have their ``hindsight_*`` options removed, so none reaches a provider; ``cleanup()`` gives
    LiteLLM its own functions back."""
    _switch["enabled"] = False


def is_enabled() -> bool:
    """Whether plain LiteLLM calls from here get memory (``enable()``d, or inside ``hindsight_memory()``)."""
    return _active()


def cleanup(timeout: float = 10.0) -> None:
    """Shut memory down: disable, restore LiteLLM's functions, remove the shared ``HindsightCallback``,
    wait up to ``timeout`` s for queued storage, close clients, and forget the configuration
    (``reset_config()``)."""
    disable()
    if "litellm" in sys.modules:
        _uninstall()
        from .callbacks import cleanup_callback

        cleanup_callback()
    PIPELINE.storage.flush(timeout=timeout)
    close_clients()
    reset_config()


@records_passed
def hindsight_memory(
    hindsight_api_url: str | None = None,
    bank_id: str | None = None,
    api_key: str | None = None,
    store_conversations: bool = True,
    inject_memories: bool = True,
    injection_mode: InjectionMode | str = InjectionMode.SYSTEM_MESSAGE,
    max_memories: int | None = None,
    max_memory_tokens: int | None = 4096,
    budget: str = "mid",
    fact_types: list[str] | None = None,
    document_id: str | None = None,
    session_id: str | None = None,
    excluded_models: list[str] | None = None,
    verbose: bool = False,
    include_entities: bool = True,
    trace: bool = False,
    use_reflect: bool = False,
    reflect_context: str | None = None,
    tags: list[str] | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str = "any",
    **more: Any,
) -> AbstractContextManager[None]:
    """Memory for plain ``litellm.completion``/``acompletion`` calls inside the block: a complete
    temporary configuration, as in hindsight-litellm 0.5.4.

    Inside the block, ``get_config()``, ``get_defaults()`` and ``is_enabled()`` report the block's
    settings, and every memory option the block does not pass has its default (not the configured value).
    One difference, on purpose: the server (``hindsight_api_url``, ``api_key``, timeouts, retries) and
    ``strict`` are inherited from ``configure()`` or the environment when the block does not pass them, so
    a block never sends conversations to another server than the one configured (0.5.4 switched to
    Hindsight Cloud without a key). A bank is needed (``bank_id=...`` or ``HINDSIGHT_BANK_ID``), else
    :class:`~hindsight_core.NotConfiguredError` (a ``RuntimeError``).

    The block is private to the current thread or asyncio task (and tasks it starts): concurrent users
    never see each other's bank. Blocks nest; on exit, also through an exception, everything is as it was.
    """
    values = {
        "hindsight_api_url": hindsight_api_url,
        "bank_id": bank_id,
        "api_key": api_key,
        "store_conversations": store_conversations,
        "inject_memories": inject_memories,
        "injection_mode": injection_mode,
        "max_memories": max_memories,
        "max_memory_tokens": max_memory_tokens,
        "budget": budget,
        "fact_types": fact_types,
        "document_id": document_id,
        "session_id": session_id,
        "excluded_models": excluded_models,
        "verbose": verbose,
        "include_entities": include_entities,
        "trace": trace,
        "use_reflect": use_reflect,
        "reflect_context": reflect_context,
        "tags": tags,
        "recall_tags": recall_tags,
        "recall_tags_match": recall_tags_match,
    }
    passed = passed_arguments()
    scoped = {key: value for key, value in values.items() if key in passed and value is not None}
    scoped.update(more)
    if document_id is not None:
        warn_document_id(stacklevel=4)
    return _memory_scope(validate_options(scoped))


INHERITED_IN_BLOCKS = (
    "hindsight_api_url",
    "api_key",
    "connect_timeout",
    "recall_timeout",
    "reflect_timeout",
    "retain_timeout",
    "max_retries",
    "strict",
)
"""What a ``hindsight_memory()`` block takes from the configuration when it does not pass it."""


@contextmanager
def _memory_scope(values: dict[str, Any]) -> Iterator[None]:
    with LAYERS.scope(values, inherit=INHERITED_IN_BLOCKS):
        if not LAYERS.resolve().bank_id:
            raise NotConfiguredError(
                "hindsight_memory() needs a bank: pass hindsight_memory(bank_id=...) "
                "(or set HINDSIGHT_BANK_ID)"
            )
        _install()
        warm_up()
        yield


# ------------------------------------------------------------------------------------------------- debug


def get_last_injection_debug() -> InjectionDebugInfo | None:
    """What memory did for the last call of this thread or asyncio task."""
    return get_last_debug()


def clear_injection_debug() -> None:
    """Forget the last debug record of this thread or task."""
    clear_last_debug()


def get_pending_storage_errors() -> list[StorageError]:
    """Conversations (and direct retains) that could not be stored, oldest first, as exceptions; each
    one's ``failure`` has the details (bank, document, turns, attempts) and ``permanent`` says if it was
    given up on. As in 0.5.4, the list is cleared once returned: a turn still being retried is reported
    again if its next attempt fails too."""
    storage = PIPELINE.storage
    errors = [failure.as_error() for failure in storage.pending_errors()]
    storage.clear_errors()
    return errors


get_pending_retain_errors = get_pending_storage_errors
