"""Loopback fakes of the OpenAI Chat Completions and Anthropic Messages HTTP APIs, for tests.

Each fake is a real HTTP/1.1 server on ``127.0.0.1`` (ephemeral port) in a background thread. It records
every request it receives and answers in the provider's wire format, streaming (SSE) or not, so the real
``openai`` / ``anthropic`` SDKs and ``litellm`` can be pointed at it. Tests use it to prove what reached
the model (memories in the system prompt) and what did not (``hindsight_*`` options). See docs/testing.md.

Register the fixtures with ``pytest_plugins = ["tests.providers"]`` in the root conftest.py.
"""

from __future__ import annotations

import os

# litellm fetches its model cost map from the internet at import time unless told not to; the tests
# have no internet. This must run before litellm is imported anywhere.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import base64
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeAlias, TypeVar
from urllib.parse import urlsplit

import pytest

__all__ = [
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeProviderServer",
    "RecordedRequest",
    "Reply",
    "ReplyValue",
    "assert_no_hindsight_keys",
    "fake_anthropic",
    "fake_openai",
    "find_hindsight_keys",
]

JSONDict: TypeAlias = dict[str, Any]
ReplyValue: TypeAlias = str | Mapping[str, Any]
"""A text reply, or a mapping: ``{"content": ..., "tool_calls": [...]}`` (OpenAI) /
``{"text": ..., "tool_use": [...]}`` (Anthropic)."""
Reply: TypeAlias = ReplyValue | Callable[[JSONDict], ReplyValue]
"""What ``FakeXxx.reply`` may be: a fixed reply, or a callable from the request's JSON body to one."""

_Self = TypeVar("_Self", bound="FakeProviderServer")


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the fake received it."""

    method: str
    path: str
    """The path without the query string, e.g. ``/v1/chat/completions``."""
    query: str
    """The raw query string ('' if none)."""
    headers: dict[str, str]
    """Header names lower-cased (repeated headers joined with ", ")."""
    json: Any
    """The parsed JSON body, or None when the body is empty or not JSON."""
    body: bytes
    """The raw body."""

    def header(self, name: str) -> str | None:
        """A header's value by case-insensitive name, None if absent."""
        return self.headers.get(name.lower())


