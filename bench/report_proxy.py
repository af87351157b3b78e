# ruff: noqa: E501  (the report's sentences are long strings)
"""The LiteLLM proxy section of ``docs/performance.md`` (section 10), from ``bench/proxy.py``'s results."""

from __future__ import annotations

from typing import Any

__all__ = ["headline_items", "proxy_section", "same_process_section"]

R = dict[str, Any]

_HOOKS = {
    "baseline": "a hook that injects the same block (baseline)",
    "memory": "`hindsight_proxy_hook`, storage on",
    "memory_no_storage": "`HindsightProxyHook(store_conversations=False)`",
    "storage_only": "`HindsightProxyHook(inject_memories=False)`",
}


def _label(hook: str, before: str = "77caa33") -> str:
    name, _, version = hook.partition("@")
    text = _HOOKS.get(name, name)
    return f"{text}, before (commit {before})" if version == "before" else text


def _line(label: str, clients: int, row: R, base: R | None, *, digits: int) -> str:
    """One table row: ``row``'s figures and, with a ``base``, what it adds over it."""
    extra = f"{row['cpu_ms_per_request'] - base['cpu_ms_per_request']:+.{digits}f}" if base else "-"
    ratio = f"{row['requests_per_s'] / base['requests_per_s']:.2f}" if base else "-"
    per_turn = row.get("retain_requests_per_turn")
    return f"| {label} | {clients} | {row['cpu_ms_per_request']:.{digits}f} | {extra} | {row['requests_per_s']:.1f} | {ratio} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {per_turn if per_turn is not None else '-'} |"


