# ruff: noqa: E501  (the report's sentences are long strings)
"""The circuit-breaker section of ``docs/performance.md`` (section 9), and the summary ``bench/breaker.py``
prints, from its results."""

from __future__ import annotations

from typing import Any

__all__ = ["breaker_section", "console_table", "headline_items"]

R = dict[str, Any]

_NAMES = {
    "litellm.completion, hung": "`hindsight_litellm.completion`, hung server",
    "litellm.completion, refused": "`hindsight_litellm.completion`, refused connections",
    "langchain, hung": "LangChain `RunnableWithHindsight`, hung server",
    "llamaindex, hung": "LlamaIndex `HindsightMemory` in a chat engine, hung server",
}


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*out, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _rows(result: R) -> list[R]:
    return [*result.get("outages", []), *([result["waves"]] if result.get("waves") else [])]


def _name(row: R) -> str:
    if "tasks" in row:
        return f"`hindsight_litellm.acompletion`, {row['tasks']} concurrent tasks, hung server"
    return str(_NAMES.get(row["scenario"], row["scenario"]))


def _gc(pauses: R) -> str:
    full = pauses.get("full_collections", 0)
    text = f"{pauses['collections']} collections, the longest {_ms(pauses['max_ms'])}"
    return text + (f" ({full} full, up to {_ms(pauses['full_max_ms'])})" if full else " (none full)")


def _outage_seconds(row: R) -> str:
    return f"{row['up_at'] - row['down_at']:.0f} s"


def headline_items(results: R) -> list[str]:
    result = results.get("breaker")
    if not result or not _rows(result):
        return []
    rows = _rows(result)
    sync = [r for r in rows if "tasks" not in r]
    recovery = [r["recovery_ms"] for r in rows if r.get("recovery_ms") is not None]
    text = "- **Circuit breaker** (section 9): an outage holds its first call"
    hung = [r["first_held_ms"] for r in sync if r["scenario"].endswith("hung")]
    if hung:
        text += f" (one caller, hung server: {_ms(max(hung))} at most, the 5 s recall budget)"
    if sync:
        text += (
            f"; every later call of the outage skips memory at once: for one caller at most "
            f"{_ms(max(r['later_max_held_ms'] for r in sync))} a call, memory's part at most "
            f"{max(r['later_max_memory_ms'] for r in sync):.1f} ms"
        )
    waves = result.get("waves")
    if waves:
        text += f", in {waves['tasks']} concurrent tasks memory's part at most {waves['later_max_memory_ms']:.1f} ms"
    text += f"; memory is back in the prompt {_ms(min(recovery))}-{_ms(max(recovery))} after the server answers again."
    flap = result.get("flap")
    if flap:
        text += (
            f" Flapping 2 s up / 2 s down for 30 s: {flap['answered']}/{flap['calls']} calls answered, {flap['held_over_budget']} held beyond the budget, "
            f"{flap['up_share_with_memory']:.0%} of the up-phase calls with memory."
        )
    return [text]


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return _ms(low) if low == high else f"{_ms(low)}-{_ms(high)}"


def _which(costs: list[R]) -> str:
    in_flight, total = sum(c["in_flight_when_down"] for c in costs), sum(c["calls_held"] for c in costs)
    if in_flight == total:
        return "each in flight when the server went down"
    if not in_flight:
        return "each the first to start while the server was down"
    rest = "the other" if total - in_flight == 1 else "the others"
    return f"{in_flight} in flight when the server went down, {rest} the first to start while it was down"


def _flap_text(flap: R) -> str:
    costs = flap["cost_per_down_phase"]
    counts = sorted({c["calls_held"] for c in costs})
    text = (
        f"**Flapping** (up 2 s, down 2 s for 30 s, {flap['down_phases'].get('hung', 0)} hung and "
        f"{flap['down_phases'].get('refused', 0)} refused phases in turn, a call every 0.5 s): {flap['answered']} of "
        f"{flap['calls']} calls answered, **{flap['held_over_budget']} held beyond the budget** (the longest "
        f"{_ms(flap['max_held_ms'])}). Each of the {len(costs)} down phases held "
        + (f"{counts[0]} call" if counts == [1] else f"{counts[0]}-{counts[-1]} calls")
        + f" more than 50 ms ({_which(costs)})"
    )
    for kind in ("hung", "refused"):
        mine = [c for c in costs if c["kind"] == kind and c["calls_held"]]
        if not mine:
            continue
        held = [c["max_held_ms"] for c in mine]
        got = sum(c["with_memory"] for c in mine)
        total = sum(c["calls_held"] for c in mine)
        text += f"; in the {kind} phases {_span(held)}" + (
            f", and {got} of {total} got their memory (their lookup's retry reached the server once it was back)"
            if got
            else ", without memory (the lookup failed after its connection retries)"
        )
    others = sum(c["other_calls"] for c in costs)
    text += (
        f". The {others} other calls that started while the server was down skipped memory at once "
        f"({sum(c['other_lookups_sent'] for c in costs)} lookups sent). **{flap['up_with_memory']} of {flap['up_calls']} "
        f"up-phase calls ({flap['up_share_with_memory']:.0%}) had memory** (p50 of the calls with memory "
        f"{_ms(flap['with_memory_held_p50_ms'])}); memory was back "
        + ", ".join(_ms(x) for x in flap["memory_back_after_up_ms"])
        + " after each up."
    )
    return text


