"""Provider-neutral core of the Hindsight memory integrations.

The public names are re-exported here; the modules behind them are implementation detail. Each is imported
when first used (PEP 562), so ``import hindsight_core`` loads neither httpx nor pydantic, and
``from hindsight_core import MemoryPipeline`` loads what the pipeline needs, once, at that point.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY: dict[str, str] = {
    "AsyncHindsightClient": "client",
    "DEFAULT_BASE_URL": "client",
    "HindsightClient": "client",
    "RetryPolicy": "client",
    "Timeouts": "client",
    "Connection": "connection",
    "InjectionDebugInfo": "debug",
    "clear_last_debug": "debug",
    "get_last_debug": "debug",
    "APIConnectionError": "errors",
    "APIError": "errors",
    "APIResponseValidationError": "errors",
    "APIStatusError": "errors",
    "APITimeoutError": "errors",
    "AuthenticationError": "errors",
    "BadRequestError": "errors",
    "ConfigurationError": "errors",
    "ConflictError": "errors",
    "HindsightError": "errors",
    "NotConfiguredError": "errors",
    "NotFoundError": "errors",
    "PermissionDeniedError": "errors",
    "RateLimitError": "errors",
    "ServerError": "errors",
    "StorageError": "errors",
    "UnprocessableEntityError": "errors",
    "MemoryCall": "memory",
    "MemoryPipeline": "memory",
    "Bank": "models",
    "BankConfig": "models",
    "BankProfile": "models",
    "Budget": "models",
    "DeleteResult": "models",
    "Health": "models",
    "RecallResponse": "models",
    "RecallResult": "models",
    "ReflectFact": "models",
    "ReflectResponse": "models",
    "RetainItem": "models",
    "RetainResponse": "models",
    "TagsMatch": "models",
    "UpdateMode": "models",
    "InjectionMode": "pipeline",
    "MemorySettings": "settings",
    "SettingsLayers": "settings",
    "StorageFailure": "storage",
    "StorageResult": "storage",
    "StorageWorker": "storage",
    "Turn": "storage",
    "default_worker": "storage",
    "MEMORY_TOOLS": "tools",
    "MemoryTool": "tools",
    "MemoryToolRunner": "tools",
    "ToolResult": "tools",
}
"""Public name -> the module (relative to this package) that defines it. A new public name goes here, in
the ``TYPE_CHECKING`` block (for type checkers) and in ``__all__``; tests/core/test_imports.py checks that
the three agree.
"""

if TYPE_CHECKING:
    from .client import DEFAULT_BASE_URL, AsyncHindsightClient, HindsightClient, RetryPolicy, Timeouts
    from .connection import Connection
    from .debug import InjectionDebugInfo, clear_last_debug, get_last_debug
    from .errors import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        ConflictError,
        HindsightError,
        NotConfiguredError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ServerError,
        StorageError,
        UnprocessableEntityError,
    )
    from .memory import MemoryCall, MemoryPipeline
    from .models import (
        Bank,
        BankConfig,
        BankProfile,
        Budget,
        DeleteResult,
        Health,
        RecallResponse,
        RecallResult,
        ReflectFact,
        ReflectResponse,
        RetainItem,
        RetainResponse,
        TagsMatch,
        UpdateMode,
    )
    from .pipeline import InjectionMode
    from .settings import MemorySettings, SettingsLayers
    from .storage import StorageFailure, StorageResult, StorageWorker, Turn, default_worker
    from .tools import MEMORY_TOOLS, MemoryTool, MemoryToolRunner, ToolResult

__all__ = [
    "DEFAULT_BASE_URL",
    "MEMORY_TOOLS",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncHindsightClient",
    "AuthenticationError",
    "BadRequestError",
    "Bank",
    "BankConfig",
    "BankProfile",
    "Budget",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "DeleteResult",
    "Health",
    "HindsightClient",
    "HindsightError",
    "InjectionDebugInfo",
    "InjectionMode",
    "MemoryCall",
    "MemoryPipeline",
    "MemorySettings",
    "MemoryTool",
    "MemoryToolRunner",
    "NotConfiguredError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RecallResponse",
    "RecallResult",
    "ReflectFact",
    "ReflectResponse",
    "RetainItem",
    "RetainResponse",
    "RetryPolicy",
    "ServerError",
    "SettingsLayers",
    "StorageError",
    "StorageFailure",
    "StorageResult",
    "StorageWorker",
    "TagsMatch",
    "Timeouts",
    "ToolResult",
    "Turn",
    "UnprocessableEntityError",
    "UpdateMode",
    "__version__",
    "clear_last_debug",
    "default_worker",
    "get_last_debug",
]

if not TYPE_CHECKING:  # type checkers see the imports above; at run time names are loaded on first use

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # the next access is an ordinary attribute lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
