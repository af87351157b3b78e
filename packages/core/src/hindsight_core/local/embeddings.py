"""A loopback, OpenAI-compatible embeddings endpoint for the local Hindsight server.

The Hindsight server's own offline embedders download their models, which this environment cannot do,
so the local stack points the server's ``openai`` embeddings provider at this process. It serves one of:

- ``wordllama``: WordLlama's ``l2_supercat`` 256-dimension static model, which the ``wordllama`` wheel
  ships (weights and tokenizer; nothing is downloaded). Texts that mean the same thing land close
  together ("What is my job?" finds "I work as a nurse"). The installer puts ``wordllama`` in the
  server's environment, and this file is run with that environment's interpreter.
- ``hashed``: deterministic hashed bags of words (word unigrams plus character trigrams), L2-normalised:
  texts that share words land close together, not texts that share meaning. The fallback when the model
  cannot load (said on stderr and in the ready line), or when asked for with ``--model hashed``.

Run as ``python -I embeddings.py --port PORT [--model auto|wordllama|hashed]``; it binds 127.0.0.1 only
and prints ``listening on http://127.0.0.1:PORT model=NAME dimensions=N min_similarity=S`` once it can
answer. Standard library only, apart from the optional model.
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
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "DIMENSIONS",
    "HASHED_MODEL",
    "WORDLLAMA_MODEL",
    "Embedder",
    "embed",
    "hashed_embedder",
    "load_embedder",
    "main",
    "serve",
    "wordllama_embedder",
]

DIMENSIONS = 384
"""Dimensions of the hashed vectors."""
HASHED_MODEL = "hashed-bow"
WORDLLAMA_MODEL = "wordllama-l2-supercat-256"
WORDLLAMA_MIN_SIMILARITY = 0.05
_WORD = re.compile(r"[a-z0-9]+")


class Embedder:
    """A named embedding function: ``embed_many(texts)`` returns one unit vector per text.

    ``min_similarity`` is the cosine similarity below which a memory is not a match for a query with this
    model, for the server's semantic search (None: the server's default, 0.3, tuned for transformer
    models). A static model's scores run lower: WordLlama puts a paraphrase at 0.07-0.6 and unrelated
    texts mostly under 0.1 (measured on ``bench/paraphrases.py``).
    """

    def __init__(
        self,
        name: str,
        dimensions: int,
        embed_many: Callable[[list[str]], list[list[float]]],
        min_similarity: float | None = None,
    ) -> None:
        self.name = name
        self.dimensions = dimensions
        self.min_similarity = min_similarity
        self._embed_many = embed_many
        self._lock = threading.Lock()  # one batch at a time: the model is not documented as thread-safe

    def embed_many(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            return self._embed_many(list(texts))


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % DIMENSIONS, (1.0 if (value >> 63) & 1 else -1.0)


def embed(text: str) -> list[float]:
    """Return the deterministic hashed unit vector of ``text``."""
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


def hashed_embedder() -> Embedder:
    return Embedder(HASHED_MODEL, DIMENSIONS, lambda texts: [embed(text) for text in texts])


def wordllama_embedder() -> Embedder:
    """WordLlama's bundled model; raises ImportError/OSError/ValueError when it is not there."""
    import numpy
    import wordllama  # type: ignore[import-not-found,unused-ignore]
    from wordllama import WordLlama  # type: ignore[import-not-found,unused-ignore]

    # The wheel holds weights/ and tokenizers/. 0.4.0 looks for its bundled tokenizer under "tokenizer/"
    # and then in <cache_dir>/tokenizers/, so the package directory is given as the cache directory;
    # with downloads disabled it never reaches for the network.
    package = Path(wordllama.__file__).resolve().parent
    model = WordLlama.load(config="l2_supercat", dim=256, cache_dir=package, disable_download=True)

    def embed_many(texts: list[str]) -> list[list[float]]:
        raw = model.embed(texts, norm=False).astype("float64")
        norms = numpy.linalg.norm(raw, axis=1, keepdims=True)
        # An empty text (or one without a known token) has no direction: give it a fixed unit vector.
        empty = norms[:, 0] == 0.0
        raw[empty, 0], norms[empty] = 1.0, 1.0
        vectors: list[list[float]] = (raw / norms).tolist()
        return vectors

    dimensions = len(embed_many(["probe"])[0])
    return Embedder(WORDLLAMA_MODEL, dimensions, embed_many, min_similarity=WORDLLAMA_MIN_SIMILARITY)


def load_embedder(choice: str, log: Callable[[str], None]) -> Embedder:
    """The embedder for ``choice`` (``auto``, ``wordllama`` or ``hashed``); ``auto`` falls back to hashed."""
    if choice == "hashed":
        log("embeddings: hashed bag-of-words vectors, as asked (they match shared words, not meaning)")
        return hashed_embedder()
    started = time.monotonic()
    try:
        embedder = wordllama_embedder()
    except Exception as exc:  # any failure to load means the fallback, never a dead endpoint
        if choice == "wordllama":
            raise
        log(
            f"embeddings: the WordLlama model could not be loaded ({type(exc).__name__}: {exc}); "
            "FALLING BACK to hashed bag-of-words vectors, which match shared words, not meaning"
        )
        return hashed_embedder()
    elapsed = time.monotonic() - started
    log(f"embeddings: loaded {embedder.name} ({embedder.dimensions} dimensions) in {elapsed:.2f} s")
    return embedder


class _Handler(BaseHTTPRequestHandler):
    server_version = "hindsight-local-embeddings/2"
    protocol_version = "HTTP/1.1"
    embedder: Embedder

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
            model = {"id": self.embedder.name, "object": "model", "dimensions": self.embedder.dimensions}
            self._reply(200, {"object": "list", "data": [model]})
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
        for index, vector in enumerate(self.embedder.embed_many(texts)):
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
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
                "model": self.embedder.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def serve(port: int, embedder: Embedder | None = None) -> ThreadingHTTPServer:
    """Create (not start) the server bound to 127.0.0.1:``port`` (0 picks a free port).

    ``embedder`` defaults to the hashed vectors.
    """
    handler = type("Handler", (_Handler,), {"embedder": embedder or hashed_embedder()})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--model",
        choices=("auto", "wordllama", "hashed"),
        default="auto",
        help="auto: WordLlama if it loads, else hashed vectors (default)",
    )
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    embedder = load_embedder(args.model, log)
    server = serve(args.port, embedder)
    print(
        f"embeddings listening on http://127.0.0.1:{server.server_address[1]} "
        f"model={embedder.name} dimensions={embedder.dimensions} "
        f"min_similarity={'default' if embedder.min_similarity is None else embedder.min_similarity}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
