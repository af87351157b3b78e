"""The local server's embeddings endpoint as its own process, for tests that need real model embeddings.

``model_embeddings()`` provisions the server's environment if needed (as the ``hindsight_server`` fixture
does), runs ``hindsight_core/local/embeddings.py`` with that environment's interpreter, where WordLlama
is installed, and yields its OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from hindsight_core.local import embeddings, provision

__all__ = ["READY", "model_embeddings", "spawn_embeddings"]

READY = re.compile(
    r"listening on (http://127\.0\.0\.1:\d+) model=(\S+) dimensions=(\d+) min_similarity=(\S+)"
)


@contextlib.contextmanager
def spawn_embeddings(python: str, *args: str, timeout: float = 60.0) -> Iterator[tuple[str, str]]:
    """Run the endpoint with ``python``; yield (its base URL, everything it printed before it was ready)."""
    script = str(Path(embeddings.__file__).resolve())
    process = subprocess.Popen(
        [python, "-I", script, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed.append(line)
            match = READY.search(line)
            if match:
                yield f"{match.group(1)}/v1", "".join(printed)
                return
        raise AssertionError(f"the embeddings endpoint did not become ready: {''.join(printed)}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def model_embeddings() -> Iterator[str]:
    """The endpoint serving the local embedding model (fails if the model does not load)."""
    install = provision()
    assert install.embedder, f"the embedding model is not installed: {install.embedder_error}"
    with spawn_embeddings(str(install.python), "--model", "wordllama") as (url, _):
        yield url
