"""Import time of each package, in fresh interpreters, and which heavy frameworks each import pulls in.

For each module, ``--runs`` fresh processes time ``import <module>`` with ``time.perf_counter`` (interpreter
start-up excluded) and list which of the heavy packages below are in ``sys.modules`` afterwards; one more
run with ``python -X importtime`` gives the packages the import spends most time in. The published
hindsight-litellm 0.5.4 is measured too when its venv exists (``bench.overhead`` creates it).

Run: ``uv run python -m bench.import_time [--runs N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._common import machine, write_json

MODULES = [
    "hindsight_core",
    "hindsight_litellm",
    "langchain_hindsight",
    "llama_index.memory.hindsight",
    "litellm",
]
HEAVY = [
    "litellm",
    "openai",
    "anthropic",
    "langchain_core",
    "langgraph",
    "llama_index.core",
    "aiohttp",
    "tiktoken",
    "numpy",
    "pandas",
    "nltk",
    "httpx",
    "pydantic",
]
PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
elapsed = (time.perf_counter() - started) * 1000
heavy = {heavy!r}
loaded = [m for m in heavy if m in sys.modules]
print(json.dumps({{"ms": elapsed, "loaded": loaded, "modules": len(sys.modules)}}))
"""


def probe(python: str, module: str) -> dict[str, Any]:
    done = subprocess.run(
        [python, "-c", PROBE.format(module=module, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def import_ms_by_package(python: str, module: str, top: int = 6) -> dict[str, float]:
    """The ``top`` distributions ``import module`` spends most time in (ms): the sum of the self times
    ``-X importtime`` reports for a top-level package and its submodules (``llama_index.*`` by its second
    level, ``llama_index.core`` vs. ours)."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line[len("import time:") :].split("|", 2)
        parts = name.strip().split(".")
        package = ".".join(parts[:2]) if parts[0] == "llama_index" and len(parts) > 1 else parts[0]
        found[package] = found.get(package, 0.0) + int(own) / 1000
    return dict(sorted(found.items(), key=lambda item: -item[1])[:top])


def measure(python: str, module: str, runs: int) -> dict[str, Any]:
    samples = [probe(python, module) for _ in range(runs)]
    times = [s["ms"] for s in samples]
    return {
        "module": module,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": runs,
        "heavy_loaded": samples[-1]["loaded"],
        "modules_loaded": samples[-1]["modules"],
        "import_ms_by_package": import_ms_by_package(python, module),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--legacy-venv", type=Path, default=None, help="venv of hindsight-litellm 0.5.4 (default: bench's)"
    )
    parser.add_argument("--json", help="write the results here (default: print them)")
    args = parser.parse_args()
    from bench.overhead import DEFAULT_VENV

    rows = [measure(sys.executable, module, args.runs) for module in MODULES]
    legacy_python = (args.legacy_venv or DEFAULT_VENV) / "bin" / "python"
    legacy = None
    if legacy_python.exists():
        legacy = measure(str(legacy_python), "hindsight_litellm", args.runs)
    write_json(args.json, {"machine": machine(), "ours": rows, "legacy": legacy})


if __name__ == "__main__":
    main()