def breaker_section(results: R) -> list[str]:
    lines = ["## 9. Circuit breaker: a server that hangs, refuses or flaps", ""]
    result = results.get("breaker")
    if not result:
        return [*lines, "Not measured in this run.", ""]
    settings = result.get("settings", {})
    load = result.get("load") or {}
    lines += [
        "Method (`bench/breaker.py`): the real local server behind a loopback TCP proxy (`tests/faults.py`, `CuttableProxy`) that "
        "hangs (accepts connections, never answers), refuses (accepts and resets at once) or forwards, and drops what it held "
        "when it is restored; the model is the loopback fake OpenAI provider (in the benchmark's process) for LiteLLM and the "
        "frameworks' fakes for LangChain and LlamaIndex (`tests/reliability/adapters.py`). Default settings: recall budget "
        f"{settings.get('recall_timeout', 5.0):g} s, 2 retries, storage on, the breaker's probe every "
        f"{', '.join(f'{x:g}' for x in settings.get('probe_intervals', ()))} s (then the last again) with a "
        f"{settings.get('probe_timeout', 1.0):g} s timeout. One caller makes a call every 0.5 s (the next at once when one took longer); "
        "each LiteLLM or LangChain call is a new conversation, the LlamaIndex chat engine keeps one. A call is *held* for its whole "
        "wall time (memory, the framework, the fake model); *memory's part* is the debug record's `timings_ms[\"total\"]`; *memory back* "
        "runs from the server answering again to the end of the first call whose prompt held the memory block, and *found* to when "
        "the breaker was told the server answers (its probe, or a storage request that got an answer). "
        f"Measured {result.get('started', '?')} on the shared {result.get('machine', {}).get('cores', '?')}-core machine "
        f"({result.get('machine', {}).get('cpu', '?')}), load average (1 min) {load.get('before')} before and {load.get('after')} after; "
        f"{result.get('seconds', '?')} s in all.",
        "",
    ]
    rows = []
    for row in _rows(result):
        rows.append(
            [
                _name(row),
                f"{_outage_seconds(row)}, {row['calls']} calls",
                _ms(row["first_held_ms"]),
                f"{row['later_calls']}: {_ms(row['later_max_held_ms'])} ({row['later_max_memory_ms']:.1f} ms)",
                str(row["later_lookups_sent"]),
                _ms(row["probe_found_ms"]),
                f"**{_ms(row['recovery_ms'])}**",
                str(row["calls_without_memory_after_up"]),
            ]
        )
    lines += _table(
        [
            "integration, outage",
            "outage, calls",
            "first call of the outage held",
            "later calls of the outage: count, max held (memory's part)",
            "later lookups sent",
            "breaker found the server",
            "memory back in the prompt",
            "calls without memory after the server was back",
        ],
        rows,
    )
    lines += [
        "The first call of an outage is the one that finds the server down (or whose lookup is in flight when it goes): it waits "
        "the recall budget when the server hangs, its connection retries when it refuses. The later calls of the outage send no "
        "lookup. How soon memory is back depends on who learns first that the server answers again: with storage on, usually "
        "the storage worker, whose waiting turns are retried within a fraction of a second; otherwise the probe, which checks "
        f"at most {max(settings.get('probe_intervals', (2.0,))):g} s after its last failed check (a check in flight when a hung "
        "server comes back fails with the connections the server drops), so up to about that long, plus the time to the next "
        "call (the trial) and its lookup. The 50-task run has storage off: only the probe finds the server there.",
        "",
    ]
    waves = result.get("waves")
    if waves:
        later, plain = waves["later_held_ms"], waves["plain_held_ms"]
        lines += [
            f"With {waves['tasks']} concurrent tasks, a wave of {waves['tasks']} calls every 0.5 s (the next at once when one took longer), "
            f"the first wave of the outage waited the budget ({_ms(waves['first_held_ms'])}, LiteLLM's work for the {waves['tasks']} calls included) "
            f"and opened the breaker; the later waves' calls took p50 {_ms(later['p50'])}, max {_ms(later['max'])}, against p50 "
            f"{_ms(plain['p50'])}, max {_ms(plain['max'])} for the same waves with plain `litellm.acompletion` and no memory: "
            f"{waves['tasks']} calls on one event loop and two cores cost that much by themselves. Memory's part of each was p50 "
            f"{waves['later_memory_ms']['p50']:.2f} ms, p99 {waves['later_memory_ms']['p99']:.1f} ms, at most {waves['later_max_memory_ms']:.1f} ms; "
            f"the longest stall was the garbage collector's: {_gc(waves['gc_pauses'])} during these waves, "
            f"{_gc(waves['plain_gc_pauses'])} during the baseline's (this process has LiteLLM, LangChain and LlamaIndex "
            "loaded, and the fake provider's request log). The run stops at the first wave with memory after the server was back: while "
            f"half-open the breaker lets one lookup through as the trial and the others still skip, so that wave had "
            f"{waves['after_with_memory'].split('/')[0]} call with memory ({waves['after_with_memory']} calls after the server was back). "
            f"The debug records and what the provider received agree on memory for every call ({waves['record_vs_wire_mismatches']} mismatches).",
            "",
        ]
    flap = result.get("flap")
    if flap:
        lines += [_flap_text(flap), ""]
    reflect = result.get("reflect")
    if reflect and reflect.get("calls"):
        lines += _table(
            [
                "reflect mode, the server's reflect...",
                "recalled memory in the prompt",
                "record.mode",
                "record.fallback",
                "call held",
            ],
            [
                [
                    row["case"].replace("reflect ", ""),
                    "yes" if row["memory_in_prompt"] else "**no**",
                    row["mode"],
                    f"`{(row['fallback'] or '')[:90]}...`",
                    _ms(row["held_ms"]),
                ]
                for row in reflect["calls"]
            ],
        )
    storage = result.get("storage") or []
    if storage:
        lines += [
            "**Storage through all of it** (every run with storage on; each turn's question carries a marker, counted in the bank's "
            "documents once the server finished): "
            + "; ".join(
                f"{row['scenario']} {row['stored_once']}/{row['turns']} stored once"
                + (f", **{row['missing']} missing**" if row["missing"] else "")
                + (f", **{row['more_than_once']} more than once**" if row["more_than_once"] else "")
                for row in storage
            )
            + f"; memory blocks stored: {sum(r['memory_blocks_stored'] for r in storage)}.",
            "",
        ]
    return lines


