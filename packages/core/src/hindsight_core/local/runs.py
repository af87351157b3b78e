"""A run's saved state, and stopping runs from any process (including runs whose owner died).

Each run has a directory ``<home>/runs/<name>/`` with one log per step and a ``state.json`` (ports, PIDs)
from which :func:`stop_run` can stop it, whichever process started it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from hindsight_core.local._process import pid_alive, read_json, stop_process, write_json
from hindsight_core.local.database import Pg0
from hindsight_core.local.installer import SERVER_VERSION, default_home

__all__ = [
    "RunState",
    "check_health",
    "cleanup_stale_runs",
    "load_state",
    "run_names",
    "runs_dir",
    "stop_run",
    "validate_run_name",
]

_log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_KEEP_STOPPED_RUNS = 20


@dataclasses.dataclass
class RunState:
    """What a run started, persisted as ``<run_dir>/state.json`` so any process can stop it."""

    name: str
    home: str
    run_dir: str
    owner_pid: int | None
    """The process whose exit should stop the run; None for a detached run (``hindsight-local start``)."""
    started_at: float
    server_version: str = SERVER_VERSION
    url: str | None = None
    startup_seconds: float | None = None
    api_port: int | None = None
    api_pid: int | None = None
    embeddings_port: int | None = None
    embeddings_pid: int | None = None
    embeddings_model: str | None = None
    """What serves the embeddings: the loopback model's name (``wordllama-...``, ``hashed-bow``), or
    ``<provider>/<model>`` when the provider's own embeddings are used."""
    embeddings_dimensions: int | None = None
    semantic_min_similarity: float | None = None
    """The server's semantic-search threshold for the loopback model (None: the server's default)."""
    llm: str | None = None
    """The server's LLM: ``mock``, or ``<provider>/<model>``."""
    database_port: int | None = None
    postgres_pid: int | None = None
    pg0_bin: str | None = None
    pg0_home: str | None = None
    pg0_user: str | None = None
    pg0_instance: str | None = None

    @property
    def state_path(self) -> Path:
        return Path(self.run_dir) / "state.json"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunState:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def save(self) -> None:
        write_json(self.state_path, self.to_dict())


def validate_run_name(name: str) -> str:
    """Return ``name`` if it can name a run (it becomes a directory and a pg0 instance), else ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid run name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def runs_dir(home: Path) -> Path:
    """Where the runs under ``home`` keep their directories."""
    return home / "runs"


def load_state(name: str, home: str | os.PathLike[str] | None = None) -> RunState | None:
    """The saved state of run ``name`` under ``home``, or None if it is not running (or unreadable)."""
    root = Path(home) if home is not None else default_home()
    data = read_json(runs_dir(root) / name / "state.json")
    if data is None:
        return None
    try:
        return RunState.from_dict(data)
    except TypeError:
        return None


def run_names(home: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the runs under ``home`` that have a saved state (started and not stopped)."""
    root = runs_dir(Path(home) if home is not None else default_home())
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if (entry / "state.json").is_file())


def check_health(url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET {url}/health`` answers 200 (proxies from the environment are ignored)."""
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            return client.get(url.rstrip("/") + "/health").status_code == 200
    except httpx.HTTPError:
        return False


# --- stopping and cleaning up ------------------------------------------------------------------------------


def stop_run(
    state: RunState,
    *,
    processes: Mapping[str, subprocess.Popen[bytes]] | None = None,
    grace: float = 10.0,
) -> None:
    """Stop what ``state`` records (API, embeddings, then PostgreSQL) and drop the database's data.

    ``processes`` are the ``Popen`` objects when the caller started them ("api", "embeddings"); without
    them a PID is only signalled if its command line still matches, so a recycled PID is never hit.
    The run's logs are kept; its ``state.json`` is removed.
    """
    known = processes or {}
    if state.api_pid is not None:
        stop_process(state.api_pid, popen=known.get("api"), expect="hindsight-api", grace=grace)
    if state.embeddings_pid is not None:
        stop_process(state.embeddings_pid, popen=known.get("embeddings"), expect="embeddings.py", grace=grace)
    if state.pg0_instance and state.pg0_home and state.pg0_bin:
        pg0 = Pg0(binary=Path(state.pg0_bin), home=Path(state.pg0_home), user=state.pg0_user)
        pg0.drop(
            state.pg0_instance,
            log_path=Path(state.run_dir) / "database.log",
            postgres_pid=state.postgres_pid,
            grace=grace,
        )
    state.state_path.unlink(missing_ok=True)


def cleanup_stale_runs(
    home: str | os.PathLike[str] | None = None,
    *,
    exclude: str | None = None,
    keep: int = _KEEP_STOPPED_RUNS,
) -> list[str]:
    """Stop runs whose owner process died without stopping them; prune old logs. Returns stopped names.

    Detached runs (no owner) are left alone. Of the stopped runs' directories, the ``keep`` newest stay.
    """
    root = runs_dir(Path(home) if home is not None else default_home())
    if not root.is_dir():
        return []
    stopped: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name == exclude or not entry.is_dir():
            continue
        state = load_state(entry.name, root.parent)
        if state is None or state.owner_pid is None or pid_alive(state.owner_pid):
            continue
        _log.info("stopping stale local Hindsight run %s (owner %s exited)", state.name, state.owner_pid)
        stop_run(state)
        stopped.append(state.name)
    finished = [
        entry
        for entry in root.iterdir()
        if entry.is_dir() and entry.name != exclude and not (entry / "state.json").exists()
    ]
    finished.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
    for entry in finished[keep:]:
        shutil.rmtree(entry, ignore_errors=True)
    return stopped
