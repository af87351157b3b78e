"""The error raised when the local Hindsight server cannot be provisioned, started or stopped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

__all__ = ["LocalServerError", "Step", "tail_file"]

Step = Literal["provision", "database", "embeddings", "api", "health"]
"""The start-up steps, in order: each failure names the one that failed."""

_TAIL_BYTES = 64 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def tail_file(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of ``path``, without terminal colour codes ("" if unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ""
    text = _ANSI.sub("", data.decode("utf-8", errors="replace"))  # the API's banner is in colour
    return "\n".join(text.splitlines()[-lines:])


class LocalServerError(RuntimeError):
    """A step of provisioning or starting the local server failed.

    ``step`` is one of :data:`Step`; ``log_path`` is the log file of that step (it may not exist when the
    step failed before writing anything). ``details()`` adds the end of that log to the message.
    """

    step: Step
    reason: str
    log_path: Path | None

    def __init__(self, step: Step, reason: str, log_path: Path | None = None) -> None:
        self.step = step
        self.reason = reason
        self.log_path = log_path
        message = f"local Hindsight server: step {step!r} failed: {reason}"
        if log_path is not None:
            message += f" (log: {log_path})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[LocalServerError], tuple[Step, str, Path | None]]:
        return (type(self), (self.step, self.reason, self.log_path))

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the step's log ("" if there is none)."""
        return tail_file(self.log_path, lines) if self.log_path is not None else ""

    def details(self, lines: int = 40) -> str:
        """The message followed by the last ``lines`` lines of the step's log, for a test failure."""
        tail = self.log_tail(lines)
        if not tail:
            return str(self)
        return f"{self}\n--- last {lines} lines of {self.log_path} ---\n{tail}"
