"""Process, port, lock and file helpers for the local server (POSIX only, standard library only)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "file_lock",
    "free_port",
    "pid_alive",
    "pid_matches",
    "read_json",
    "stop_process",
    "write_json",
]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, but belongs to another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] != "Z"


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None  # /proc works, so the process is gone
    except OSError:
        return None
    else:
        return raw.replace(b"\0", b" ").decode("utf-8", errors="replace")
    try:  # no /proc (macOS): ask ps
        result = subprocess.run(  # noqa: S603
            ["ps", "-o", "args=", "-p", str(pid)],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def pid_matches(pid: int, token: str) -> bool:
    """Whether live process ``pid`` has ``token`` in its command line (guards against PID reuse)."""
    if not pid_alive(pid):
        return False
    command = _cmdline(pid)
    return command is not None and token in command


def _send(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait(pid: int, popen: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if popen is not None:
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_process(
    pid: int,
    *,
    popen: subprocess.Popen[bytes] | None = None,
    expect: str | None = None,
    group: bool = True,
    grace: float = 10.0,
    first_signal: signal.Signals = signal.SIGTERM,
) -> None:
    """Stop ``pid``: ``first_signal``, then SIGKILL after ``grace`` seconds.

    With ``popen`` (we are its parent) the process is known to be ours and is reaped. Without it, the
    process is only signalled if its command line contains ``expect``, so a recycled PID is left alone.
    ``group`` signals the whole process group (the process must have been started in a new session).
    """
    if popen is not None:
        if popen.poll() is not None:
            return
    elif not pid_alive(pid) or (expect is not None and not pid_matches(pid, expect)):
        return
    _send(pid, first_signal, group)
    if _wait(pid, popen, grace):
        return
    _send(pid, signal.SIGKILL, group)
    _wait(pid, popen, 5.0)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed); TimeoutError after ``timeout`` s.

    The lock is released by the kernel if the holder dies, so an interrupted holder never blocks others.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"could not lock {path} within {timeout:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
