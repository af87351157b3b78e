"""Hindsight long-term memory for LangChain: ``RunnableWithHindsight`` for any runnable that takes messages,
``HindsightMiddleware`` for ``langchain.agents.create_agent`` (needs the ``agents`` extra); agent-driven
memory with ``create_hindsight_tools()``; LangGraph nodes ``create_recall_node()``/``create_retain_node()``.

Everything memory-specific (recall, rendering, token budget, injection, storage) is ``hindsight_core``'s;
this package translates LangChain messages and hooks into LangChain's extension points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hindsight_core.debug import InjectionDebugInfo, clear_last_debug
from hindsight_core.debug import get_last_debug as get_last_injection_debug
from hindsight_core.errors import ConfigurationError, HindsightError

from ._config import BANK_KEY, SESSION_KEY
from ._storage import aflush_storage, flush_storage, get_pending_storage_errors
from .nodes import MEMORY_MESSAGE_ID, create_recall_node, create_retain_node, is_memory_message
from .runnable import RunnableWithHindsight
from .tools import HindsightTool, create_hindsight_tools

if TYPE_CHECKING:
    from .middleware import HindsightMiddleware

__all__ = [
    "BANK_KEY",
    "MEMORY_MESSAGE_ID",
    "SESSION_KEY",
    "ConfigurationError",
    "HindsightError",
    "HindsightMiddleware",
    "HindsightTool",
    "InjectionDebugInfo",
    "RunnableWithHindsight",
    "aflush_storage",
    "clear_last_debug",
    "create_hindsight_tools",
    "create_recall_node",
    "create_retain_node",
    "flush_storage",
    "get_last_injection_debug",
    "get_pending_storage_errors",
    "is_memory_message",
]


def __getattr__(name: str) -> Any:
    # The middleware needs ``langchain`` (the ``agents`` extra); import it only when asked for.
    if name == "HindsightMiddleware":
        from .middleware import HindsightMiddleware

        return HindsightMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
