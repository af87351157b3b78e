"""Time to first streamed chunk, with and without memory (sync streaming through LiteLLM).

The loopback fake OpenAI provider (its own process) streams a reply of ``--words`` words, one SSE event per
word, ``--stream-delay`` seconds apart. Each iteration makes a plain ``litellm.completion(stream=True)``
and a ``hindsight_litellm.completion(stream=True)`` (order alternating; the plain call after sleeping as
long as the memory call's recall took, as in ``bench.overhead``), and times the first chunk, the first
chunk with content, and the end of the stream. With memory, the recall happens before the request, so the
first chunk comes a recall round trip later; what is beyond that, per call (memory stream - its recall -
the plain stream of the same iteration), is our cost plus the noise of both calls. Conversations are
stored when each stream ends (the default).

Run: ``uv run python -m bench.streaming [--iterations N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
from collections.abc import Iterable
from typing import Any

from bench._common import (
    FakeProvider,
    facts,
    machine,
    seed_tagged,
    server_url,
    summary,
    wait_idle,
    write_json,
)

QUERY = "Which topics does the user like, and on which day?"


def consume(stream: Iterable[Any], started: float) -> dict[str, float]:
    """Iterate a LiteLLM stream: ms from ``started`` to the first chunk, the first content, the end."""
    first = first_content = math.nan
    chunks = 0
    for chunk in stream:
        now = time.perf_counter()
        chunks += 1
        if math.isnan(first):
            first = (now - started) * 1000
        delta = chunk.choices[0].delta if chunk.choices else None
        if math.isnan(first_content) and delta is not None and delta.content:
            first_content = (now - started) * 1000
    return {
        "first": first,
        "first_content": first_content,
        "end": (time.perf_counter() - started) * 1000,
        "chunks": float(chunks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--words", type=int, default=20, help="words in the streamed reply")
    parser.add_argument("--stream-delay", type=float, default=0.005, help="seconds between streamed events")
    parser.add_argument("--facts", type=int, default=50)
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    reply = " ".join(f"word{i}" for i in range(args.words))
    started_run = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    with (
        server_url(args.server_url) as url,
        FakeProvider(reply=reply, stream_delay=args.stream_delay) as provider,
    ):
        import litellm

        import hindsight_litellm

        bank = f"bench-streaming-{tag}"
        seed_tagged(url, bank, facts(args.facts), ["seed"])
        wait_idle(url, [bank])
        hindsight_litellm.configure(
            hindsight_api_url=url,
            bank_id=bank,
            tags=["conversation"],
            recall_tags=["seed"],
            recall_tags_match="any_strict",
        )
        call: dict[str, Any] = {
            "model": "openai/gpt-4o-mini",
            "api_base": provider.base_url,
            "api_key": "sk-test",
            "stream": True,
        }

        def messages(i: int) -> list[dict[str, str]]:
            return [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"{QUERY} (conversation {tag}-{i})"},
            ]

        def plain(i: int, idle: float) -> dict[str, float]:
            time.sleep(idle / 1000)
            started = time.perf_counter()
            return consume(litellm.completion(messages=messages(i), **call), started)

        plain_rows: list[dict[str, float]] = []
        memory_rows: list[dict[str, float]] = []
        stored = 0
        last_recall = 60.0
        for i in range(args.warmup + args.iterations):
            if i % 2:
                plain_row = plain(i, last_recall)
            started = time.perf_counter()
            memory_row = consume(hindsight_litellm.completion(messages=messages(i), **call), started)
            record = hindsight_litellm.get_last_injection_debug()
            assert record is not None
            memory_row["recall"] = record.timings_ms.get("recall", math.nan)
            last_recall = last_recall if math.isnan(memory_row["recall"]) else memory_row["recall"]
            if not i % 2:
                plain_row = plain(i, last_recall)
            if i >= args.warmup:
                plain_rows.append(plain_row)
                memory_rows.append(memory_row)
                stored += record.storage_status in ("queued", "stored")
        hindsight_litellm.config.PIPELINE.storage.flush(timeout=120)
        wait_idle(url, [bank])

    def column(rows: list[dict[str, float]], key: str) -> list[float]:
        return [r[key] for r in rows if not math.isnan(r[key])]

    # Per call: the memory stream less its recall less the plain stream of the same iteration.
    pairs = list(zip(memory_rows, plain_rows, strict=True))
    first_overhead = [m["first"] - m["recall"] - p["first"] for m, p in pairs]
    end_overhead = [m["end"] - m["recall"] - p["end"] for m, p in pairs]
    write_json(
        args.json,
        {
            "machine": machine(),
            "iterations": len(memory_rows),
            "words": args.words,
            "stream_delay_s": args.stream_delay,
            "chunks": summary(column(memory_rows, "chunks")),
            "plain_first": summary(column(plain_rows, "first")),
            "plain_first_content": summary(column(plain_rows, "first_content")),
            "plain_end": summary(column(plain_rows, "end")),
            "memory_first": summary(column(memory_rows, "first")),
            "memory_first_content": summary(column(memory_rows, "first_content")),
            "memory_end": summary(column(memory_rows, "end")),
            "recall": summary(column(memory_rows, "recall")),
            "first_overhead": summary([v for v in first_overhead if not math.isnan(v)]),
            "end_overhead": summary([v for v in end_overhead if not math.isnan(v)]),
            "stored_or_queued": stored,
            "seconds": time.perf_counter() - started_run,
        },
    )


if __name__ == "__main__":
    main()
