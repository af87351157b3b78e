"""Persistent memory for any LLM through LiteLLM, backed by a Hindsight server.

    import hindsight_litellm

    hindsight_litellm.configure(hindsight_api_url="http://localhost:8888", bank_id="my-agent")
    hindsight_litellm.enable()
    response = hindsight_litellm.completion(model="gpt-4o-mini", messages=[...])

Importing this package does not import LiteLLM (which takes seconds); that happens on first use.
See docs/litellm.md.
"""

from __future__ import annotations

from typing import Any

from hindsight_core import HindsightError
from hindsight_core.debug import InjectionDebugInfo

from .config import (
    HindsightCallSettings,
    HindsightConfig,
    HindsightDefaults,
    MemoryInjectionMode,
    configure,
    get_config,
    get_defaults,
    is_configured,
    reset_config,
    set_bank_mission,
    set_defaults,
)
from .integration import (
    acompletion,
    cleanup,
    clear_injection_debug,
    completion,
    disable,
    enable,
    get_last_injection_debug,
    get_pending_retain_errors,
    get_pending_storage_errors,
    hindsight_memory,
    is_enabled,
)
from .memory_api import (
    RecallDebugInfo,
    RecallResponse,
    RecallResult,
    ReflectDebugInfo,
    ReflectResult,
    RetainDebugInfo,
    RetainResult,
    arecall,
    areflect,
    aretain,
    recall,
    reflect,
    retain,
)
from .wrappers import HindsightAnthropic, HindsightOpenAI, wrap_anthropic, wrap_openai

__version__ = "0.6.0"

__all__ = [
    "HindsightAnthropic",
    "HindsightCallSettings",
    "HindsightCallback",
    "HindsightConfig",
    "HindsightDefaults",
    "HindsightError",
    "HindsightOpenAI",
    "InjectionDebugInfo",
    "MemoryInjectionMode",
    "RecallDebugInfo",
    "RecallResponse",
    "RecallResult",
    "ReflectDebugInfo",
    "ReflectResult",
    "RetainDebugInfo",
    "RetainResult",
    "__version__",
    "acompletion",
    "arecall",
    "areflect",
    "aretain",
    "cleanup",
    "cleanup_callback",
    "clear_injection_debug",
    "completion",
    "configure",
    "disable",
    "enable",
    "get_callback",
    "get_config",
    "get_defaults",
    "get_last_injection_debug",
    "get_pending_retain_errors",
    "get_pending_storage_errors",
    "hindsight_memory",
    "is_configured",
    "is_enabled",
    "recall",
    "reflect",
    "reset_config",
    "retain",
    "set_bank_mission",
    "set_defaults",
    "wrap_anthropic",
    "wrap_openai",
]

_LAZY = {"HindsightCallback", "get_callback", "cleanup_callback"}


def __getattr__(name: str) -> Any:
    # The LiteLLM callback class subclasses LiteLLM's CustomLogger: importing it imports LiteLLM.
    if name in _LAZY:
        from . import callbacks

        return getattr(callbacks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
