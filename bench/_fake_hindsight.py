"""A Hindsight stand-in that answers at once, as a process: prints its URL, serves until stdin closes.

For benchmarks that measure *our* CPU, not the server's: every recall gets the same recorded answer (the
facts given on the command line, in the real server's response shape), every retain is acknowledged as
an accepted async operation and counted. ``GET /_stats`` returns the counts (retain requests, retained
items, the turns in them, recalls), ``POST /_stats/reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_stats = {"retain_requests": 0, "retained_items": 0, "retained_turns": 0, "recalls": 0}


def recall_answer(facts: list[str]) -> bytes:
    results = [
        {
            "id": str(uuid.UUID(int=i + 1)),
            "text": fact,
            "type": "world",
            "mentioned_at": "2026-11-30T10:00:00Z",
            "document_id": "recorded",
            "scores": {"final": round(1.0 - i / 100, 3)},
        }
        for i, fact in enumerate(facts)
    ]
    return json.dumps({"results": results}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    recall_body = b'{"results": []}'

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b'{"status": "healthy", "database": "connected"}')
        elif self.path == "/_stats":
            with _lock:
                self._send(200, json.dumps(_stats).encode())
        else:
            bank = self.path.split("/")[4] if self.path.count("/") >= 4 else "default"
            self._send(200, json.dumps({"bank_id": bank, "name": bank}).encode())

    def do_PUT(self) -> None:
        self._body()
        bank = self.path.split("/")[4]
        self._send(200, json.dumps({"bank_id": bank, "name": bank}).encode())

    do_PATCH = do_PUT

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/_stats/reset":
            with _lock:
                for key in _stats:
                    _stats[key] = 0
            self._send(200, b"{}")
        elif self.path.endswith("/memories/recall"):
            with _lock:
                _stats["recalls"] += 1
            self._send(200, self.recall_body)
        elif self.path.endswith("/memories"):
            items = body.get("items", []) if isinstance(body, dict) else []
            # A turn starts with the user's line; one conversation's turns sent together are one item.
            turns = sum(
                line.startswith("user: ")
                for item in items
                for line in str(item.get("content", "")).splitlines()
            )
            with _lock:
                _stats["retain_requests"] += 1
                _stats["retained_items"] += len(items)
                _stats["retained_turns"] += turns
            bank = self.path.split("/")[4]
            answer = {
                "success": True,
                "bank_id": bank,
                "items_count": len(items),
                "async": True,
                "operation_id": (body or {}).get("operation_id") or str(uuid.uuid4()),
            }
            self._send(200, json.dumps(answer).encode())
        else:
            self._send(404, b'{"detail": "not found"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default listen backlog (5) overflows when 50 clients' recalls and retains open connections at
    # once: refused SYNs are retried after 1 s, 3 s..., which showed as multi-second stalls of the hook.
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts-file", required=True, help="a JSON list of the facts every recall returns")
    args = parser.parse_args()
    with open(args.facts_file, encoding="utf-8") as file:
        _Handler.recall_body = recall_answer(json.load(file))
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
