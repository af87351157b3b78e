"""The published hindsight-litellm 0.5.4 on the overhead workload, for comparison with ours.

Runs in its own venv (``bench.overhead`` creates it: ``hindsight-litellm==0.5.4`` and the same LiteLLM
version as ours), never in the workspace venv: it imports only the standard library, LiteLLM and 0.5.4.
Each iteration makes a plain ``litellm.completion`` and a ``hindsight_litellm.completion`` against the
same loopback provider and server; it times the recall inside the call by wrapping
``hindsight_client.Hindsight.recall`` (the client 0.5.4 creates for each call), LiteLLM's own part
(``litellm.completion``), the injection step (``_inject_memories``) and the caller's side of storage
(``_store_conversation``).

Usage: ``python bench/legacy_054.py --server-url URL --provider-url URL --bank BANK --iterations N``;
prints a JSON object of raw samples (milliseconds).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import importlib
import importlib.metadata
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any


def timed(samples: list[float], function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            samples.append((time.perf_counter() - started) * 1000)

    return wrapper


def plain_call(
    litellm: dict[str, Any], messages: list[dict[str, Any]], call: dict[str, str], *, idle: float
) -> float:
    """A plain LiteLLM call, after ``idle`` ms of sleep: the memory call's LLM request also follows a wait
    (its recall), and on this machine a call after a wait is slower than one made back to back."""
    time.sleep(idle / 1000)
    started = time.perf_counter()
    litellm["completion"](messages=messages, **call)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--provider-url", required=True)
    parser.add_argument("--bank", required=True)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--query", default="Which topics does the user like, and on which day?")
    parser.add_argument("--tag", default="legacy", help="conversation names: '<query> (conversation TAG-i)'")
    parser.add_argument("--no-store", action="store_true", help="store_conversations=False")
    args = parser.parse_args()

    started_import = time.perf_counter()
    legacy: Any = importlib.import_module("hindsight_litellm")
    litellm: Any = importlib.import_module("litellm")
    hindsight_client: Any = importlib.import_module("hindsight_client")
    import_ms = (time.perf_counter() - started_import) * 1000

    legacy.configure(
        hindsight_api_url=args.server_url,
        bank_id=args.bank,
        store_conversations=not args.no_store,
        tags=["conversation"],
        recall_tags=["seed"],
        recall_tags_match="any_strict",
    )

    recall_ms: list[float] = []
    inject_ms: list[float] = []
    store_ms: list[float] = []
    results: list[int] = []
    original_recall = hindsight_client.Hindsight.recall

    def counted_recall(self: Any, *a: Any, **k: Any) -> Any:
        response = original_recall(self, *a, **k)
        results.append(len(getattr(response, "results", response) or []))
        return response

    hindsight_client.Hindsight.recall = timed(recall_ms, counted_recall)
    legacy._inject_memories = timed(inject_ms, legacy._inject_memories)
    legacy._store_conversation = timed(store_ms, legacy._store_conversation)

    def messages_for(i: int) -> list[dict[str, Any]]:
        """A new conversation per call (its own document), the same question."""
        return [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"{args.query} (conversation {args.tag}-{i})"},
        ]

    call = {"model": "openai/gpt-4o-mini", "api_base": args.provider_url, "api_key": "sk-test"}
    llm_ms: list[float] = []  # LiteLLM's own time inside each memory call
    plain_litellm = {"completion": litellm.completion}  # the plain calls use the unwrapped function
    litellm.completion = timed(llm_ms, litellm.completion)
    calls: list[dict[str, float]] = []
    errors: list[str] = []
    last_recall = 60.0
    for i in range(args.warmup + args.iterations):
        messages = messages_for(i)
        # Alternate the order, so that neither kind always runs while the other's storage thread works.
        if i % 2:
            plain = plain_call(plain_litellm, messages, call, idle=last_recall)
        marks = (len(recall_ms), len(inject_ms), len(store_ms), len(results), len(llm_ms))
        started = time.perf_counter()
        try:
            legacy.completion(messages=messages, **call)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        memory = (time.perf_counter() - started) * 1000
        recall = sum(recall_ms[marks[0] :]) if len(recall_ms) > marks[0] else float("nan")
        last_recall = last_recall if math.isnan(recall) else recall
        if not i % 2:
            plain = plain_call(plain_litellm, messages, call, idle=last_recall)
        if i < args.warmup:
            continue
        calls.append(
            {
                "plain": plain,
                "memory": memory,
                "recall": recall,
                "llm": sum(llm_ms[marks[4] :]),
                "prepare": sum(inject_ms[marks[1] :]),
                "finish": sum(store_ms[marks[2] :]),
                "results": float(sum(results[marks[3] :])),
            }
        )
    # 0.5.4 stores on a daemon thread per call; let them finish so none is cut off at exit.
    deadline = time.monotonic() + 60
    for thread in threading.enumerate():
        if "_store_conversation" in thread.name:  # Python names a thread after its target
            thread.join(max(0.0, deadline - time.monotonic()))
    print(
        json.dumps(
            {
                "version": importlib.metadata.version("hindsight-litellm"),
                "litellm": importlib.metadata.version("litellm"),
                "hindsight_client": importlib.metadata.version("hindsight-client"),
                "import_ms": import_ms,
                "calls": calls,
                "errors": errors[:5],
                "error_count": len(errors),
                "storage_errors": [str(e) for e in legacy.get_pending_storage_errors()][:5],
            }
        )
    )


if __name__ == "__main__":
    main()
