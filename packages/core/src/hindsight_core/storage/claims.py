"""Sharing one outbox directory between processes: each process owns its files, a live one adopts the dead's.

Several processes may use one outbox (``litellm --num_workers N``, replicas with one persistent volume): each
writes only files it owns, named ``<batch>.<owner>.json``, where the owner is this process's claim
(``p<pid>-<random>``). The claim is an exclusive ``flock`` on ``.owner-<owner>.lock`` in the directory, held
from the first write until the worker closes, and released by the kernel when the process dies, ``SIGKILL``
included. :func:`adopt` renames the files of every owner whose lock nobody holds (a dead or closed worker)
and the files of no owner (written before outboxes were shared) to this process's name, under the
directory-wide ``.adopt.lock``: two live processes never adopt the same file, and a file is sent by the
process whose name it bears only. Files named for an owner that has no lock file (a process that could
not lock) are taken over only once none of them changed for ten minutes. A forked child closes the claim
it inherited (the parent keeps it) and makes its own.

On a filesystem without file locks (some network or FUSE mounts) a process still writes and sends only its
own files, but adopts nothing: one WARNING says so. Local disks, NFSv4 and most cloud volumes have them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from types import ModuleType

__all__ = ["Claim", "adopt", "owner_of", "stem_of"]

logger = logging.getLogger("hindsight_core.storage")


def _fcntl() -> ModuleType | None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no locks, so no adoption
        return None
    return fcntl


fcntl = _fcntl()

_LOCK_PREFIX = ".owner-"
_ADOPT_LOCK = ".adopt.lock"


def owner_of(path: Path) -> str | None:
    """The owner in an outbox file's name (None: a file written before outboxes were shared)."""
    parts = path.name.split(".")
    return parts[-2] if len(parts) == 3 and parts[-1] == "json" else None


def stem_of(path: Path) -> str:
    """The batch name in an outbox file's name."""
    return path.name.split(".")[0]


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; False if another open file holds it."""
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Claim:
    """This process's ownership of its files in an outbox directory (see the module's documentation)."""

    _warned = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.owner = f"p{os.getpid()}-{secrets.token_hex(4)}"
        self.pid = os.getpid()
        self.locked = False
        self._fd: int | None = None
        if fcntl is None:
            self._no_locks("file locks are not available on this platform")
            return
        # Locked before it has its name: a lock file others can see is always held while its owner lives
        # (seen unlocked, it would be taken for a dead owner's and removed).
        path = directory / f"{_LOCK_PREFIX}{self.owner}.lock"
        temp = directory / f".claim-{self.owner}.tmp"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            self._no_locks(f"cannot create {temp.name}: {exc}")
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"pid {self.pid} on {socket.gethostname()}\n".encode())
            os.replace(temp, path)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            self._no_locks(f"{exc.strerror or exc}")
            return
        self._fd = fd
        self.locked = True

    def _no_locks(self, why: str) -> None:
        if not Claim._warned:
            Claim._warned = True
            logger.warning(
                "Hindsight storage: the outbox %s cannot be locked (%s): this process sends its own files "
                "only and does not take over those of other processes that stopped",
                self.directory,
                why,
            )

    def forget(self) -> None:
        """In a forked child: close the inherited claim without releasing it (it is the parent's)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.locked = False

    def release(self) -> None:
        """Let another process adopt what is left (the worker closed)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.close(fd)  # the lock goes with the last descriptor
        self.locked = False


def adopt(claim: Claim) -> list[Path]:
    """Rename the files of stopped owners (and of none) to ``claim``'s; the new paths, oldest first."""
    if not claim.locked or fcntl is None:
        return []
    directory = claim.directory
    moved: list[Path] = []
    try:
        root_fd = os.open(directory / _ADOPT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return []
    try:
        fcntl.flock(root_fd, fcntl.LOCK_EX)  # short: renames only
        files: dict[str | None, list[Path]] = {}
        locks: dict[str, Path] = {}
        for path in directory.iterdir():
            name = path.name
            if name.startswith(_LOCK_PREFIX) and name.endswith(".lock"):
                locks[name[len(_LOCK_PREFIX) : -len(".lock")]] = path
            elif name.endswith(".json") and not name.startswith("."):
                files.setdefault(owner_of(path), []).append(path)
        for owner in set(files) | set(locks):
            if owner == claim.owner:
                continue
            lock_path = locks.get(owner) if owner is not None else None
            if owner is not None and lock_path is None and not _stale(files.get(owner, [])):
                continue  # no lock (a process that could not lock): only files long untouched are taken
            fd = _open_quietly(lock_path)
            try:
                if fd is not None and not _try_lock(fd):
                    continue  # alive
                for path in files.get(owner, []):
                    target = directory / f"{stem_of(path)}.{claim.owner}.json"
                    with contextlib.suppress(FileNotFoundError):
                        path.rename(target)
                        moved.append(target)
                if lock_path is not None:
                    with contextlib.suppress(OSError):
                        lock_path.unlink()
            finally:
                if fd is not None:
                    os.close(fd)
    except OSError as exc:
        logger.error("Hindsight storage: cannot take over files in the outbox %s: %s", directory, exc)
    finally:
        os.close(root_fd)
    return sorted(moved)


_UNLOCKED_GRACE = 600.0
"""Seconds after which the files of an owner without a lock file are taken over."""


def _stale(paths: list[Path]) -> bool:
    now = time.time()
    try:
        return all(now - path.stat().st_mtime > _UNLOCKED_GRACE for path in paths)
    except OSError:
        return False


def _open_quietly(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDWR)
    except OSError:
        return None