@dataclass
class _Failure:
    status: int
    body: bytes
    headers: dict[str, str]
    remaining: int


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: Iterable[bytes] | None = None
    """When set, the response is streamed with chunked transfer encoding, one chunk per item."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, fake: FakeProviderServer) -> None:
        self.fake = fake
        self._conn_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.handler_threads: set[threading.Thread] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, in the serving thread, so stop() sees every accepted connection.
        with self._conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        current = threading.current_thread()
        with self._conn_lock:
            self.handler_threads.add(current)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self.connections.discard(request)
                self.handler_threads.discard(current)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is None or isinstance(error, OSError):
            return  # a client that went away, or stop() dropping its connection: not news
        self.fake._record_error(error)

    def close_connections(self) -> list[threading.Thread]:
        """Shut down every open (keep-alive) connection; return the handler threads still alive."""
        with self._conn_lock:
            connections = list(self.connections)
            threads = list(self.handler_threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return threads


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: don't hold the body back
    server_version = "FakeProvider/1.0"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is dropped after this long

    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        request = RecordedRequest(self.command, split.path, split.query, headers, parsed, body)
        fake = self.server.fake
        response = fake._handle(request)
        if fake._stopping.is_set():  # stop() interrupted a delay: drop the connection without answering
            self.close_connection = True
            return
        try:
            self._write(response)
        except OSError:  # the client went away (e.g. it timed out) or stop() dropped the connection
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _write(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.events is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        fake = self.server.fake
        for index, event in enumerate(response.events):
            if index and fake.stream_delay > 0 and fake._stopping.wait(fake.stream_delay):
                self.close_connection = True  # stopping: cut the stream short
                return
            self.wfile.write(b"%X\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")


class FakeProviderServer:
    """The machinery shared by the fakes: server lifecycle, request log, programmed failures and delays."""

    provider: ClassVar[str] = "fake"
    id_prefix: ClassVar[str] = "fake"
    echo_chars: ClassVar[int] = 200

    def __init__(self, reply: Reply | None = None, *, delay: float = 0.0, require_auth: bool = True) -> None:
        self.reply: Reply | None = reply
        """None for the default echo reply; else a fixed reply or a callable (request JSON) -> reply."""
        self.delay = delay
        """Seconds to wait before answering each request to a model endpoint."""
        self.stream_delay = 0.0
        """Seconds to wait between two streamed events."""
        self.require_auth = require_auth
        """Answer 401 when the request carries no API key, as the real APIs do."""
        self.errors: list[BaseException] = []
        """Exceptions raised while answering (e.g. by a reply callable); each was answered with a 500."""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._counter = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self: _Self) -> _Self:
        """Bind 127.0.0.1 on a free port and serve in a background thread. Returns self."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError(f"{type(self).__name__} can be started once")
        httpd = _HTTPServer(self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{type(self).__name__}:{httpd.server_address[1]}",
            daemon=True,
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and wait for the handler threads. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        httpd.shutdown()
        thread.join()
        handler_threads = httpd.close_connections()
        httpd.server_close()
        for handler in handler_threads:
            handler.join(timeout=5.0)

    def __enter__(self: _Self) -> _Self:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the provider's SDK takes as ``base_url``."""
        return self.url

    # -- the request log -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (a new list) of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError(f"{type(self).__name__} has received no request")
            return self._requests[-1]

    @property
    def last_json(self) -> Any:
        """The parsed JSON body of the latest request."""
        return self.last_request.json

    def bodies_for(self, path: str) -> list[Any]:
        """The JSON bodies of the requests whose path (without query) is exactly ``path``."""
        return [r.json for r in self.requests if r.path == path]

    def clear(self) -> None:
        """Forget the recorded requests, the recorded errors and the pending failures."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self.errors.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests have arrived (for requests made in the background)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= count, timeout=timeout):
                raise AssertionError(
                    f"{type(self).__name__}: {len(self._requests)} requests after {timeout}s, not {count}"
                )
            return list(self._requests)

    # -- programming failures --------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: Mapping[str, Any] | str | bytes | None = None,
        times: int = 1,
        *,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` model requests with HTTP ``status``.

        ``body`` defaults to the provider's error JSON for that status; a mapping is sent as JSON, text
        and bytes as they are. ``retry_after`` (seconds) sets both ``retry-after`` and ``retry-after-ms``
        (the SDKs prefer the latter, so fractions of a second keep retry tests fast).
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if retry_after is not None:
            all_headers.setdefault("retry-after", str(max(0, round(retry_after))))
            all_headers.setdefault("retry-after-ms", str(int(retry_after * 1000)))
        if body is None:
            raw = json.dumps(self._error_body(status, f"fake {self.provider} failure {status}")).encode()
            all_headers.setdefault("content-type", "application/json")
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
            all_headers.setdefault("content-type", "text/plain; charset=utf-8")
        else:
            raw = json.dumps(body).encode()
            all_headers.setdefault("content-type", "application/json")
        with self._lock:
            self._failures.append(_Failure(status, raw, all_headers, times))

    # -- serving ---------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{self.id_prefix}{next(self._counter):06d}"

    def _handle(self, request: RecordedRequest) -> _Response:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()
        try:
            return self._route(request)
        except Exception as exc:
            self._record_error(exc)
            return self._json(500, self._error_body(500, f"the fake failed: {exc!r}"))

    def _record_error(self, error: BaseException) -> None:
        with self._lock:
            self.errors.append(error)

    def _take_failure(self) -> _Response | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failures.popleft()
        return _Response(failure.status, dict(failure.headers), failure.body)

    def _before_answer(self) -> _Response | None:
        """Wait ``delay``, then the programmed failure, if any."""
        if self.delay > 0:
            self._stopping.wait(self.delay)
        return self._take_failure()

    def _resolve_reply(self, body: JSONDict) -> ReplyValue:
        reply = self.reply
        if reply is None:
            return self._default_reply(body)
        if callable(reply):
            reply = reply(body)
        if not isinstance(reply, str | Mapping):
            raise TypeError(f"a reply must be a str or a mapping, not {type(reply).__name__}")
        return reply

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Response:
        all_headers = {"content-type": "application/json", **(headers or {})}
        return _Response(status, all_headers, json.dumps(payload).encode())

    def _sse(self, events: Iterable[bytes]) -> _Response:
        # Built in full here, so an error surfaces in _handle (recorded, answered with a 500).
        return _Response(200, {"content-type": "text/event-stream; charset=utf-8"}, events=list(events))

    # -- provider specifics ----------------------------------------------------------------------------

    def _route(self, request: RecordedRequest) -> _Response:
        raise NotImplementedError

    def _error_body(self, status: int, message: str) -> JSONDict:
        raise NotImplementedError

    def _default_reply(self, body: JSONDict) -> str:
        raise NotImplementedError

    def _echo(self, message_count: int, system: str | None) -> str:
        shown = system[: self.echo_chars] if system else "none"
        return f"I received {message_count} messages. System: {shown}"


def _text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of parts/blocks with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part["text"]) for part in content if isinstance(part, Mapping) and "text" in part
        )
    return ""


def _estimate_tokens(payload: Any) -> int:
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    return max(1, (len(text) + 3) // 4)


def _pieces(text: str) -> list[str]:
    """``text`` split into several streaming deltas (word by word, whitespace kept)."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _fragments(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _check_keys(reply: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(reply) - allowed
    if unknown:
        raise ValueError(f"unknown reply keys {sorted(unknown)}; allowed: {sorted(allowed)}")


# ---------------------------------------------------------------------------------------------------------
# OpenAI Chat Completions


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


class FakeOpenAI(FakeProviderServer):
    """A fake of ``POST /v1/chat/completions`` (also ``/chat/completions``) and ``POST /v1/embeddings``.

    ``reply`` (None: echo) is a string, ``{"content": str | None, "tool_calls": [{"id", "name",
    "arguments"}]}`` (``arguments`` a JSON string or a mapping; ``id`` generated if omitted), or a callable
    from the request JSON to one of those. Embeddings are deterministic unit vectors derived from each
    text's hash, of the request's ``dimensions`` or else ``embedding_dimensions`` (1536, as
    ``text-embedding-3-small``), encoded as ``float`` or ``base64``.
    """

    provider = "openai"
    paths: ClassVar[frozenset[str]] = frozenset({"/v1/chat/completions", "/chat/completions"})
    embeddings_paths: ClassVar[frozenset[str]] = frozenset({"/v1/embeddings", "/embeddings"})
    embedding_dimensions: ClassVar[int] = 1536

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` of ``openai.OpenAI`` / ``api_base`` of litellm."""
        return f"{self.url}/v1"

    def _default_reply(self, body: JSONDict) -> str:
        messages = body.get("messages") or []
        system = [
            _text_of(m.get("content"))
            for m in messages
            if isinstance(m, Mapping) and m.get("role") in ("system", "developer")
        ]
        return self._echo(len(messages), "\n".join(system) if system else None)

    def _error_body(self, status: int, message: str) -> JSONDict:
        kinds = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            403: ("invalid_request_error", None),
            404: ("invalid_request_error", "model_not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }
        kind, code = kinds.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def _embeddings(self, request: RecordedRequest) -> _Response:
        body = request.json
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._json(400, self._error_body(400, "'input' must be a string or an array of strings"))
        failure = self._before_answer()
        if failure is not None:
            return failure
        dimensions = body.get("dimensions")
        if not isinstance(dimensions, int) or dimensions <= 0:
            dimensions = self.embedding_dimensions
        data = []
        for index, text in enumerate(texts):
            raw = [byte - 127.5 for byte in hashlib.shake_256(text.encode()).digest(dimensions)]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            vector = [v / norm for v in raw]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in texts)
        return self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _route(self, request: RecordedRequest) -> _Response:
        known = request.path in self.paths or request.path in self.embeddings_paths
        if not known:
            return self._json(
                404, self._error_body(404, f"fake openai: no route {request.method} {request.path}")
            )
        if request.method != "POST":
            return self._json(405, self._error_body(405, f"fake openai: {request.method} not allowed"))
        if self.require_auth and not (request.header("authorization") or request.header("api-key")):
            return self._json(401, self._error_body(401, "You didn't provide an API key."))
        body = request.json
        if not isinstance(body, dict):
            return self._json(400, self._error_body(400, "the body must be a JSON object"))
        if request.path in self.embeddings_paths:
            return self._embeddings(request)
        if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
            return self._json(
                400, self._error_body(400, "'model' (string) and 'messages' (array) are required")
            )
        failure = self._before_answer()
        if failure is not None:
            return failure
        content, tool_calls = self._normalise(self._resolve_reply(body))
        completion_id = self._next_id("chatcmpl").replace("_", "-", 1)
        prompt_tokens = _estimate_tokens(body["messages"])
        completion_tokens = _estimate_tokens((content or "") + "".join(t.arguments for t in tool_calls))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        finish_reason = "tool_calls" if tool_calls else "stop"
        model = body["model"]
        headers = {"x-request-id": self._next_id("req")}
        if body.get("stream") is True:
            stream_options = body.get("stream_options")
            include_usage = (
                isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True
            )
            events = self._stream(
                completion_id, model, content, tool_calls, finish_reason, usage if include_usage else None
            )
            response = self._sse(events)
            response.headers.update(headers)
            return response
        message: JSONDict = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        if tool_calls:
            message["tool_calls"] = [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in tool_calls
            ]
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return self._json(200, completion, headers)

    def _normalise(self, reply: ReplyValue) -> tuple[str | None, list[_ToolCall]]:
        if isinstance(reply, str):
            return reply, []
        _check_keys(reply, {"content", "tool_calls"})
        content = reply.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("reply 'content' must be a string or None")
        calls: list[_ToolCall] = []
        for raw in reply.get("tool_calls") or []:
            arguments = raw.get("arguments", "{}")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            calls.append(_ToolCall(str(raw.get("id") or self._next_id("call")), str(raw["name"]), arguments))
        return content, calls

    def _stream(
        self,
        completion_id: str,
        model: str,
        content: str | None,
        tool_calls: list[_ToolCall],
        finish_reason: str,
        usage: JSONDict | None,
    ) -> Iterator[bytes]:
        created = int(time.time())

        def chunk(delta: JSONDict, finish: str | None = None) -> bytes:
            payload: JSONDict = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if usage is not None:
                payload["usage"] = None
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        first: JSONDict = {
            "role": "assistant",
            "content": "" if content is not None else None,
            "refusal": None,
        }
        if content is None and tool_calls:
            call = tool_calls[0]
            first["tool_calls"] = [self._call_header(0, call)]
        yield chunk(first)
        for piece in _pieces(content or ""):
            yield chunk({"content": piece})
        for index, call in enumerate(tool_calls):
            if index > 0 or content is not None:
                yield chunk({"tool_calls": [self._call_header(index, call)]})
            for fragment in _fragments(call.arguments):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        yield chunk({}, finish_reason)
        if usage is not None:
            tail = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": usage,
            }
            yield b"data: " + json.dumps(tail).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _call_header(index: int, call: _ToolCall) -> JSONDict:
        return {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }


# ---------------------------------------------------------------------------------------------------------
# Anthropic Messages


class FakeAnthropic(FakeProviderServer):
    """A fake of ``POST /v1/messages``.

    ``reply`` (None: echo) is a string, ``{"text": str | None, "tool_use": [{"id", "name", "input"}]}``
    (``id`` generated if omitted, ``input`` a mapping), or a callable from the request JSON to one of those.
    """

    provider = "anthropic"
    path: ClassVar[str] = "/v1/messages"
    _error_types: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the SDK appends ``/v1/messages``, and so does litellm."""
        return self.url

    def _default_reply(self, body: JSONDict) -> str:
        system = _text_of(body.get("system")) if body.get("system") else None
        return self._echo(len(body.get("messages") or []), system)

    def _error_body(self, status: int, message: str) -> JSONDict:
        kind = self._error_types.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def _route(self, request: RecordedRequest) -> _Response:
        if request.path != self.path:
            return self._json(
                404, self._error_body(404, f"fake anthropic: no route {request.method} {request.path}")
            )
        if request.method != "POST":
            return self._json(405, self._error_body(405, f"fake anthropic: {request.method} not allowed"))
        if self.require_auth and not (request.header("x-api-key") or request.header("authorization")):
            return self._json(401, self._error_body(401, "x-api-key header is required"))
        if not request.header("anthropic-version"):
            return self._json(400, self._error_body(400, "anthropic-version header is required"))
        body = request.json
        if not isinstance(body, dict):
            return self._json(400, self._error_body(400, "the body must be a JSON object"))
        if (
            not isinstance(body.get("model"), str)
            or not isinstance(body.get("messages"), list)
            or not isinstance(body.get("max_tokens"), int)
        ):
            return self._json(400, self._error_body(400, "'model', 'messages' and 'max_tokens' are required"))
        failure = self._before_answer()
        if failure is not None:
            return failure
        blocks = self._normalise(self._resolve_reply(body))
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        input_tokens = _estimate_tokens([body.get("system"), body["messages"]])
        output_tokens = _estimate_tokens(blocks)
        message_id = self._next_id("msg")
        headers = {"request-id": self._next_id("req")}
        message: JSONDict = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
        if body.get("stream") is True:
            response = self._sse(self._stream(message))
            response.headers.update(headers)
            return response
        return self._json(200, message, headers)

    def _normalise(self, reply: ReplyValue) -> list[JSONDict]:
        if isinstance(reply, str):
            return [{"type": "text", "text": reply}]
        _check_keys(reply, {"text", "tool_use"})
        blocks: list[JSONDict] = []
        text = reply.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise TypeError("reply 'text' must be a string or None")
            blocks.append({"type": "text", "text": text})
        for raw in reply.get("tool_use") or []:
            tool_input = raw.get("input", {})
            if not isinstance(tool_input, Mapping):
                raise TypeError("a tool_use 'input' must be a mapping")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": str(raw.get("id") or self._next_id("toolu")),
                    "name": str(raw["name"]),
                    "input": dict(tool_input),
                }
            )
        return blocks

    def _stream(self, message: JSONDict) -> Iterator[bytes]:
        def event(name: str, data: JSONDict) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
        }
        yield event("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opening: JSONDict = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
            else:
                opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                arguments = json.dumps(block["input"]) if block["input"] else ""
                deltas = [{"type": "input_json_delta", "partial_json": f} for f in _fragments(arguments)]
            yield event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
            if index == 0:
                yield event("ping", {"type": "ping"})
            for delta in deltas:
                yield event(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            yield event("content_block_stop", {"type": "content_block_stop", "index": index})
        yield event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        yield event("message_stop", {"type": "message_stop"})


# ---------------------------------------------------------------------------------------------------------
# Leak checks


def find_hindsight_keys(obj: Any, path: str = "$") -> list[str]:
    """The JSON paths of every dict key, at any depth, that starts with ``hindsight_`` (any case)."""
    if isinstance(obj, RecordedRequest):
        return find_hindsight_keys(obj.json, path)
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            child = f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{key!r}]"
            if isinstance(key, str) and key.lower().startswith("hindsight_"):
                found.append(child)
            found.extend(find_hindsight_keys(value, child))
    elif isinstance(obj, list | tuple):
        for index, item in enumerate(obj):
            found.extend(find_hindsight_keys(item, f"{path}[{index}]"))
    return found


def assert_no_hindsight_keys(obj: Any) -> None:
    """Fail, naming every offending path, if a ``hindsight_*`` key appears anywhere in ``obj``.

    ``obj`` is a JSON value (e.g. ``fake.last_json``) or a ``RecordedRequest`` (its JSON body is checked).
    """
    leaked = find_hindsight_keys(obj)
    if leaked:
        raise AssertionError(f"hindsight_ option(s) leaked into the provider request at: {', '.join(leaked)}")


# ---------------------------------------------------------------------------------------------------------
# pytest fixtures


def _serve(fake: _Self) -> Iterator[_Self]:
    with fake:
        yield fake
        errors = list(fake.errors)
    if errors:
        raise AssertionError(f"{type(fake).__name__} failed while answering: {errors[0]!r}") from errors[0]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started ``FakeOpenAI`` with no recorded request; stopped after the test."""
    yield from _serve(FakeOpenAI())


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started ``FakeAnthropic`` with no recorded request; stopped after the test."""
    yield from _serve(FakeAnthropic())
