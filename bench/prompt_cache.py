"""Provider prompt caching with memory: the cache-served share per injection mode and adapter, on the OpenAI
and the Anthropic wire, and the published hindsight-litellm 0.5.4.

OpenAI and Anthropic serve the longest prefix a prompt shares with earlier prompts from a cache (cheaper and
faster). One conversation (``bench/_conversation.py``: a system prompt, then 20 questions and answers, the
memory block different at every question) runs through each adapter in each mode against the real local
Hindsight server, and a loopback provider (``tests/providers.py``) records each request. For turns 2..N::

    share = mean over turns of  own tokens in the common prefix of prompt(t) and prompt(t-1) / own prompt(t)

(``bench/_prefix.py``: cl100k tokens, the request as the provider reads it; the application's own prompt is
the same turn without memory, mode ``none``, which is also the ceiling; the memory block is counted in
neither). Each mode is reported with its ratio
to the ceiling, for 10 and 20 turns and a short (~50-token) and a long (~1,400-token) system prompt.

Also measured: the memory block as a system message of its own just before the latest user message (a
placement that keeps "memories go into a system message"), through plain LiteLLM on both wires; and 0.5.4
in both its modes, from its own venv (``tests/compat/peer.py``) through ``bench/legacy_054_turns.py``.

Run: ``uv run python -m bench.prompt_cache [--turns 20] [--server-url URL] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench._cache_runners import RUNNERS, Context, separate_system
from bench._common import machine, seed_tagged, server_url, wait_idle, write_json
from bench._conversation import FACTS, SYSTEMS
from bench._prefix import conversation_shares, prompt_tokens
from bench.legacy_054_turns import run_in_peer_venv
from hindsight_core.pipeline import MEMORY_OPEN, count_tokens
from tests.providers import FakeAnthropic, FakeOpenAI

__all__ = ["SEPARATE", "main"]

R = dict[str, Any]
SEPARATE = "separate system message before the latest user message"
LEGACY = "hindsight-litellm 0.5.4"
LEGACY_BLOCK = "# Relevant Memories"  # 0.5.4's block has no delimiters


def _injected(bodies: list[dict[str, Any]]) -> int:
    return sum(1 for body in bodies if MEMORY_OPEN in json.dumps(body) or LEGACY_BLOCK in json.dumps(body))


def _rows(
    adapter: str,
    wire: str,
    system: str,
    bodies: dict[str, list[dict[str, Any]]],
    own: list[list[int]],
    horizons: list[int],
) -> list[dict[str, Any]]:
    rows = []
    for mode, mode_bodies in bodies.items():
        prompts = [prompt_tokens(wire, body) for body in mode_bodies]
        rows.append(
            {
                "adapter": adapter,
                "wire": wire,
                "system": system,
                "mode": mode,
                "turns_with_memory": _injected(mode_bodies),
                **conversation_shares(prompts, own, horizons),
            }
        )
    return rows


def _legacy(
    url: str, bank: str, turns: int, venv: Path | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """0.5.4's conversations, from its own venv: (runs of request bodies, metadata)."""
    result = run_in_peer_venv(["cache", "--server-url", url, "--bank", bank, "--turns", str(turns)], venv)
    runs = result.pop("runs")
    return runs, result


def measure(
    url: str, turns: int, horizons: list[int], legacy_venv: Path | None, no_legacy: bool
) -> dict[str, Any]:
    import litellm

    litellm.suppress_debug_info = True  # its "Provider List" banner on every Anthropic call
    bank = f"bench-cache-{uuid.uuid4().hex[:8]}"
    seed_tagged(url, bank, FACTS, ["seed"])
    waited = wait_idle(url, [bank])  # the server's derived observations: what recall returns stays the same
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake:
        ctx = Context(url, bank, openai_fake, anthropic_fake)
        own_by_wire: dict[tuple[str, str], list[list[int]]] = {}
        for system_name, system in SYSTEMS.items():
            for adapter, (wire, run, modes) in RUNNERS.items():
                print(f"[prompt_cache] {system_name} system: {adapter}", file=sys.stderr, flush=True)
                bodies = {mode: run(ctx, system, mode, turns) for mode in modes}
                own = [prompt_tokens(wire, body) for body in bodies["none"]]
                if adapter.startswith("litellm.completion"):
                    own_by_wire[(system_name, wire)] = own
                rows += _rows(adapter, wire, system_name, bodies, own, horizons)
            placed = separate_system(ctx, system, turns)
            for wire, wire_bodies in placed.items():
                own = own_by_wire[(system_name, wire)]
                rows += _rows(SEPARATE, wire, system_name, {"system_message": wire_bodies}, own, horizons)
        errors = [repr(e) for e in (*openai_fake.errors, *anthropic_fake.errors)]
    result: dict[str, Any] = {
        "turns": turns,
        "horizons": horizons,
        "facts": len(FACTS),
        "system_tokens": {name: count_tokens(text) for name, text in SYSTEMS.items()},
        "bank_settle_seconds": round(waited, 1),
        "ours_seconds": round(time.perf_counter() - started, 1),
        "provider_errors": errors,
        "rows": rows,
    }
    if no_legacy:
        return result
    try:
        runs, meta = _legacy(url, bank, turns, legacy_venv)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        result["legacy_error"] = str(exc)
        return result
    result["legacy"] = meta
    for system_name in SYSTEMS:
        for wire in ("openai", "anthropic"):
            bodies = {
                r["mode"]: r["bodies"] for r in runs if r["system"] == system_name and r["wire"] == wire
            }
            own = [prompt_tokens(wire, body) for body in bodies["none"]]
            rows += _rows(
                f"{LEGACY} ({'OpenAI' if wire == 'openai' else 'Anthropic'})",
                wire,
                system_name,
                bodies,
                own,
                horizons,
            )
    return result


def print_summary(result: dict[str, Any]) -> None:
    ceilings = {
        (r["adapter"], r["wire"], r["system"]): r["share"] for r in result["rows"] if r["mode"] == "none"
    }
    for r in result["rows"]:
        base = ceilings.get((r["adapter"], r["wire"], r["system"]))
        if base is None and r["adapter"] == SEPARATE:
            base = ceilings.get(
                (
                    f"litellm.completion ({'OpenAI' if r['wire'] == 'openai' else 'Anthropic'})",
                    r["wire"],
                    r["system"],
                )
            )
        figures = "  ".join(
            f"{n}: {share:.1%} ({share / base[n]:.1%} of none)" if base else f"{n}: {share:.1%}"
            for n, share in r["share"].items()
        )
        print(f"{r['system']:5s} {r['adapter']:55s} {r['mode']:15s} {figures}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server-url", help="a running Hindsight server (default: start a local one)")
    parser.add_argument(
        "--turns", type=int, default=20, help="turns per conversation (default 20, at most 20)"
    )
    parser.add_argument("--legacy-venv", type=Path, help="the 0.5.4 venv (default: tests/compat/peer.py's)")
    parser.add_argument("--no-legacy", action="store_true", help="skip hindsight-litellm 0.5.4")
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    if not 2 <= args.turns <= 20:
        parser.error("--turns must be between 2 and 20")
    horizons = sorted({h for h in (10, 20) if h <= args.turns} | {args.turns})
    started, load_before = datetime.now(timezone.utc).isoformat(timespec="seconds"), os.getloadavg()[0]
    with server_url(args.server_url) as url:
        result = measure(url, args.turns, horizons, args.legacy_venv, args.no_legacy)
    result["machine"] = machine()
    result["started"] = started
    result["load"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    print_summary(result)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