def _ms0(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def console_table(results: R) -> list[str]:
    """``bench/breaker.py``'s summary on stderr: a line per run."""
    lines = [
        f"{'scenario':36s} {'calls':>5s} {'first held':>10s} {'later max':>9s} {'>50ms':>5s} "
        f"{'memory max':>10s} {'found':>7s} {'recovery':>8s} {'no-mem after':>12s}"
    ]
    rows = [*results.get("outages", []), *([results["waves"]] if "waves" in results else [])]
    for row in rows:
        lines.append(
            f"{row['scenario']:36.36s} {row['calls']:5d} {_ms0(row['first_held_ms']):>10s} "
            f"{_ms0(row['later_max_held_ms']):>9s} {row['later_held_over_quick']:5d} "
            f"{row['later_max_memory_ms']:7.1f} ms {_ms0(row['probe_found_ms']):>7s} "
            f"{_ms0(row['recovery_ms']):>8s} {row['calls_without_memory_after_up']:12d}"
        )
    if "waves" in results:
        waves = results["waves"]
        lines.append(
            f"waves: later calls held p50 {waves['later_held_ms']['p50']:.0f} ms, max "
            f"{waves['later_held_ms']['max']:.0f} ms; the same waves without memory (plain LiteLLM) p50 "
            f"{waves['plain_held_ms']['p50']:.0f} ms, max {waves['plain_held_ms']['max']:.0f} ms"
        )
    if "flap" in results:
        flap = results["flap"]
        lines += [
            f"flapping: {flap['calls']} calls, {flap['answered']} answered, held > budget "
            f"{flap['held_over_budget']} (max {_ms0(flap['max_held_ms'])}, memory's part max "
            f"{flap['max_memory_ms']:.0f} ms); down phases {flap['down_phases']}",
            f"flapping: held > 50 ms without memory {flap['paid_without_memory']} (max "
            f"{_ms0(flap['paid_max_held_ms'])}, by phase of their start {flap['paid_by_phase']}); "
            f"held > 50 ms with memory {flap['waited_with_memory']} (max "
            f"{_ms0(flap['waited_max_held_ms'])}, p50 of calls with memory "
            f"{_ms0(flap['with_memory_held_p50_ms'])})",
            f"flapping: up-phase calls with memory {flap['up_with_memory']}/{flap['up_calls']} "
            f"({flap['up_share_with_memory']:.0%}); memory back after each up (ms) "
            f"{flap['memory_back_after_up_ms']}",
        ]
    for row in results.get("reflect", {}).get("calls", []):
        lines.append(
            f"reflect: {row['case']}: memory in prompt {row['memory_in_prompt']}, mode {row['mode']}, held "
            f"{row['held_ms']:.0f} ms, fallback {row['fallback']!r:.70}"
        )
    for row in results["storage"]:
        lines.append(
            f"storage: {row['scenario']}: {row['stored_once']}/{row['turns']} turns stored once, "
            f"{row['missing']} missing, {row['more_than_once']} more than once"
        )
    return lines