def _same_process_table(rows: list[R], before: str) -> list[str]:
    """Rows of one proxy process per checkout: each hook compared with the baseline of its own process."""
    out = [
        "| hook | clients | proxy CPU ms / request | added over the same process's baseline | req/s | ratio to that baseline | p50 ms | p99 ms | retain requests per stored turn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clients in sorted({r["clients"] for r in rows}):
        group = {r["hook"]: r for r in rows if r["clients"] == clients}
        for hook in sorted(group, key=lambda h: (h.endswith("@before"), not h.startswith("baseline"), h)):
            base = group.get("baseline@before" if hook.endswith("@before") else "baseline")
            out.append(_line(_label(hook, before), clients, group[hook], base, digits=2))
    return [*out, ""]


def same_process_section(results: R) -> list[str]:
    """Section 10's second method: every hook served by one proxy process per checkout."""
    result = results.get("proxy_same_process")
    if not result or not result.get("rows"):
        return []
    before = str(result.get("before_commit", "before"))
    return [
        "### One process serving every hook",
        "",
        "Separate processes differ by a few ms of CPU per request even when they run the same code: run with the same hook in two processes, the added CPU came out +2.98 and +4.30 ms (storage on) and -0.10 and +2.10 ms (storage off). So `bench/proxy.py` now runs, by default, one proxy process per checkout with the `switch` hook (`bench/_proxy_hooks.py`), which hands each request to the hook its `bench_hook` field names; the rounds interleave the hooks as before, and each hook is compared with the baseline of its own process. "
        + str(result.get("measured", "")),
        "",
        *_same_process_table(result["rows"], before),
        *[str(line) for line in result.get("notes", [])],
        "",
    ]


def _by(rows: list[R], banks: str, clients: int) -> dict[str, R]:
    return {r["hook"]: r for r in rows if r.get("banks", "own") == banks and r["clients"] == clients}


def _table(rows: list[R], banks: str) -> list[str]:
    levels = sorted({r["clients"] for r in rows if r.get("banks", "own") == banks})
    out = [
        "| hook | clients | proxy CPU ms / request | added over the baseline | req/s | ratio to the baseline | p50 ms | p99 ms | retain requests per stored turn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clients in levels:
        group = _by(rows, banks, clients)
        base = group.get("baseline")
        order = sorted(group, key=lambda h: (h != "baseline", h.endswith("@before"), h))
        for hook in order:
            out.append(_line(_label(hook), clients, group[hook], base, digits=1))
    return [*out, ""]


def _added(rows: list[R], banks: str, clients: int, hook: str) -> tuple[float, float] | None:
    group = _by(rows, banks, clients)
    if "baseline" not in group or hook not in group:
        return None
    base, row = group["baseline"], group[hook]
    return row["cpu_ms_per_request"] - base["cpu_ms_per_request"], row["requests_per_s"] / base[
        "requests_per_s"
    ]


def headline_items(results: R) -> list[str]:
    result = results.get("proxy")
    if not result or not result.get("rows"):
        return []
    rows = result["rows"]
    parts = []
    for clients in sorted({r["clients"] for r in rows if r.get("banks", "own") == "own"}):
        now = _added(rows, "own", clients, "memory")
        before = _added(rows, "own", clients, "memory@before")
        if now:
            text = f"{clients} clients: +{now[0]:.1f} ms of CPU per request, {now[1]:.2f} of the baseline's throughput"
            if before:
                text += f" (before: +{before[0]:.1f} ms, {before[1]:.2f})"
            parts.append(text)
    if not parts:
        return []
    return [
        "- **LiteLLM proxy with memory** (section 10, storage on, each client its own bank), over a hook that injects the same block: "
        + "; ".join(parts)
        + "."
    ]


def proxy_section(results: R) -> list[str]:
    result = results.get("proxy")
    if not result or not result.get("rows"):
        return []
    rows = result["rows"]
    machine = result.get("machine", {})
    lines = [
        "## 10. The LiteLLM proxy: CPU per request, throughput, storage batching",
        "",
        "Method (`bench/proxy.py`): the real proxy (`python -m litellm.proxy.proxy_cli --config config.yaml`, one process) per hook, all of them running at once, forwarding to the loopback fake OpenAI provider (its own process), with a Hindsight stand-in (`bench/_fake_hindsight.py`, its own process) that answers every recall at once with the same 12 recorded memories and acknowledges every retain. C clients send chat requests one after another (each client its own `user`, so its own bank, and its own conversation; or, in the second table, every client one team bank), 600 requests per hook and level, after a warm-up, in interleaved rounds (each hook once per round, so a change of the machine's load hits every hook alike). The proxy's CPU (user + system, `/proc`) is read before the load and after storage has drained, so storage's work is in it. The baseline hook injects the very block our memory renders from those memories, with none of the work of getting it: what remains over it is memory's own cost. `@before` rows are the hooks of commit 77caa33 (before this work), run in the same rounds from that checkout's venv."
        + (f" Measured {machine['time']} on the shared 2-core machine." if machine.get("time") else "")
        + (f" {result['measured']}" if result.get("measured") else ""),
        "",
        "### Each client its own bank",
        "",
        *_table(rows, "own"),
    ]
    if any(r.get("banks") == "shared" for r in rows):
        lines += ["### Every client one team bank", "", *_table(rows, "shared")]
    lines += [
        "What changed (found with py-spy and cProfile on the proxy): nearly all of memory's cost in the proxy was HTTP, not memory. One small request costs about 1 ms of CPU on this machine through httpx's own transports (httpcore over anyio or h11), against about 0.25-0.3 ms through `http.client` or aiohttp. The proxy recalls for every request on its event loop and stores every turn from the storage thread, so the clients now send their bytes through `http.client` (blocking client) and aiohttp (async client, when the process has imported aiohttp, as LiteLLM does), with httpx still building, retrying and parsing every request (`hindsight_core/client/_stdlib.py`, `_aiohttp.py`). The storage worker lingered (in these runs) up to 50 ms for more turns before it forms batches, so under load it wakes once per linger instead of once per turn (each wake-up took the interpreter lock from the event loop) and sends one request per bank for the turns that arrived together.",
        "",
        "What remains: with storage off the hook costs about the recall's HTTP request plus our plan, render and inject (a few tenths of a ms). With storage on and every client its own bank, every turn still needs a retain request of its own (the server's API stores into one bank per request, and one client's turns arrive seconds apart), about 1 ms of CPU per request on this machine, plus the storage thread's share of the interpreter lock. When clients share a bank, turns arriving within the linger go out together (0.36 retain requests per turn at 10 clients, 0.13 at 100, in the run below), but storage still added about 1.8 ms per request at 10 clients: more than its requests explain, which is not yet accounted for. LiteLLM itself spends 40-45 ms of CPU per request here (much of it in its authentication path, which tries imports that fail on every request), so the figures carry a few ms of noise between rounds.",
        "",
        *same_process_section(results),
    ]
    return lines
