"""Loading what the first memory call would otherwise wait for, on a background thread.

Adapters call :func:`warm_up` when memory is configured (``configure()``, a runnable or memory object
being made): the token counter's vocabulary (about 0.1 s), the process-wide TLS context (20-35 ms) and
httpx's transport modules are then ready before the first LLM call, and nothing of it runs on an event
loop. Each part is loaded once per process; a call after that does nothing.
"""

from __future__ import annotations

import threading

__all__ = ["warm_up"]

_started = threading.Event()


def _load() -> None:
    from .client._tls import shared_ssl_context
    from .pipeline.tokens import counter

    counter()
    shared_ssl_context()
    import h11  # noqa: F401
    import httpcore  # noqa: F401 - imported by httpx on the first request otherwise


def warm_up() -> None:
    """Load the tokenizer, the TLS context and the HTTP transport in the background (once)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_load, name="hindsight-warm-up", daemon=True).start()
