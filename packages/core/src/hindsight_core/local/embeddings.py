"""A loopback, OpenAI-compatible embeddings endpoint for the local Hindsight server.

The Hindsight server has no offline embedding model, and this environment cannot download one, so the
local stack points the server's ``openai`` embeddings provider at this process. Vectors are deterministic
hashed bags of words (word unigrams plus character trigrams), L2-normalised: texts that share words land
close together, which is enough for recall to find what was retained by its content.

Run as ``python -m hindsight_core.local.embeddings --port PORT``; it binds 127.0.0.1 only. Standard library
only, so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DIMENSIONS", "embed", "main", "serve"]

DIMENSIONS = 384
_WORD = re.compile(r"[a-z0-9]+")


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % DIMENSIONS, (1.0 if (value >> 63) & 1 else -1.0)


def embed(text: str) -> list[float]:
    """Return the deterministic unit vector of ``text``."""
    vector = [0.0] * DIMENSIONS
    words = _WORD.findall(text.lower())
    for word in words:
        index, sign = _bucket("w:" + word)
        vector[index] += 2.0 * sign
        padded = f"#{word}#"
        for start in range(len(padded) - 2):
            index, sign = _bucket("t:" + padded[start : start + 3])
            vector[index] += 0.5 * sign
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


class _Handler(BaseHTTPRequestHandler):
    server_version = "hindsight-local-embeddings/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the API logs its own calls
        return

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("", "/health", "/v1/models"):
            self._reply(200, {"object": "list", "data": [{"id": "hashed-bow", "object": "model"}]})
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/embeddings"):
            self._reply(404, {"error": {"message": f"no route {self.path}"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            texts = request.get("input", [])
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError("input must be a string or a list of strings")
        except (ValueError, AttributeError) as exc:
            self._reply(400, {"error": {"message": str(exc)}})
            return
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed(text)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{DIMENSIONS}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in texts)
        self._reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": request.get("model", "hashed-bow"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def serve(port: int) -> ThreadingHTTPServer:
    """Create (not start) the server bound to 127.0.0.1:``port`` (0 picks a free port)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = serve(args.port)
    print(f"embeddings listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
