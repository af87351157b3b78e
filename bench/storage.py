"""Storage: what handing a turn to storage costs the caller, how fast the worker stores, and what the server
spends per turn.

1. Caller latency and throughput. ``--turns`` turns (default 500) of ``--banks`` x ``--conversations``
   conversations (each conversation a growing message list, one turn at a time, round robin) go through
   ``MemoryPipeline.finish`` (the path every adapter uses after its LLM call; memory lookup off, so
   ``prepare`` does no I/O). Each ``finish`` is timed as the caller sees it. Then: the time until
   ``flush()`` returns (every turn acknowledged by the server), and until every turn's text can be read back
   from its conversation's document on the server.
2. Server cost per turn (measured first, on an otherwise idle server): one conversation stored turn by turn
   (``--growth-turns`` turns, each stored and waited for before the next, as in a chat), appended to one
   document (what the integrations do for a conversation) vs. one document per turn. The time is from the
   retain request until the server has finished every operation it started for it (retain, graph
   maintenance, consolidation).

Run: ``uv run python -m bench.storage [--turns N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx

from bench._common import machine, server_url, summary, wait_idle, write_json


def document_text(url: str, bank: str, document_id: str) -> str:
    response = httpx.get(
        f"{url}/v1/default/banks/{quote(bank, safe='')}/documents/{quote(document_id, safe='')}", timeout=30
    )
    if response.status_code == 404:
        return ""
    response.raise_for_status()
    text: str = response.json().get("original_text") or ""
    return text


def throughput(
    url: str, turns: int, banks: int, conversations: int, tag: str, *, wait: bool
) -> dict[str, Any]:
    from hindsight_core import HindsightClient, MemoryPipeline, SettingsLayers
    from hindsight_core.storage import default_worker

    bank_ids = [f"bench-storage-{tag}-{b}" for b in range(banks)]
    with HindsightClient(url) as client:
        for bank in bank_ids:
            client.create_bank(bank, extraction_mode="chunks")
    layers = SettingsLayers("bench")
    layers.configure({"hindsight_api_url": url, "inject_memories": False})
    pipeline = MemoryPipeline(source="bench-storage")
    worker = default_worker()
    before = worker.stats()
    lanes = [(bank, f"conversation-{c}") for bank in bank_ids for c in range(conversations)]
    per_lane = max(1, turns // len(lanes))
    histories: dict[tuple[str, str], list[dict[str, Any]]] = {lane: [] for lane in lanes}
    markers: dict[tuple[str, str], list[str]] = {lane: [] for lane in lanes}
    settings = {lane: layers.resolve({"bank_id": lane[0], "session_id": lane[1]}) for lane in lanes}
    finish_ms: list[float] = []
    # Warm the path (the first submit starts the worker thread): one throwaway turn in the first bank.
    warm = pipeline.prepare(
        [{"role": "user", "content": "warm-up"}], layers.resolve({"bank_id": bank_ids[0]}), model="bench"
    )
    pipeline.finish(warm, "ok")
    assert worker.flush(timeout=60)
    started = time.perf_counter()
    for t in range(per_lane):
        for lane in lanes:
            marker = f"zq{tag}{lanes.index(lane)}t{t}x"
            history = histories[lane]
            history.append(
                {"role": "user", "content": f"Turn {t}: remember that I like topic {t} ({marker})."}
            )
            call = pipeline.prepare(history, settings[lane], model="bench")
            reply = f"Noted: you like topic {t}."
            begin = time.perf_counter()
            pipeline.finish(call, reply)
            finish_ms.append((time.perf_counter() - begin) * 1000)
            history.append({"role": "assistant", "content": reply})
            markers[lane].append(marker)
    submitted = time.perf_counter()
    flushed_ok = worker.flush(timeout=300)
    flushed = time.perf_counter()
    # Until the server has them: every turn's marker readable in its conversation's document.
    waiting = set(lanes)
    deadline = flushed + 300
    while waiting and time.perf_counter() < deadline:
        for lane in list(waiting):
            text = document_text(url, lane[0], lane[1])
            if all(m in text for m in markers[lane]):
                waiting.discard(lane)
        if waiting:
            time.sleep(0.1)
    readable = time.perf_counter()
    missing = sum(
        sum(m not in document_text(url, lane[0], lane[1]) for m in markers[lane]) for lane in waiting
    )
    after = worker.stats()
    n = per_lane * len(lanes)
    result: dict[str, Any] = {
        "turns": n,
        "banks": banks,
        "conversations": len(lanes),
        "turns_per_conversation": per_lane,
        "finish_ms": summary(finish_ms),
        "submit_seconds": submitted - started,
        "flush_ok": flushed_ok,
        "flush_seconds": flushed - started,
        "readable_seconds": readable - started,
        "acknowledged_per_s": n / (flushed - started),
        "readable_per_s": n / (readable - started),
        "requests": after.requests - before.requests,
        "retries": after.retries - before.retries,
        "failed": after.failed - before.failed,
        "missing_turns": missing,
        "errors": [str(e) for e in worker.pending_errors()][:5],
    }
    if wait:  # the server goes on with graph maintenance and consolidation long after the text is stored
        wait_idle(url, bank_ids, timeout=900)
        result["server_idle_seconds"] = time.perf_counter() - started
    return result


def growth(url: str, turns: int, tag: str) -> dict[str, list[float]]:
    """Seconds the server works per turn, appended to one document vs. one document per turn."""
    from hindsight_core import HindsightClient

    out: dict[str, list[float]] = {}
    turn = (
        "user: Which topics do I like, and on which day did I say so? I am planning the next release.\n"
        "assistant: You like topic 3 and topic 7; you said so on Monday."
    )
    with HindsightClient(url) as client:
        for layout in ("append", "separate"):
            bank = f"bench-growth-{layout}-{tag}"
            client.create_bank(bank, extraction_mode="chunks")
            seconds: list[float] = []
            for i in range(turns):
                begin = time.perf_counter()
                if layout == "append":
                    client.retain(
                        bank, f"{turn} ({i})", document_id="conversation", update_mode="append", async_=True
                    )
                else:
                    client.retain(bank, f"{turn} ({i})", document_id=f"conversation-{i}", async_=True)
                wait_idle(url, [bank], timeout=120)
                seconds.append(time.perf_counter() - begin)
            out[layout] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--banks", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=10, help="conversations per bank")
    parser.add_argument("--growth-turns", type=int, default=20, help="0 skips the server-cost measurement")
    parser.add_argument("--wait-idle", action="store_true", help="also time until the server is idle")
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    started = time.perf_counter()
    with server_url(args.server_url) as url:
        report: dict[str, Any] = {"machine": machine()}
        if args.growth_turns:  # first: it needs a server with nothing else to do
            report["growth"] = growth(url, args.growth_turns, tag)
        report["throughput"] = throughput(
            url, args.turns, args.banks, args.conversations, tag, wait=args.wait_idle
        )
    report["seconds"] = time.perf_counter() - started
    write_json(args.json, report)


if __name__ == "__main__":
    main()
