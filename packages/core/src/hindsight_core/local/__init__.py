"""A real Hindsight server on loopback, offline: provision it once, start it, stop it.

See ``docs/local-server.md``. The command line is ``hindsight-local`` (:mod:`hindsight_core.local.cli`);
the loopback embeddings endpoint the server uses is :mod:`hindsight_core.local.embeddings`.
"""

from hindsight_core.local.errors import LocalServerError, Step
from hindsight_core.local.installer import (
    EMBEDDER_REQUIREMENT,
    SERVER_REQUIREMENT,
    SERVER_VERSION,
    ServerInstall,
    default_home,
    installed,
    provision,
)
from hindsight_core.local.models import ServerModels, resolve_models
from hindsight_core.local.server import (
    DEFAULT_STARTUP_TIMEOUT,
    LocalHindsightServer,
    RunState,
    check_health,
    cleanup_stale_runs,
    load_state,
    local_server,
    stop_run,
)

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "EMBEDDER_REQUIREMENT",
    "SERVER_REQUIREMENT",
    "SERVER_VERSION",
    "LocalHindsightServer",
    "LocalServerError",
    "RunState",
    "ServerInstall",
    "ServerModels",
    "Step",
    "check_health",
    "cleanup_stale_runs",
    "default_home",
    "installed",
    "load_state",
    "local_server",
    "provision",
    "resolve_models",
    "stop_run",
]
