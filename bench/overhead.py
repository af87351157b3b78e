"""Per-call overhead of memory beyond the recall round trip: ours, and the published 0.5.4, same workload.

Each iteration makes one plain ``litellm.completion`` and one ``hindsight_litellm.completion`` (order
alternating) against the same loopback fake OpenAI provider (its own process) and the same real Hindsight
server; the bank holds ``--facts`` facts tagged ``seed`` and recall is restricted to that tag, so that the
conversations stored during the run (tagged ``conversation``) do not change what recall returns. The recall
time of each call is measured inside the call (ours: the debug record's ``timings_ms["recall"]``; 0.5.4: a
wrapper around ``hindsight_client.Hindsight.recall``), and

    overhead = memory call - its recall - the plain call of the same iteration      (per call; p50/p95/p99)

Each plain call is made after sleeping as long as the last recall took: on this machine an LLM call made
after a wait is measurably slower than one made back to back (2.8 ms vs 4.7 ms after 70 ms), and the memory
call's LLM request always follows its recall. LiteLLM's part of each memory call is timed too, which gives
the integration's own code directly (memory call - recall - LiteLLM's part), with no baseline.

Two modes: ``store_on`` (the default configuration: every call also stores its conversation) and
``store_off`` (no storage, so the server only answers recalls: the quietest measurement).

0.5.4 runs in its own venv (created on first use with ``uv``: ``hindsight-litellm==0.5.4`` and our LiteLLM
version) through ``bench/legacy_054.py``, in the same run, against the same server, provider and workload
(its own bank, seeded identically). Rounds alternate ours / 0.5.4 so that drift hits both.

Run: ``uv run python -m bench.overhead [--iterations N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._common import (
    ROOT,
    FakeProvider,
    facts,
    machine,
    percentile,
    seed_tagged,
    server_url,
    summary,
    wait_idle,
    write_json,
)

LEGACY_VERSION = "0.5.4"
DEFAULT_VENV = Path(os.environ.get("TMPDIR", "/tmp")) / f"hindsight-litellm-{LEGACY_VERSION}-bench-venv"
QUERY = "Which topics does the user like, and on which day?"
Call = dict[str, float]


def legacy_python(venv: Path, litellm_version: str) -> Path:
    """The interpreter of a venv holding hindsight-litellm 0.5.4 and ``litellm_version`` (made if needed)."""
    python = venv / "bin" / "python"
    probe = "import importlib.metadata as m; print(m.version('hindsight-litellm'), m.version('litellm'))"
    if python.exists():
        found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.split() == [LEGACY_VERSION, litellm_version]:
            return python
    uv = [sys.executable, "-m", "uv"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    print(
        f"creating {venv} with hindsight-litellm=={LEGACY_VERSION} litellm=={litellm_version}",
        file=sys.stderr,
    )
    subprocess.run([*uv, "venv", "--quiet", "--clear", "--python", version, str(venv)], check=True)
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            f"hindsight-litellm=={LEGACY_VERSION}",
            f"litellm=={litellm_version}",
        ],
        check=True,
    )
    return python


def messages_for(tag: str, i: int) -> list[dict[str, Any]]:
    """A new conversation per call (its own document), the same question."""
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"{QUERY} (conversation {tag}-{i})"},
    ]


def run_ours(
    url: str, provider: str, bank: str, iterations: int, warmup: int, *, store: bool, tag: str
) -> list[Call]:
    import litellm

    import hindsight_litellm
    from hindsight_litellm.config import PIPELINE

    hindsight_litellm.configure(
        hindsight_api_url=url,
        bank_id=bank,
        store_conversations=store,
        tags=["conversation"],
        recall_tags=["seed"],
        recall_tags_match="any_strict",
    )
    finish_ms: list[float] = []
    original_finish = PIPELINE.finish

    def finish(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            original_finish(*args, **kwargs)
        finally:
            finish_ms.append((time.perf_counter() - started) * 1000)

    setattr(PIPELINE, "finish", finish)  # noqa: B010 (an instance attribute shadowing the method)
    call: dict[str, Any] = {"model": "openai/gpt-4o-mini", "api_base": provider, "api_key": "sk-test"}

    llm_ms: list[float] = []  # LiteLLM's own time inside each memory call
    original_completion = litellm.completion

    def completion(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_completion(*args, **kwargs)
        finally:
            llm_ms.append((time.perf_counter() - started) * 1000)

    def plain_call(messages: list[dict[str, Any]], idle: float) -> float:
        """A plain LiteLLM call after ``idle`` ms of sleep: the memory call's LLM request also follows a
        wait (its recall), and on this machine a call after a wait is slower than one made back to back."""
        time.sleep(idle / 1000)
        started = time.perf_counter()
        original_completion(messages=messages, **call)
        return (time.perf_counter() - started) * 1000

    calls: list[Call] = []
    last_recall = 60.0
    litellm.completion = completion  # what hindsight_litellm.completion calls (LiteLLM is not patched)
    try:
        for i in range(warmup + iterations):
            messages = messages_for(tag, i)
            # Alternate the order, so that neither kind always runs while storage works in the background.
            if i % 2:
                plain = plain_call(messages, last_recall)
            marks = (len(finish_ms), len(llm_ms))
            started = time.perf_counter()
            hindsight_litellm.completion(messages=messages, **call)
            memory = (time.perf_counter() - started) * 1000
            record = hindsight_litellm.get_last_injection_debug()
            assert record is not None
            recall = record.timings_ms.get("recall", math.nan)
            last_recall = last_recall if math.isnan(recall) else recall
            if not i % 2:
                plain = plain_call(messages, last_recall)
            if i < warmup:
                continue
            calls.append(
                {
                    "plain": plain,
                    "memory": memory,
                    "recall": recall,
                    "llm": sum(llm_ms[marks[1] :]),
                    "prepare": record.timings_ms.get("total", math.nan),
                    "finish": sum(finish_ms[marks[0] :]),
                    "results": float(record.memories_found),
                    "used": float(record.memories_used),
                    "failed_open": float(record.error is not None),
                }
            )
        assert PIPELINE.storage.flush(timeout=120), "storage did not drain"
    finally:
        litellm.completion = original_completion
        with contextlib.suppress(AttributeError):
            delattr(PIPELINE, "finish")
    return calls


def litellm_prompt_cost(url: str, provider: str, bank: str, pairs: int) -> dict[str, Any]:
    """What LiteLLM itself spends on the longer prompt: plain ``litellm.completion`` with the caller's
    messages vs. with the messages as memory sends them (injected), back to back, alternating."""
    import litellm

    import hindsight_litellm
    from hindsight_litellm.config import LAYERS, PIPELINE

    hindsight_litellm.configure(
        hindsight_api_url=url,
        bank_id=bank,
        store_conversations=False,
        recall_tags=["seed"],
        recall_tags_match="any_strict",
    )
    messages = messages_for("prompt-cost", 0)
    injected = PIPELINE.prepare(messages, LAYERS.resolve(), model="openai/gpt-4o-mini").messages
    call: dict[str, Any] = {"model": "openai/gpt-4o-mini", "api_base": provider, "api_key": "sk-test"}
    short: list[float] = []
    long: list[float] = []
    for i in range(pairs + 5):
        for which, send in ((short, messages), (long, injected))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            litellm.completion(messages=send, **call)
            if i >= 5:
                which.append((time.perf_counter() - started) * 1000)
    return {
        "plain": summary(short),
        "plain_injected": summary(long),
        "prompt_chars": sum(len(str(m.get("content", ""))) for m in injected),
        "difference": _diff(long, short),
    }


def run_legacy(
    python: Path,
    url: str,
    provider: str,
    bank: str,
    iterations: int,
    warmup: int,
    *,
    store: bool,
    tag: str,
) -> dict[str, Any]:
    command = [
        str(python),
        str(ROOT / "bench" / "legacy_054.py"),
        "--server-url",
        url,
        "--provider-url",
        provider,
        "--bank",
        bank,
        "--iterations",
        str(iterations),
        "--warmup",
        str(warmup),
        "--query",
        QUERY,
        "--tag",
        tag,
    ]
    if not store:
        command.append("--no-store")
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"legacy_054.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _diff(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": percentile(a, q) - percentile(b, q) for q in (50, 95, 99)}


def analyse(calls: Sequence[Call]) -> dict[str, Any]:
    """Percentiles of each series and the overhead beyond the recall round trip."""

    def series(key: str | Callable[[Call], float]) -> list[float]:
        values = [key(c) if callable(key) else c[key] for c in calls]
        return [v for v in values if not math.isnan(v)]

    plain = series("plain")
    beyond = series(lambda c: c["memory"] - c["recall"])
    out: dict[str, Any] = {
        "calls": len(calls),
        "plain": summary(plain),
        "memory": summary(series("memory")),
        "recall": summary(series("recall")),
        "llm": summary(series("llm")),
        "memory_minus_recall": summary(beyond),
        "prepare_minus_recall": summary(series(lambda c: c["prepare"] - c["recall"])),
        "finish": summary(series("finish")),
        "added_latency": summary(series(lambda c: c["memory"] - c["plain"])),
        "results": summary(series("results")),
        # The overhead beyond recall, per call: the memory call less its recall less the plain call made next
        # to it (same iteration, same idle before the LLM request). The noise of both calls is in it.
        "overhead": summary(series(lambda c: c["memory"] - c["recall"] - c["plain"])),
        # The same from the two distributions: P_q(memory - recall) - P_q(plain).
        "overhead_percentile_difference": _diff(beyond, plain),
        # The integration's own code, measured directly per call: the memory call less its recall and less
        # LiteLLM's part of it (no baseline needed).
        "integration_code": summary(series(lambda c: c["memory"] - c["recall"] - c["llm"])),
        "failed_open": sum(c.get("failed_open", 0.0) for c in calls),
    }
    if calls and "used" in calls[0]:
        out["used"] = summary(series("used"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument("--iterations", type=int, default=100, help="measured calls per package and mode")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured calls per round")
    parser.add_argument("--rounds", type=int, default=2, help="ours / 0.5.4 alternations per mode")
    parser.add_argument("--facts", type=int, default=50, help="facts in each bank")
    parser.add_argument("--legacy-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-legacy", action="store_true", help="skip hindsight-litellm 0.5.4")
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    info = machine()
    legacy: Path | None = None
    legacy_error: str | None = None
    if not args.no_legacy:
        try:
            legacy = legacy_python(args.legacy_venv, info["litellm"])
        except (subprocess.CalledProcessError, OSError) as exc:
            legacy_error = f"could not install hindsight-litellm {LEGACY_VERSION}: {exc}"
    per_round = max(1, args.iterations // args.rounds)
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": info,
        "iterations": per_round * args.rounds,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "facts": args.facts,
        "modes": {},
    }
    waited = seeded = 0.0
    with server_url(args.server_url) as url, FakeProvider(reply="OK, noted.") as provider:
        for store in (True, False):
            mode = "store_on" if store else "store_off"
            bank_ours, bank_theirs = f"bench-overhead-{mode}-ours-{tag}", f"bench-overhead-{mode}-054-{tag}"
            seeding = time.perf_counter()
            for bank in (bank_ours, bank_theirs):
                seed_tagged(url, bank, facts(args.facts), ["seed"])
            wait_idle(url, [bank_ours, bank_theirs])
            seeded += time.perf_counter() - seeding
            ours: list[Call] = []
            theirs: list[Call] = []
            legacy_meta: dict[str, Any] = {}
            for r in range(args.rounds):
                ours += run_ours(
                    url, provider.base_url, bank_ours, per_round, args.warmup, store=store, tag=f"{tag}o{r}"
                )
                waited += wait_idle(url, [bank_ours])
                if legacy is not None and legacy_error is None:
                    try:
                        result = run_legacy(
                            legacy,
                            url,
                            provider.base_url,
                            bank_theirs,
                            per_round,
                            args.warmup,
                            store=store,
                            tag=f"{tag}l{r}",
                        )
                    except RuntimeError as exc:
                        legacy_error = str(exc)
                    else:
                        theirs += result.pop("calls")
                        legacy_meta = result
                    waited += wait_idle(url, [bank_theirs])
            entry: dict[str, Any] = {"ours": analyse(ours), "raw": {"ours": ours}}
            if theirs:
                entry["legacy"] = {**analyse(theirs), **legacy_meta}
                entry["raw"]["legacy"] = theirs
                for key, name in (("overhead", "ratio"), ("integration_code", "ratio_code")):
                    entry[name] = {
                        q: entry["ours"][key][q] / entry["legacy"][key][q]
                        for q in ("p50", "p95", "p99")
                        if entry["legacy"][key][q] > 0
                    }
            if not store:
                entry["litellm_prompt_cost"] = litellm_prompt_cost(url, provider.base_url, bank_ours, 60)
            report["modes"][mode] = entry
    report["seconds"] = time.perf_counter() - started
    report["waited_for_server_s"] = waited
    report["seeding_s"] = seeded
    if legacy_error:
        report["legacy_error"] = legacy_error
    write_json(args.json, report)


if __name__ == "__main__":
    main()
