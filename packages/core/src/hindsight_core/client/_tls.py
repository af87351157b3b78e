"""One TLS context per process, shared by every HTTP client.

httpx builds an SSL context (loading the CA certificates) for each client it creates: about 20-35 ms of
CPU. An async client is made for each event loop that uses memory, on that loop, so without a shared context
the first memory call of every new loop (each ``asyncio.run()``) would stall it that long. The context is
built once (by :func:`hindsight_core.warmup.warm_up` on a background thread, or on first use) and given to
every client; it honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as httpx does.
"""

from __future__ import annotations

import ssl
import threading

__all__ = ["shared_ssl_context"]

_lock = threading.Lock()
_contexts: list[ssl.SSLContext] = []  # at most one: the process-wide context, once built


def shared_ssl_context() -> ssl.SSLContext:
    """The process-wide TLS context (built on first use, thread-safe)."""
    if not _contexts:
        with _lock:
            if not _contexts:
                import httpx

                _contexts.append(httpx.create_ssl_context())
    return _contexts[0]
