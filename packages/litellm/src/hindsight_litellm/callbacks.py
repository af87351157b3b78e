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
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from ._messages import openai_reply, to_message_dicts
from .config import LAYERS, PIPELINE
from .integration import is_enabled

__all__ = ["HindsightCallback", "cleanup_callback", "get_callback"]


class HindsightCallback(CustomLogger):
    """Stores the conversations of successful LiteLLM calls made while memory is not active."""

    def _store(self, kwargs: dict[str, Any], response: Any) -> None:
        if is_enabled():
            return  # the memory wrappers store these calls themselves
        settings = LAYERS.resolve()
        if not settings.bank_id or not settings.store_conversations:
            return
        messages = to_message_dicts(kwargs.get("messages") or [])
        call = PIPELINE.prepare(
            messages, settings.model_copy(update={"inject_memories": False}), model=kwargs.get("model")
        )
        PIPELINE.finish(call, openai_reply(response))

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._store(kwargs, response_obj)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._store(kwargs, response_obj)

    def close(self) -> None:
        """Remove this callback from ``litellm.callbacks``."""
        import litellm

        for registry in (litellm.callbacks, litellm.success_callback, litellm._async_success_callback):
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
