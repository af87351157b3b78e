"""Recall in other words on the local server, and what its embeddings cost: start-up time and memory.

    uv run python -m bench.local_recall                       # hashed vs the local model, 1 start each
    uv run python -m bench.local_recall --embeddings model --starts 3
    uv run python -m bench.local_recall --cli-starts 3 [--core-src DIR]  # `hindsight-local start` times

For each embeddings choice a real local server is started (``LocalHindsightServer(embeddings=...)``), a
bank is configured as the demo configures it (text stored verbatim, no observations), the 36 facts of
``bench/paraphrases.py`` are retained (one item each), and each question, which asks for its fact in
other words, is recalled: the fact's rank among the results gives hit@1 and hit@3. Start-up is the time
to a healthy server; memory is the resident set (RSS) of the API, the embeddings endpoint and the
PostgreSQL postmaster after the workload. ``--cli-starts`` times ``hindsight-local start`` (a detached
start from a fresh process, as a person runs it) and stops it again; ``--core-src`` runs another checkout's
``hindsight_core`` (e.g. the code before this change) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import RESULTS, machine, write_json
from bench.paraphrases import PAIRS
from hindsight_core import HindsightClient
from hindsight_core.local import LocalHindsightServer, RunState


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _memory(state: RunState) -> dict[str, float | None]:
    return {
        "api_mb": _rss_mb(state.api_pid),
        "embeddings_mb": _rss_mb(state.embeddings_pid),
        "postgres_postmaster_mb": _rss_mb(state.postgres_pid),
    }


def _rank(texts: list[str], fact: str) -> int | None:
    for index, text in enumerate(texts):
        if fact in text or text in fact:
            return index + 1
    return None


def recall_quality(url: str) -> dict[str, Any]:
    """Retain the facts into a fresh bank, recall each question, return the ranks."""
    bank = f"bench-paraphrase-{uuid.uuid4().hex[:8]}"
    facts = [fact for fact, _ in PAIRS]
    with HindsightClient(url) as client:
        client.create_bank(bank, extraction_mode="chunks", enable_observations=False)
        started = time.perf_counter()
        client.retain_batch(bank, [{"content": fact} for fact in facts])
        retain_seconds = time.perf_counter() - started
        ranks: list[int | None] = []
        latencies: list[float] = []
        misses: list[dict[str, Any]] = []
        for fact, question in PAIRS:
            started = time.perf_counter()
            results = client.recall(bank, question).results
            latencies.append((time.perf_counter() - started) * 1000)
            texts = [result.text for result in results]
            rank = _rank(texts, fact)
            ranks.append(rank)
            if rank != 1:
                misses.append({"question": question, "fact": fact, "rank": rank, "first": texts[:1]})
        client.delete_bank(bank)
    return {
        "pairs": len(PAIRS),
        "hit_at_1": sum(rank == 1 for rank in ranks),
        "hit_at_3": sum(rank is not None and rank <= 3 for rank in ranks),
        "not_recalled": sum(rank is None for rank in ranks),
        "ranks": ranks,
        "retain_seconds": round(retain_seconds, 2),
        "recall_ms_median": round(statistics.median(latencies), 1),
        "misses": misses,
    }


def server_run(embeddings: str, starts: int) -> dict[str, Any]:
    startups: list[float] = []
    result: dict[str, Any] = {"embeddings": embeddings}
    for attempt in range(starts):
        server = LocalHindsightServer(name=f"bench-recall-{embeddings}-{os.getpid()}", embeddings=embeddings)
        try:
            server.start()
            state = server.state
            assert state is not None
            assert state.startup_seconds is not None
            startups.append(state.startup_seconds)
            result["embeddings_model"] = state.embeddings_model
            result["embeddings_dimensions"] = state.embeddings_dimensions
            result["memory_after_start"] = _memory(state)
            if attempt == 0:
                result["recall"] = recall_quality(server.url)
                result["memory_after_workload"] = _memory(state)
        finally:
            server.stop()
    result["startup_seconds"] = startups
    return result


def cli_starts(count: int, core_src: str | None, name: str) -> list[float]:
    env = dict(os.environ)
    if core_src:
        env["PYTHONPATH"] = core_src
    command = [sys.executable, "-m", "hindsight_core.local.cli"]
    times: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "start", "--name", name], env=env, capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - started
        subprocess.run([*command, "stop", "--name", name], env=env, capture_output=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"hindsight-local start failed:\n{done.stderr}")
        times.append(round(elapsed, 2))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--embeddings", default="hashed,model", help="comma-separated: hashed, model")
    parser.add_argument("--starts", type=int, default=1, help="server starts per choice (start-up times)")
    parser.add_argument("--cli-starts", type=int, default=0, help="time `hindsight-local start` N times")
    parser.add_argument("--core-src", help="run the CLI from this hindsight_core source directory")
    parser.add_argument("--output", default=str(RESULTS / "local_recall.json"))
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    if args.cli_starts:
        report["cli_start_seconds"] = cli_starts(args.cli_starts, args.core_src, f"bench-cli-{os.getpid()}")
        report["core_src"] = args.core_src or "this checkout"
        print(f"hindsight-local start: {report['cli_start_seconds']} s", file=sys.stderr)
    else:
        report["runs"] = []
        for choice in args.embeddings.split(","):
            run = server_run(choice, args.starts)
            report["runs"].append(run)
            recall = run["recall"]
            print(
                f"{choice:7} {run['embeddings_model']}: hit@1 {recall['hit_at_1']}/{recall['pairs']}, "
                f"hit@3 {recall['hit_at_3']}/{recall['pairs']}, start-up {run['startup_seconds']} s, "
                f"RSS {run['memory_after_workload']}",
                file=sys.stderr,
            )
    report["load_after"] = os.getloadavg()
    write_json(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
