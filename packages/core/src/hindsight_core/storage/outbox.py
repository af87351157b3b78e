"""The on-disk outbox: one JSON file per batch, the dead-letter file, and files that cannot be read.

File format (:func:`encode_batch` / :func:`decode_batch`): ``{"format": "hindsight-outbox/1", "operation_id",
"base_url", "bank_id", "key_id", "turns": [Turn.to_dict(), ...]}`` in UTF-8, named
``<batch name>.<owner>.json`` (the owner: the process's claim on the directory, see :mod:`.claims`).
The API key is never written: ``key_id`` is its one-way fingerprint (see :mod:`.connections`).

Guarantees kept here:

- a file is whole or absent: written to a hidden temporary file, fsynced, then renamed (:meth:`Outbox.write`);
- the directory is created ``0700`` and files ``0600`` (they hold conversation text);
- a file that cannot be read is renamed ``*.corrupt`` and reported at ERROR, never silently dropped
  (:func:`read_batch_file`);
- turns given up on are appended to ``dead-letter.jsonl`` (:meth:`Outbox.dead_letter`) before their batch file
  is removed, so a crash in between sends the file again rather than losing it.

Only the worker thread (and ``close()`` or the exit handler) calls this; submitting threads never touch the
disk. Several processes may share the directory: each reads and removes only the files it owns
(:mod:`.claims`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..connection import Connection
from .batching import Batch, Ref
from .claims import Claim, adopt, stem_of
from .turns import Turn, norm_url

__all__ = [
    "DEAD_LETTER",
    "FILE_FORMAT",
    "OUTBOX_DIR_ENV",
    "Outbox",
    "dead_letter_lines",
    "decode_batch",
    "encode_batch",
    "read_batch_file",
]

logger = logging.getLogger("hindsight_core.storage")

OUTBOX_DIR_ENV = "HINDSIGHT_OUTBOX_DIR"
"""Environment variable naming the outbox directory (read by :meth:`StorageWorker.from_env`)."""

FILE_FORMAT = "hindsight-outbox/1"
DEAD_LETTER = "dead-letter.jsonl"
_STALE_TEMP_SECONDS = 3600.0

Resolve = Callable[[str, "str | None"], "Connection | None"]
"""(base_url, key_id) -> the connection to send a file's turns with, or None if its key is unknown."""


def encode_batch(batch: Batch) -> bytes:
    """The outbox file of ``batch`` (whose turns must be in memory)."""
    assert batch.turns is not None
    return json.dumps(
        {
            "format": FILE_FORMAT,
            "operation_id": batch.operation_id,
            "base_url": batch.base_url,
            "bank_id": batch.bank_id,
            "key_id": batch.key_id,
            "turns": [t.to_dict() for t in batch.turns],
        },
        ensure_ascii=False,
    ).encode("utf-8")


def decode_batch(data: bytes, name: str, resolve: Resolve, connection: Connection | None = None) -> Batch:
    """The batch an outbox file holds. ``connection`` (else ``resolve(base_url, key_id)``) is the one to send
    it with; without one the batch has no turns in memory (``turns=None``) and cannot be sent yet.

    Raises ValueError, KeyError or TypeError for data that is not such a file.
    """
    parsed = json.loads(data)
    if not isinstance(parsed, dict) or parsed.get("format") != FILE_FORMAT:
        raise ValueError(f"not a {FILE_FORMAT} file")
    base_url = norm_url(str(parsed["base_url"]))
    key_id = parsed.get("key_id")
    if key_id is not None and not isinstance(key_id, str):
        raise ValueError("bad key_id")
    if connection is None:
        connection = resolve(base_url, key_id)
    raw_turns = parsed["turns"]
    if not isinstance(raw_turns, list) or not raw_turns:
        raise ValueError("no turns")
    probe = connection or Connection(base_url=base_url)
    turns = [Turn.from_dict(t, probe) for t in raw_turns]
    return Batch(
        operation_id=str(parsed["operation_id"]),
        base_url=base_url,
        bank_id=str(parsed["bank_id"]),
        key_id=key_id,
        connection=connection,
        refs=[Ref(t.turn_id, t.document_id, 0) for t in turns],
        turns=turns if connection is not None else None,
        name=name,
        order=0,
        ready_at=0.0,
        persisted=True,
    )


