"""Run the public-API scenarios against the published hindsight-litellm 0.5.4 and against ours, and report
every observable difference, each with the reason it exists.

A difference is explained when an entry of :data:`EXPLAINED` matches its path: a defect of 0.5.4 that we
fix (``../shared/lessons.md``, numbered as there), the deliberate server URL/key inheritance of
``hindsight_memory()``, or the seeds' contract. What ours adds (a field, a name) is listed as an addition,
not a difference. ``docs/migration.md`` says the same in user terms.

Usage: ``uv run python -m tests.compat.compare [--server URL]`` (starts a local server when none is given).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.compat.peer import peer_python

__all__ = ["EXPLAINED", "Report", "compare", "flatten", "observe", "run_comparison"]

SCRIPT = Path(__file__).with_name("scenarios.py")

_L1 = "lesson 1: enable() + completion() recalled and injected twice; ours injects once"
_L2 = "lesson 2: 0.5.4's acompletion ran a sync client inside the event loop and got no memory"
_L4 = (
    "lesson 4: 0.5.4 was silent about memory (no record unless verbose, errors swallowed); ours always "
    "keeps the debug record and fails open visibly (strict=True raises)"
)
_L7 = (
    "lesson 7: hindsight_* options must never reach a provider, so LiteLLM's functions stay wrapped by a "
    "transparent filter until cleanup() (0.5.4 restored them and forwarded the options)"
)
_L10 = "lesson 10: process-global state; ours scopes hindsight_memory() to the thread/task (ContextVar)"
_L12 = (
    "lesson 12: background work on daemon threads that die at exit; ours hands direct retains and "
    "conversations to the storage worker, which retries and reports"
)
_L13 = (
    "lesson 13 / the issue's deliberate difference: a hindsight_memory() block inherits the configured "
    "server URL and API key (0.5.4 switched to Hindsight Cloud without a key)"
)
_ENV_URL = "the issue: HINDSIGHT_API_URL wins over the default (0.5.4 ignored the variable)"
_MERGE = (
    "the seeds' contract: configure() called again keeps what it does not pass, so the article's "
    "configure -> set_defaults(bank_id) -> configure(mission=...) keeps the bank (0.5.4 reset it)"
)
_VALIDATE = (
    "lesson 4 (silent failure): ours rejects an invalid value when it is set, naming the option; 0.5.4 "
    "accepted it and misbehaved later"
)
_EXCLUDED = (
    "the seeds: excluded models get no memory; 0.5.4 applied excluded_models only to the enable() path, "
    "not to hindsight_litellm.completion()"
)
_SECRET = "never show secrets: the API key is kept out of reprs and snapshots' repr (0.5.4 printed it)"
_SEEDS_FORMAT = (
    "the injected block is framed as reference data inside delimiters (lessons: memory refused as prompt "
    "injection; lesson 8, memory must be recognisable to never be stored again)"
)

EXPLAINED: list[tuple[str, str]] = [
    ("enable_then_completion_injects_once.hindsight_completion.blocks", _L1),
    ("enable_with_callback_registered.blocks.blocks", _L1),
    ("acompletion_injects.blocks.*", _L2),
    ("excluded_models_skip_memory.hindsight_completion.*", _EXCLUDED),
    ("completion_debug_without_verbose.debug_made", _L4),
    ("enable_disable_cycle.disabled.patched", _L7),
    ("enable_disable_cycle.disabled.original_back", _L7),
    ("context_manager_fresh.after.patched", _L7),
    ("context_manager_fresh.after.original_back", _L7),
    ("completion_per_call_options_stay_out_of_the_request.leaked*", _L7),
    ("context_manager_over_a_configuration.inside.hindsight_api_url_is_configured_one", _L13),
    ("context_manager_over_a_configuration.inside.api_key", _L13),
    ("configure_url_from_environment.hindsight_api_url", _ENV_URL),
    ("configure_twice.*", _MERGE),
    ("validation_errors.*_invalid.accepted", _VALIDATE),
    ("validation_errors.*_negative.accepted", _VALIDATE),
]


@dataclass
class Report:
    differences: list[tuple[str, Any, Any, str | None]] = field(default_factory=list)
    additions: list[tuple[str, Any]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    @property
    def unexplained(self) -> list[tuple[str, Any, Any, str | None]]:
        return [item for item in self.differences if item[3] is None]

    def render(self) -> str:
        lines = [
            f"hindsight-litellm 0.5.4 vs ours: {len(self.differences)} difference(s), "
            f"{len(self.unexplained)} unexplained; {len(self.additions)} addition(s)",
            "",
        ]
        for path, peer, ours, reason in self.differences:
            lines.append(f"{'UNEXPLAINED' if reason is None else 'explained'}  {path}")
            lines.append(f"    0.5.4: {json.dumps(peer)[:200]}")
            lines.append(f"    ours:  {json.dumps(ours)[:200]}")
            if reason:
                lines.append(f"    why:   {reason}")
        if self.additions:
            lines += ["", "additions (ours only):"]
            lines += [f"    {path}: {json.dumps(value)[:120]}" for path, value in self.additions]
        if self.unused:
            lines += ["", "explanations that matched nothing (stale?):"]
            lines += [f"    {pattern}" for pattern in self.unused]
        return "\n".join(lines)


_MISSING = object()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values (their order is part of the behaviour)."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _reason(path: str) -> str | None:
    return next((reason for pattern, reason in EXPLAINED if fnmatch.fnmatchcase(path, pattern)), None)


def _also_catchable(path: str, before: Any, after: Any) -> bool:
    """Our error is also an instance of a class 0.5.4's was not (``NotConfiguredError`` is a
    ``HindsightError`` and a ``RuntimeError``): an ``except`` written for 0.5.4 still catches it."""
    return ".raises." in path and before is False and after is True


def compare(peer: dict[str, Any], ours: dict[str, Any]) -> Report:
    report = Report()
    flat_peer, flat_ours = flatten(peer), flatten(ours)
    for path in sorted(set(flat_peer) | set(flat_ours)):
        before, after = flat_peer.get(path, _MISSING), flat_ours.get(path, _MISSING)
        if before is _MISSING or _also_catchable(path, before, after):
            report.additions.append((path, after))
        elif before != after:
            shown = None if after is _MISSING else after
            report.differences.append(
                (path, before, shown if after is not _MISSING else "<missing>", _reason(path))
            )
    used = {
        pattern
        for pattern, _ in EXPLAINED
        if any(fnmatch.fnmatchcase(d[0], pattern) for d in report.differences)
    }
    report.unused = [pattern for pattern, _ in EXPLAINED if pattern not in used]
    return report


def observe(python: Path | str, server: str, seeded: str, dead: str) -> dict[str, Any]:
    """Run every scenario with ``python``; returns the observations."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "observations.json"
        completed = subprocess.run(
            [
                str(python),
                str(SCRIPT),
                "--server",
                server,
                "--seeded",
                seeded,
                "--dead",
                dead,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if completed.returncode != 0 or not out.exists():
            raise RuntimeError(f"scenarios failed under {python}:\n{completed.stderr[-4000:]}")
        observations: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return observations


def run_comparison(server: str, dead: str) -> Report:
    """Seed a bank, observe 0.5.4 and ours against the same server, compare."""
    from tests.compat.scenarios import DEFAULT_BANK_FACTS, FACTS
    from tests.helpers import seed_bank

    seed_bank(server, "default", DEFAULT_BANK_FACTS)
    # One seeded bank each: 0.5.4's callback stores the conversations it sees (memory block included).
    peer_bank, our_bank = (f"compat-{who}-{uuid.uuid4().hex[:8]}" for who in ("peer", "ours"))
    for bank in (peer_bank, our_bank):
        seed_bank(server, bank, FACTS)
    python = peer_python()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # two processes, side by side
        peer = pool.submit(observe, python, server, peer_bank, dead)
        ours = pool.submit(observe, sys.executable, server, our_bank, dead)
        return compare(peer.result(), ours.result())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="a running Hindsight server (default: start a local one)")
    args = parser.parse_args()
    from tests.helpers import closed_port_url

    if args.server:
        report = run_comparison(args.server, closed_port_url())
    else:
        from hindsight_core.local import local_server

        with local_server() as server:
            report = run_comparison(server.url, closed_port_url())
    print(report.render())
    sys.exit(1 if report.unexplained else 0)


if __name__ == "__main__":
    main()
