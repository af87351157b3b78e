# ruff: noqa: E501  (the report's sentences are long strings)
"""The circuit-breaker section of ``docs/performance.md`` (section 9), from ``bench/breaker.py``'s results."""

from __future__ import annotations

from typing import Any

__all__ = ["breaker_section", "headline_items"]

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


def _outage_seconds(row: R) -> str:
    return f"{row['up_at'] - row['down_at']:.0f} s"


def headline_items(results: R) -> list[str]:
    result = results.get("breaker")
    if not result or not _rows(result):
        return []
    rows = _rows(result)
    later = max(r["later_max_memory_ms"] for r in rows)
    sync = [r for r in rows if "tasks" not in r]
    recovery = [r["recovery_ms"] for r in rows if r.get("recovery_ms") is not None]
    flap = result.get("flap")
    text = (
        f"- **Circuit breaker** (section 9): an outage holds its first call (one caller, hung server: {_ms(max(r['first_held_ms'] for r in sync if r['scenario'].endswith('hung')))} at most, the 5 s recall budget); "
        f"every later call of the outage skips memory at once, memory's part at most {later:.1f} ms "
        f"(whole calls at most {_ms(max(r['later_max_held_ms'] for r in sync))} for one caller); memory is back in the prompt "
        f"{_ms(min(recovery))}-{_ms(max(recovery))} after the server answers again."
    )
    if flap:
        text += (
            f" Flapping 2 s up / 2 s down for 30 s: {flap['answered']}/{flap['calls']} calls answered, {flap['held_over_budget']} held beyond the budget, "
            f"{flap['up_share_with_memory']:.0%} of the up-phase calls with memory."
        )
    return [text]


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
    waves = result.get("waves")
    if waves:
        later, plain = waves["later_held_ms"], waves["plain_held_ms"]
        lines += [
            f"With {waves['tasks']} concurrent tasks, a wave of {waves['tasks']} calls every 0.5 s (the next at once when one took longer), "
            f"the first wave of the outage waited the budget ({_ms(waves['first_held_ms'])}, LiteLLM's work for the {waves['tasks']} calls included) "
            f"and opened the breaker; the later waves' calls took p50 {_ms(later['p50'])}, max {_ms(later['max'])}, against p50 "
            f"{_ms(plain['p50'])}, max {_ms(plain['max'])} for the same waves with plain `litellm.acompletion` and no memory: "
            f"{waves['tasks']} calls on one event loop and two cores cost that much by themselves, memory's part of each was at most "
            f"{waves['later_max_memory_ms']:.1f} ms. The run stops at the first wave with memory after the server was back: while "
            f"half-open the breaker lets one lookup through as the trial and the others still skip, so that wave had "
            f"{waves['after_with_memory'].split('/')[0]} call with memory ({waves['after_with_memory']} calls after the server was back). "
            f"The debug records and what the provider received agree on memory for every call ({waves['record_vs_wire_mismatches']} mismatches).",
            "",
        ]
    flap = result.get("flap")
    if flap:
        paid_up = flap["paid_by_phase"].get("up", 0)
        lines += [
            f"**Flapping** (up 2 s, down 2 s for 30 s, {flap['down_phases'].get('hung', 0)} hung and {flap['down_phases'].get('refused', 0)} "
            f"refused phases in turn, a call every 0.5 s): {flap['answered']} of {flap['calls']} calls answered, "
            f"**{flap['held_over_budget']} held beyond the budget** (the longest {_ms(flap['max_held_ms'])}). "
            f"{flap['paid_without_memory']} calls waited more than 50 ms and got no memory (at most {_ms(flap['paid_max_held_ms'])}; "
            f"{paid_up} of them had started in an up phase, with the lookup in flight when the server went down); "
            f"{flap['waited_with_memory']} waited more than 50 ms for memory they got (p50 of the calls with memory "
            f"{_ms(flap['with_memory_held_p50_ms'])}, the longest {_ms(flap['waited_max_held_ms'])}: a lookup in flight when the server "
            "went down, retried within its budget once it was back). No call that started while the server was down sent a lookup "
            f"({flap['down_lookups_sent']} sent). **{flap['up_with_memory']} of {flap['up_calls']} up-phase calls "
            f"({flap['up_share_with_memory']:.0%}) had memory**; memory was back "
            + ", ".join(_ms(x) for x in flap["memory_back_after_up_ms"])
            + " after each up.",
            "",
        ]
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
