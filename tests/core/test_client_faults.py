"""Fault behaviour of the core client, through an httpx mock transport (no server needed)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hindsight_core import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncHindsightClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    HindsightClient,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeouts,
    UnprocessableEntityError,
)

SECRET = "hs-key-THIS-MUST-NEVER-LEAK-1234"
RECALL_OK = {"results": [{"id": "1", "text": "Alice likes tea", "type": "world"}]}
FAST_RETRY = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)


class Recorder:
    """A mock transport handler replying from a script; records requests and closes of response streams."""

    def __init__(self, replies: list[Callable[[httpx.Request], httpx.Response] | httpx.Response | Exception]):
        self.replies = replies
        self.requests: list[httpx.Request] = []
        self.opened = 0
        self.closed = 0

    def _respond(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        response = reply(request) if callable(reply) else reply
        recorder = self

        class TrackedStream(httpx.ByteStream):
            def close(self) -> None:
                recorder.closed += 1

            async def aclose(self) -> None:
                recorder.closed += 1

        self.opened += 1
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=TrackedStream(response.content),
            request=request,
        )

    def sync_client(self, **kwargs: Any) -> HindsightClient:
        kwargs.setdefault("retry", FAST_RETRY)
        http = httpx.Client(transport=httpx.MockTransport(self._respond))
        return HindsightClient("http://hindsight.test", api_key=SECRET, http_client=http, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncHindsightClient:
        kwargs.setdefault("retry", FAST_RETRY)

        async def handler(request: httpx.Request) -> httpx.Response:
            return self._respond(request)

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        return AsyncHindsightClient("http://hindsight.test", api_key=SECRET, http_client=http, **kwargs)


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        code, json=body if body is not None else {"detail": f"status {code}"}, headers=headers
    )


def ok() -> httpx.Response:
    return httpx.Response(200, json=RECALL_OK)


def run_recall(client: HindsightClient | AsyncHindsightClient) -> Any:
    if isinstance(client, AsyncHindsightClient):

        async def go() -> Any:
            try:
                return await client.recall("bank", "what does Alice like?")
            finally:
                await client.aclose()

        return asyncio.run(go())
    with client:
        return client.recall("bank", "what does Alice like?")


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(rec: Recorder, flavour: str, **kwargs: Any) -> HindsightClient | AsyncHindsightClient:
    return rec.sync_client(**kwargs) if flavour == "sync" else rec.async_client(**kwargs)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (408, APIStatusError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
    ],
)
def test_retryable_status_is_retried_up_to_max_retries(
    flavour: str, code: int, error: type[Exception]
) -> None:
    rec = Recorder([status(code)])
    with pytest.raises(error) as info:
        run_recall(make(rec, flavour))
    assert len(rec.requests) == 3  # the first attempt plus max_retries=2
    assert f"HTTP {code}" in str(info.value)
    assert "3 attempts" in str(info.value)


@pytest.mark.parametrize("code", [408, 409, 429, 500, 503])
def test_retryable_status_then_success_returns_result(flavour: str, code: int) -> None:
    rec = Recorder([status(code), ok()])
    result = run_recall(make(rec, flavour))
    assert [r.text for r in result.results] == ["Alice likes tea"]
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
    ],
)
def test_client_errors_are_not_retried(flavour: str, code: int, error: type[Exception]) -> None:
    rec = Recorder([status(code)])
    with pytest.raises(error) as info:
        run_recall(make(rec, flavour))
    assert len(rec.requests) == 1
    assert isinstance(info.value, APIStatusError)
    assert info.value.status_code == code
    assert str(info.value)


def test_max_retries_zero_sends_once(flavour: str) -> None:
    rec = Recorder([status(503)])
    with pytest.raises(ServerError):
        run_recall(make(rec, flavour, retry=RetryPolicy(max_retries=0)))
    assert len(rec.requests) == 1


def test_retry_after_is_honoured(flavour: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    if flavour == "sync":
        monkeypatch.setattr("hindsight_core.client.sync.time.sleep", sleeps.append)
    else:

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        monkeypatch.setattr("hindsight_core.client.async_.asyncio.sleep", fake_sleep)
    rec = Recorder([status(429, headers={"Retry-After": "1.5"}), ok()])
    run_recall(make(rec, flavour))
    assert sleeps == [1.5]


def test_retry_after_ms_and_http_date(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("hindsight_core.client.sync.time.sleep", sleeps.append)
    rec = Recorder(
        [
            status(503, headers={"retry-after-ms": "250"}),
            status(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # in the past: backoff
            ok(),
        ]
    )
    run_recall(
        rec.sync_client(retry=RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.01, jitter=0))
    )
    assert sleeps == [0.25, 0.01]


def test_retry_after_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("hindsight_core.client.sync.time.sleep", sleeps.append)
    rec = Recorder([status(429, headers={"Retry-After": "3600"}), ok()])
    client = rec.sync_client(retry=RetryPolicy(max_retry_after=2.0), timeouts=Timeouts(recall=30.0))
    run_recall(client)
    assert sleeps == [2.0]


def test_retry_after_beyond_the_time_budget_gives_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("hindsight_core.client.sync.time.sleep", sleeps.append)
    rec = Recorder([status(429, headers={"Retry-After": "20"}), ok()])
    with pytest.raises(RateLimitError):
        run_recall(rec.sync_client(timeouts=Timeouts(recall=5.0)))
    assert sleeps == []
    assert len(rec.requests) == 1


def test_backoff_grows_exponentially_with_jitter_inside_bounds() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.25)
    for retry, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        for _ in range(50):
            assert nominal * 0.75 <= policy.backoff(retry) <= nominal


def test_timeout_maps_to_timeout_error_with_a_message(flavour: str) -> None:
    rec = Recorder([httpx.ReadTimeout("")])
    with pytest.raises(APITimeoutError) as info:
        run_recall(make(rec, flavour))
    message = str(info.value)
    assert "recall timed out" in message
    assert "budget is 5 s" in message
    assert len(rec.requests) == 3
    assert isinstance(info.value, APIConnectionError)


def test_real_timeout_respects_the_recall_budget(flavour: str) -> None:
    """A server that never answers: the call ends within the recall budget, with a timeout error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        timeouts = Timeouts(recall=0.3)
        client: HindsightClient | AsyncHindsightClient
        if flavour == "sync":
            client = HindsightClient(f"http://127.0.0.1:{port}", timeouts=timeouts, retry=FAST_RETRY)
        else:
            client = AsyncHindsightClient(f"http://127.0.0.1:{port}", timeouts=timeouts, retry=FAST_RETRY)
        with pytest.raises(APITimeoutError) as info:
            run_recall(client)
        assert info.value.operation == "recall"
    finally:
        listener.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_connection_refused_maps_to_connection_error(flavour: str) -> None:
    port = _free_port()
    client: HindsightClient | AsyncHindsightClient
    if flavour == "sync":
        client = HindsightClient(f"http://127.0.0.1:{port}", api_key=SECRET, retry=FAST_RETRY)
    else:
        client = AsyncHindsightClient(f"http://127.0.0.1:{port}", api_key=SECRET, retry=FAST_RETRY)
    with pytest.raises(APIConnectionError) as info:
        run_recall(client)
    assert not isinstance(info.value, APITimeoutError)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.attempts == 3
    assert SECRET not in str(info.value)


