"""Warnings that are never silent and never a flood."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedLog", "verbose_logger"]

_VERBOSE = "hindsight_core.memory"


def verbose_logger() -> logging.Logger:
    """The logger of ``verbose=True`` output, made visible (INFO, on stderr) when the application has
    configured no logging of its own: asking for verbose output must show something."""
    logger = logging.getLogger(_VERBOSE)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return logger


class RateLimitedLog:
    """Logs a message of a given kind at most once per ``interval`` seconds, counting the ones held back.

    Memory failures must be visible (a WARNING, not a DEBUG line) but an outage must not log once per LLM
    call: the first failure is logged at once, the next ones are summarised when the interval has passed.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            plural = "s" if held != 1 else ""
            message += f" ({held} similar message{plural} in the last {self.interval:g} s held back)"
        self.logger.log(level, message, *args)

    def warning(self, kind: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, kind, message, *args)

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._held.clear()
