"""Hindsight long-term memory for LangChain: ``RunnableWithHindsight`` for any runnable that takes messages,
and ``HindsightMiddleware`` for ``langchain.agents.create_agent`` (needs the ``agents`` extra).

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
from .runnable import RunnableWithHindsight

if TYPE_CHECKING:
    from .middleware import HindsightMiddleware

__all__ = [
    "BANK_KEY",
    "SESSION_KEY",
    "ConfigurationError",
    "HindsightError",
    "HindsightMiddleware",
    "InjectionDebugInfo",
    "RunnableWithHindsight",
    "aflush_storage",
    "clear_last_debug",
    "flush_storage",
    "get_last_injection_debug",
    "get_pending_storage_errors",
]


def __getattr__(name: str) -> Any:
    # The middleware needs ``langchain`` (the ``agents`` extra); import it only when asked for.
    if name == "HindsightMiddleware":
        from .middleware import HindsightMiddleware

        return HindsightMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