def test_no_response_left_open_after_failures(flavour: str) -> None:
    rec = Recorder([status(500), status(502), status(404)])
    with pytest.raises(NotFoundError):
        run_recall(make(rec, flavour))
    assert rec.opened == 3
    assert rec.closed == rec.opened


def test_no_response_left_open_after_unreadable_body(flavour: str) -> None:
    rec = Recorder([httpx.Response(200, content=b"<html>not json</html>")])
    with pytest.raises(APIResponseValidationError) as info:
        run_recall(make(rec, flavour))
    assert "could not be read" in str(info.value)
    assert rec.closed == rec.opened == 1


def test_pool_is_empty_after_close_following_failures() -> None:
    """Against a real loopback socket server answering 500: after close() no connection remains."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"detail": "boom"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        transport = httpx.HTTPTransport()
        http_client = httpx.Client(transport=transport)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = HindsightClient(url, http_client=http_client, retry=FAST_RETRY)
        with pytest.raises(ServerError):
            client.recall("b", "q")
        pool = transport._pool
        assert len(pool.connections) <= 1  # one pooled keep-alive connection was reused, not three
        http_client.close()
        assert pool.connections == []
    finally:
        server.shutdown()
        server.server_close()


def test_non_idempotent_retain_is_not_resent_after_an_ambiguous_failure() -> None:
    """A sync append retain may have been applied when the server fails with 500: never send it twice."""
    rec = Recorder([status(500)])
    client = rec.sync_client()
    with pytest.raises(ServerError):
        client.retain("bank", "hello", document_id="conv-1", update_mode="append")
    assert len(rec.requests) == 1


def test_non_idempotent_retain_is_resent_when_the_server_did_not_process_it() -> None:
    rec = Recorder([status(503), httpx.ConnectError("refused"), httpx.Response(200, json=retain_ok())])
    client = rec.sync_client()
    client.retain("bank", "hello", document_id="conv-1", update_mode="append")
    assert len(rec.requests) == 3


def retain_ok(async_: bool = False) -> dict[str, Any]:
    return {"success": True, "bank_id": "bank", "items_count": 1, "async": async_}


def test_async_retain_gets_one_operation_id_across_retries() -> None:
    rec = Recorder([status(500), httpx.ReadError("reset"), httpx.Response(200, json=retain_ok(True))])
    client = rec.sync_client()
    client.retain("bank", "hello", document_id="conv-1", update_mode="append", async_=True)
    ids = {json.loads(r.content)["operation_id"] for r in rec.requests}
    assert len(rec.requests) == 3
    assert len(ids) == 1
    assert next(iter(ids))


def test_api_key_absent_from_every_error_and_repr(flavour: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = httpx.Response(500, json={"detail": f"bad token {SECRET} rejected"})
    cases: list[tuple[httpx.Response | Exception, type[Exception]]] = [
        (echo, ServerError),
        (status(401), AuthenticationError),
        (httpx.ConnectError(f"oops {SECRET}"), APIConnectionError),
        (httpx.Response(200, text=SECRET), APIResponseValidationError),
        (httpx.Response(200, json={"results": [{"id": SECRET}]}), APIResponseValidationError),
    ]
    for reply, expected in cases:
        rec = Recorder([reply])
        client = make(rec, flavour, retry=RetryPolicy(max_retries=0))
        assert SECRET not in repr(client)
        with pytest.raises(expected) as info:
            run_recall(client)
        error = info.value
        assert str(error)
        for text in (str(error), repr(error), repr(error.args), getattr(error, "detail", "") or ""):
            assert SECRET not in text
    assert SECRET not in caplog.text
    # the key is sent where it belongs
    rec = Recorder([ok()])
    run_recall(make(rec, flavour))
    assert rec.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert rec.requests[0].headers["User-Agent"].startswith("hindsight-core/")


def test_401_message_says_what_to_do() -> None:
    rec = Recorder([status(401, {"detail": "Invalid API key"})])
    with pytest.raises(AuthenticationError) as info:
        run_recall(rec.sync_client())
    assert "Invalid API key" in str(info.value)
    assert "HINDSIGHT_API_KEY" in str(info.value)


def test_validation_detail_is_readable() -> None:
    detail = [{"loc": ["body", "budget"], "msg": "Input should be 'low', 'mid' or 'high'", "type": "enum"}]
    rec = Recorder([status(422, {"detail": detail})])
    with pytest.raises(UnprocessableEntityError) as info:
        run_recall(rec.sync_client())
    assert "budget: Input should be 'low', 'mid' or 'high'" in str(info.value)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("HINDSIGHT_API_URL", raising=False)
    monkeypatch.delenv("HINDSIGHT_API_KEY", raising=False)
    return monkeypatch


def test_url_and_key_come_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HINDSIGHT_API_URL", "http://env-host:9999/")
    clean_env.setenv("HINDSIGHT_API_KEY", SECRET)
    client = HindsightClient()
    assert client.base_url == "http://env-host:9999"
    assert client.has_api_key
    assert SECRET not in repr(client)
    client.close()
    explicit = HindsightClient("http://other:1", api_key="")
    assert explicit.base_url == "http://other:1"
    assert not explicit.has_api_key
    explicit.close()


def test_default_url_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    with HindsightClient() as client:
        assert client.base_url == "https://api.hindsight.vectorize.io"  # Hindsight Cloud, as 0.5.4
        assert not client.has_api_key


def test_constructor_does_no_io(clean_env: pytest.MonkeyPatch) -> None:
    rec = Recorder([ok()])
    rec.sync_client()
    rec.async_client()
    HindsightClient("http://127.0.0.1:1").close()  # nothing listens there: no error until a call
    assert rec.requests == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_url": "localhost:8888"}, "must start with http"),
        ({"timeouts": Timeouts}, "Timeouts instance"),
    ],
)
def test_bad_client_options_name_the_problem(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HindsightClient(**kwargs)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: Timeouts(recall=0), "'recall' must be a positive number"),
        (lambda: Timeouts(connect=-1), "'connect' must be a positive number"),
        (lambda: RetryPolicy(max_retries=-1), "max_retries must be an integer >= 0"),
        (lambda: RetryPolicy(jitter=2), "jitter must be between 0 and 1"),
    ],
)
def test_bad_timeouts_and_retries_name_the_option(build: Callable[[], object], needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda c: c.recall("", "q"), "bank_id must be a non-empty string"),
        (lambda c: c.recall("b", "  "), "recall query must be a non-empty string"),
        (lambda c: c.recall("b", "q", budget="huge"), "budget: Input should be 'low', 'mid' or 'high'"),
        (lambda c: c.recall("b", "q", tags_match="some"), "tags_match"),
        (lambda c: c.recall("b", "q", timeout=0), "timeout must be a positive number"),
        (lambda c: c.reflect("b", ""), "reflect query must be a non-empty string"),
        (lambda c: c.retain("b", ""), "retain content must be a non-empty string"),
        (lambda c: c.retain("b", "x", update_mode="merge"), "update_mode"),
        (lambda c: c.retain_batch("b", []), "non-empty list of items"),
        (lambda c: c.retain_batch("b", [{"content": "x", "colour": "red"}]), "colour"),
        (lambda c: c.update_bank_config("b", {}), "at least one setting"),
        (lambda c: c.create_bank("b", colour="red"), "colour"),
    ],
)
def test_bad_arguments_fail_before_any_request(
    call: Callable[[HindsightClient], object], needle: str
) -> None:
    rec = Recorder([ok()])
    client = rec.sync_client()
    with pytest.raises(ConfigurationError) as info:
        call(client)
    assert needle in str(info.value)
    assert rec.requests == []


def test_bank_id_is_escaped_in_the_path() -> None:
    rec = Recorder([ok()])
    rec.sync_client().recall("team/alice smith", "q")
    assert rec.requests[0].url.raw_path.startswith(b"/v1/default/banks/team%2Falice%20smith/memories/recall")


def test_recall_request_body() -> None:
    rec = Recorder([ok()])
    rec.sync_client().recall(
        "b",
        "q",
        budget="high",
        max_tokens=512,
        types=["world"],
        tags=["t"],
        tags_match="all",
        include_entities=False,
        trace=True,
    )
    body = json.loads(rec.requests[0].content)
    assert body == {
        "query": "q",
        "budget": "high",
        "max_tokens": 512,
        "types": ["world"],
        "tags": ["t"],
        "tags_match": "all",
        "trace": True,
        "include": {"entities": None},
    }
    rec2 = Recorder([ok()])
    rec2.sync_client().recall("b", "q")
    assert json.loads(rec2.requests[0].content) == {"query": "q"}
