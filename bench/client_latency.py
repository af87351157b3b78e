"""Recall round-trip latency against the local Hindsight server, and the client's own CPU cost per recall.

Run: ``uv run python bench/client_latency.py`` (uses ``HINDSIGHT_API_URL`` if set, else starts the local
server and stops it at the end). Writes ``bench/results/client_latency.md`` and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from hindsight_core import HindsightClient, RetryPolicy
from hindsight_core.client._base import Send

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    url = os.environ.get("HINDSIGHT_API_URL")
    if url:
        yield url
        return
    from hindsight_core.local import local_server

    with local_server() as server:
        yield server.url


def canned_recall_body(n: int) -> bytes:
    results = [
        {
            "id": str(uuid.uuid4()),
            "text": f"Memory {i}: the user mentioned a preference about topic {i} in a past conversation.",
            "type": "world" if i % 2 else "observation",
            "context": "chat",
            "mentioned_at": "2026-11-23T10:00:00+00:00",
            "document_id": "conv-1",
            "metadata": {},
            "tags": ["user:bench"],
            "scores": {"final": 0.5},
        }
        for i in range(n)
    ]
    return json.dumps({"results": results, "trace": None, "entities": None}).encode()


def client_cpu_cost(iterations: int, results: int) -> dict[str, float]:
    """Microseconds of CPU per recall spent in our code: building the request and parsing the response."""
    body = canned_recall_body(results)
    client = HindsightClient("http://bench.invalid", api_key="bench-key")
    response = httpx.Response(200, content=body)
    samples: list[float] = []
    for _ in range(iterations):
        start = time.process_time_ns()
        op = client._op_recall(
            "bench", "what does the user prefer?", "mid", 2048, None, None, None, False, None, None, None
        )
        plan = client._plan(op)
        step = next(plan)
        assert isinstance(step, Send)
        try:
            plan.send(response)
        except StopIteration as done:
            assert len(done.value.results) == results
        samples.append((time.process_time_ns() - start) / 1000)
    client.close()
    # Also through httpx with an in-memory transport: our code plus httpx's request/response handling.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with HindsightClient("http://bench.invalid", http_client=httpx.Client(transport=transport)) as mocked:
        with_httpx: list[float] = []
        for _ in range(iterations):
            start = time.process_time_ns()
            mocked.recall("bench", "what does the user prefer?", include_entities=False)
            with_httpx.append((time.process_time_ns() - start) / 1000)
    return {
        "core_p50_us": statistics.median(samples),
        "core_p95_us": percentile(samples, 95),
        "httpx_p50_us": statistics.median(with_httpx),
        "httpx_p95_us": percentile(with_httpx, 95),
    }


def recall_latency(url: str, requests: int, memories: int) -> dict[str, float]:
    bank = f"bench-{uuid.uuid4().hex[:8]}"
    with HindsightClient(url, retry=RetryPolicy(max_retries=0)) as client:
        client.create_bank(bank, extraction_mode="chunks")
        client.retain_batch(
            bank,
            [
                {"content": f"Fact {i}: the user likes topic {i} and mentioned it on day {i % 7}."}
                for i in range(memories)
            ],
        )
        for _ in range(5):  # warm the connection and the server's caches
            client.recall(bank, "what topics does the user like?")
        wall: list[float] = []
        for i in range(requests):
            start = time.perf_counter()
            response = client.recall(
                bank, f"what does the user like about topic {i % memories}?", include_entities=False
            )
            wall.append((time.perf_counter() - start) * 1000)
            assert response.results
        client.delete_bank(bank)
    return {
        "p50_ms": statistics.median(wall),
        "p95_ms": percentile(wall, 95),
        "mean_ms": statistics.fmean(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--memories", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    cpu = client_cpu_cost(args.iterations, args.memories)
    with server_url() as url:
        latency = recall_latency(url, args.requests, args.memories)
    report = "\n".join(
        [
            "# Client benchmark",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
            "",
            f"## Recall round trip, local server ({args.requests} recalls, {args.memories} memories)",
            "",
            "| p50 | p95 | mean |",
            "|---|---|---|",
            f"| {latency['p50_ms']:.1f} ms | {latency['p95_ms']:.1f} ms | {latency['mean_ms']:.1f} ms |",
            "",
            f"## Client CPU per recall ({args.memories} results, {args.iterations} iterations)",
            "",
            "| what | p50 | p95 |",
            "|---|---|---|",
            f"| request build + response parse (our code) | {cpu['core_p50_us']:.0f} µs "
            f"| {cpu['core_p95_us']:.0f} µs |",
            f"| the same through httpx (in-memory transport) | {cpu['httpx_p50_us']:.0f} µs "
            f"| {cpu['httpx_p95_us']:.0f} µs |",
            "",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "client_latency.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
