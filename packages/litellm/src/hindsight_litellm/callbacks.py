"""``HindsightCallback``: a LiteLLM ``CustomLogger`` that stores conversations LiteLLM logs.

Kept for code written against hindsight-litellm 0.5.4, which registered it in ``litellm.callbacks``.
A logging callback cannot change what a synchronous call sends, so it never injects memory: use
``enable()`` or ``hindsight_litellm.completion()`` for that (they also store, so the callback skips calls
made while memory is active, and nothing is stored twice). What it adds: conversations of LiteLLM calls
that do not pass through ``litellm.completion``/``acompletion`` (a ``litellm.Router``, for example) are
stored with the configured settings.

Importing this module imports LiteLLM.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from hindsight_core import HindsightError
from hindsight_core.settings import MemorySettings

from ._messages import openai_reply, to_message_dicts
from .config import LAYERS, PIPELINE

__all__ = ["HindsightCallback", "HindsightError", "cleanup_callback", "get_callback", "memory_call_id"]

_MAX_MEMORY_CALLS = 10_000
_memory_calls: OrderedDict[str, None] = OrderedDict()
_memory_calls_lock = threading.Lock()


def memory_call_id(kwargs: Mapping[str, Any]) -> str:
    """The ``litellm_call_id`` to send with a LiteLLM call the memory wrappers make (the caller's own, else
    a new one), remembered so that :class:`HindsightCallback` does not store that call a second time.

    LiteLLM hands the id to every callback of the call, whatever thread, task or stream logs it, which a
    process flag or a context variable cannot guarantee (a sync stream is logged from a thread pool that
    does not carry the caller's context).
    """
    given = kwargs.get("litellm_call_id")
    call_id = given if isinstance(given, str) and given else str(uuid.uuid4())
    with _memory_calls_lock:
        _memory_calls[call_id] = None
        _memory_calls.move_to_end(call_id)
        while len(_memory_calls) > _MAX_MEMORY_CALLS:
            _memory_calls.popitem(last=False)
    return call_id


def _is_memory_call(kwargs: Mapping[str, Any]) -> bool:
    call_id = kwargs.get("litellm_call_id")
    with _memory_calls_lock:
        return isinstance(call_id, str) and call_id in _memory_calls


# LiteLLM copies a CustomLogger registered in ``litellm.callbacks`` into these lists on the next call.
_REGISTRIES = (
    "callbacks",
    "input_callback",
    "success_callback",
    "_async_success_callback",
    "failure_callback",
    "_async_failure_callback",
    "service_callback",
)


class HindsightCallback(CustomLogger):
    """Stores the conversations of successful LiteLLM calls made while memory is not active."""

    @staticmethod
    def _exchange(kwargs: dict[str, Any]) -> tuple[MemorySettings, list[dict[str, Any]]] | None:
        if _is_memory_call(kwargs):
            return None  # the memory wrappers store these calls themselves
        settings = LAYERS.resolve()
        if not settings.bank_id or not settings.store_conversations:
            return None
        return settings, to_message_dicts(kwargs.get("messages") or [])

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        exchange = self._exchange(kwargs)
        if exchange is not None:
            PIPELINE.store(exchange[1], openai_reply(response_obj), exchange[0], model=kwargs.get("model"))

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        exchange = self._exchange(kwargs)
        if exchange is not None:
            await PIPELINE.astore(
                exchange[1], openai_reply(response_obj), exchange[0], model=kwargs.get("model")
            )

    def close(self) -> None:
        """Remove this callback from ``litellm.callbacks`` and every list LiteLLM copied it into."""
        import litellm

        for name in _REGISTRIES:
            registry = getattr(litellm, name, None)
            if isinstance(registry, list):
                while self in registry:
                    registry.remove(self)


_lock = threading.Lock()
_instance: list[HindsightCallback] = []


def get_callback() -> HindsightCallback:
    """The shared callback instance (register it with ``litellm.callbacks.append(get_callback())``)."""
    with _lock:
        if not _instance:
            _instance.append(HindsightCallback())
        return _instance[0]


def cleanup_callback() -> None:
    """Unregister and drop the shared callback instance."""
    with _lock:
        if _instance:
            _instance.pop().close()
