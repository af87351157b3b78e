"""The memory pipeline's own CPU cost per call, without the network.

Measures, with 50 recalled memories of realistic length:

- settings resolution (configured layers + two per-call options),
- planning (query extraction) + rendering within the token budget + injection + the debug record,
- handing a finished turn to storage (transcript + queueing; the caller's whole cost of storing).

Run: ``uv run python bench/pipeline_overhead.py``. Writes ``bench/results/pipeline_overhead.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from hindsight_core import HindsightClient, MemoryPipeline, MemorySettings, SettingsLayers, StorageWorker
from hindsight_core.memory.plan import apply_response, plan_call
from hindsight_core.models import RecallResponse, RecallResult
from hindsight_core.pipeline import warm_up
from hindsight_core.pipeline.tokens import counter

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def measure(function: Callable[[], object], iterations: int) -> tuple[float, float]:
    """p50 and p95 CPU microseconds of ``function``."""
    for _ in range(min(50, iterations)):
        function()
    samples = []
    for _ in range(iterations):
        start = time.process_time_ns()
        function()
        samples.append((time.process_time_ns() - start) / 1000)
    return statistics.median(samples), percentile(samples, 95)


def recall_response(n: int) -> RecallResponse:
    return RecallResponse(
        results=[
            RecallResult(
                id=str(uuid.uuid4()),
                text=f"Memory {i}: the user said they prefer option {i} for project {i % 5}, in a chat.",
                type="world" if i % 3 else "observation",
            )
            for i in range(n)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--memories", type=int, default=50)
    args = parser.parse_args()
    warm_up()
    counter()  # the tokenizer is loaded once per process; not part of a call's cost

    layers = SettingsLayers("bench")
    layers.configure(
        {"hindsight_api_url": "http://bench.invalid", "bank_id": "bench", "max_memory_tokens": 2048}
    )
    settings = layers.resolve()
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi, I'm planning the next release."},
        {"role": "assistant", "content": "Great, what do you need?"},
        {"role": "user", "content": "Which option did I prefer for project 3, and why?"},
    ]
    response = recall_response(args.memories)
    # A worker whose server is an in-memory transport: submit() is measured, the sending happens elsewhere.
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, json={"success": True, "bank_id": "bench", "items_count": 1, "async": True}
        )
    )
    worker = StorageWorker(
        client_for=lambda c: HindsightClient(c.base_url, http_client=httpx.Client(transport=transport))
    )
    pipeline = MemoryPipeline(source="bench", storage=worker)

    def resolve() -> MemorySettings:
        return layers.resolve({"bank_id": "user-42", "budget": "low"})

    def plan_render_inject() -> object:
        started = time.perf_counter()
        plan = plan_call(messages, settings, "gpt-4o-mini", None, pipeline._warn)
        return apply_response(plan, response, started)

    call = plan_render_inject()

    def hand_to_storage() -> None:
        fresh = plan_call(messages, settings, "gpt-4o-mini", None, pipeline._warn).call
        fresh.record.document_id = "bench-doc"
        pipeline.finish(fresh, "Option 3, because it was simpler to test.")

    def plan_only() -> object:
        return plan_call(messages, settings, "gpt-4o-mini", None, pipeline._warn)

    rows = [
        ("settings resolution (+2 per-call options)", measure(resolve, args.iterations)),
        (
            f"lookup plan + render {args.memories} memories in budget + inject + record",
            measure(plan_render_inject, args.iterations),
        ),
        ("planning alone (query extraction, record)", measure(plan_only, args.iterations)),
        ("hand a turn to storage (plan + transcript + queue)", measure(hand_to_storage, args.iterations)),
    ]
    assert worker.flush(timeout=60)
    worker.close(timeout=10)
    assert getattr(call, "record").injected  # noqa: B009

    lines = [
        "# Pipeline overhead (CPU per call, no network)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.iterations} iterations each; {args.memories} recalled memories, budget 2048 tokens.",
        "",
        "| step | p50 | p95 |",
        "|---|---|---|",
        *(f"| {name} | {p50:.0f} µs | {p95:.0f} µs |" for name, (p50, p95) in rows),
        "",
    ]
    report = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline_overhead.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
