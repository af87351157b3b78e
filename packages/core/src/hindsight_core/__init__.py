"""Provider-neutral core of the Hindsight memory integrations.

The public names are re-exported here; the modules behind them are implementation detail.
"""

from ._version import __version__
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
