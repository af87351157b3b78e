"""Running the loopback embeddings endpoint (:mod:`.embeddings`) for a server: its command, its ready line."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hindsight_core.local import embeddings
from hindsight_core.local.errors import LocalServerError
from hindsight_core.local.installer import ServerInstall

__all__ = ["EndpointReady", "endpoint_command", "wait_ready"]

_READY = re.compile(
    rb"listening on http://127\.0\.0\.1:(\d+) model=(\S+) dimensions=(\d+) min_similarity=(\S+)"
)


@dataclass(frozen=True)
class EndpointReady:
    """What the endpoint's ready line says."""

    port: int
    model: str
    dimensions: int
    min_similarity: float | None
    """The model's threshold for a semantic match; None: the server's default."""


def endpoint_command(install: ServerInstall, hashed: bool) -> list[str]:
    """The endpoint's command line: the server environment's interpreter when it has the model.

    Without the model, this interpreter runs it (the script is standard library only apart from the
    model) and serves hashed vectors. ``-I``: isolated (no PYTHON* variables, no script directory on
    ``sys.path``).
    """
    python = str(install.python) if install.embedder else sys.executable
    script = str(Path(embeddings.__file__).resolve())
    return [python, "-I", script, "--port", "0", "--model", "hashed" if hashed else "auto"]


def wait_ready(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> EndpointReady:
    """Wait for the ready line in ``log_path``; LocalServerError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        match = _READY.search(log_path.read_bytes())
        if match:
            threshold = match.group(4).decode()
            return EndpointReady(
                port=int(match.group(1)),
                model=match.group(2).decode(),
                dimensions=int(match.group(3)),
                min_similarity=None if threshold == "default" else float(threshold),
            )
        code = process.poll()
        if code is not None:
            raise LocalServerError("embeddings", f"the embeddings process exited with code {code}", log_path)
        if time.monotonic() >= deadline:
            raise LocalServerError(
                "embeddings", f"the embeddings process did not report its port in {timeout:g} s", log_path
            )
        time.sleep(0.05)