def dead_letter_lines(batch: Batch, error: str, when: datetime) -> bytes:
    """One JSON line per turn of ``batch``: ``failed_at``, ``error``, ``operation_id``, ``turn``."""
    assert batch.turns is not None
    return "".join(
        json.dumps(
            {
                "failed_at": when.isoformat(),
                "error": error,
                "operation_id": batch.operation_id,
                "turn": t.to_dict(),
            },
            ensure_ascii=False,
        )
        + "\n"
        for t in batch.turns
    ).encode("utf-8")


def read_batch_file(path: Path, resolve: Resolve, connection: Connection | None = None) -> Batch | None:
    """Parse an outbox file; a file that cannot be read is moved aside (``.corrupt``) and reported."""
    try:
        return decode_batch(path.read_bytes(), stem_of(path), resolve, connection)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        quarantine = path.with_name(f"{stem_of(path)}.json.corrupt")
        with contextlib.suppress(OSError):
            path.rename(quarantine)
        logger.error(
            "Hindsight storage: outbox file %s cannot be read (%s: %s); moved to %s",
            path,
            type(exc).__name__,
            exc,
            quarantine.name,
        )
        return None


class Outbox:
    """The outbox directory and the batch files in it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._claim: Claim | None = None
        self._claiming = threading.Lock()

    @property
    def claim(self) -> Claim:
        """This process's claim on the directory (made on first use, and again in a forked child).

        One per process even when threads ask at once: two would each own files the other cannot send."""
        with self._claiming:
            claim = self._claim
            if claim is None or claim.pid != os.getpid():
                if claim is not None:
                    claim.forget()
                self._claim = claim = Claim(self.directory)
            return claim

    def path(self, batch: Batch) -> Path:
        return self.directory / f"{batch.name}.{self.claim.owner}.json"

    def adopt(self) -> list[Path]:
        """Take over the files of processes that stopped (see :mod:`.claims`); their new paths."""
        return adopt(self.claim)

    def release(self) -> None:
        """Give up the claim (the worker stopped): what is left may be taken over by another process."""
        with self._claiming:
            claim, self._claim = self._claim, None
        if claim is not None and claim.pid == os.getpid():
            claim.release()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's claim stays the parent's."""
        self._claiming = threading.Lock()  # it may have been held by another thread at the fork
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.forget()

    def ensure(self) -> bool:
        """Create the directory if needed; False (and an ERROR) if it cannot be used."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            logger.error(
                "Hindsight storage: the outbox directory %s cannot be used (%s); turns stay in memory only",
                self.directory,
                exc,
            )
            return False
        return True

    def write(self, batch: Batch) -> bool:
        """Write the batch file atomically (temp file + rename). False (and an ERROR) if it cannot be."""
        if batch.turns is None:
            return batch.persisted
        path = self.path(batch)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(encode_batch(batch))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            logger.error(
                "Hindsight storage: could not write %d turns to the outbox (%s: %s); they stay in memory",
                len(batch.refs),
                path,
                exc,
            )
            return False
        batch.persisted = True
        return True

    def remove(self, batch: Batch) -> None:
        """Remove the batch's file, if it has one (an ERROR if that fails: the next run sends it again)."""
        if not batch.persisted:
            return
        try:
            self.path(batch).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error(
                "Hindsight storage: could not remove %s (%s); the next run will send it again, "
                "which the server recognises by its operation id",
                self.path(batch),
                exc,
            )

    def leftovers(self) -> list[Path] | None:
        """The batch files this process owns, oldest first, after taking over those of stopped processes
        (None and an ERROR if the directory cannot be listed).

        Temporary files of interrupted writes older than an hour are removed on the way.
        """
        self.adopt()
        owner = self.claim.owner
        now = time.time()
        paths = []
        try:
            for path in self.directory.iterdir():
                if path.suffix == ".tmp" and path.name.startswith("."):
                    with contextlib.suppress(OSError):
                        if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                            path.unlink()
                elif path.name.endswith(f".{owner}.json") and not path.name.startswith("."):
                    paths.append(path)
        except OSError as exc:
            logger.error("Hindsight storage: cannot read the outbox %s: %s", self.directory, exc)
            return None
        return sorted(paths)

    def dead_letter(self, batch: Batch, error: str, when: datetime) -> None:
        """Append the batch's turns to the dead-letter file (an ERROR if that fails)."""
        if batch.turns is None:
            return
        path = self.directory / DEAD_LETTER
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(dead_letter_lines(batch, error, when))
        except OSError as exc:
            logger.error("Hindsight storage: could not write the dead-letter file %s: %s", path, exc)
