"""``hindsight-core`` installed alone: what it brings, how long ``import hindsight_core`` takes, what the
first call costs.

Builds the hindsight-core wheel (``uv build``), installs it with nothing else into a fresh venv under /tmp
(``uv pip install --compile-bytecode``, as pip does by default), then reports:

- the closure: every distribution installed, its size on disk (from its ``RECORD``), the total in MB, and
  whether numpy is among them;
- import time, median of ``--runs`` fresh interpreters, for ``import hindsight_core`` and for
  ``from hindsight_core import MemoryPipeline, MemorySettings`` (what an application needs before its first
  call): timed inside the process (``time.perf_counter``, interpreter start-up excluded) and its CPU time
  (``time.process_time``, less sensitive to other load on the machine), the wall time of the whole process
  next to the wall time of a bare interpreter, and ``python -X importtime``'s cumulative
  figure with the packages the import spends most time in (self time);
- the first call: in fresh interpreters, ``MemoryPipeline.prepare()`` with a recall against a loopback stub
  of the Hindsight recall endpoint (in this process, answering 10 memories at once, so that the figures are
  ours, not a server's): the first call, the second, and the median of the next ones; once as an adapter
  does it (``warm_up()`` at configuration, the first call shortly after) and once cold (no warm-up: the first
  call loads the tokenizer itself).

With ``--compare DIR`` an earlier hindsight-core (a project directory, e.g. ``git archive`` of an older
commit) is built and measured too, the two venvs taking turns in every round so that a change of the
machine's load affects both alike.

Run: ``uv run python -m bench.core_install [--runs N] [--json PATH] [--keep]
[--compare DIR --compare-label TEXT --compare-json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import ROOT, machine, write_json

HEAVY = ["numpy", "tiktoken", "regex", "asyncio", "httpx", "pydantic", "pydantic_core", "anyio", "rich"]

IMPORT_PROBE = """
import json, sys, time
started, cpu = time.perf_counter(), time.process_time()
{statement}
elapsed, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
print(json.dumps({{"ms": elapsed, "cpu_ms": cpu, "loaded": [m for m in {heavy!r} if m in sys.modules],
                  "modules": len(sys.modules)}}))
"""
IMPORTS = {
    "import hindsight_core": "import hindsight_core",
    # what an application that uses the core needs before its first call
    "pipeline": "from hindsight_core import MemoryPipeline, MemorySettings",
}

FIRST_CALL_PROBE = """
import json, sys, time
url, warm = sys.argv[1], sys.argv[2] == "warm"
t0 = time.perf_counter()
import hindsight_core
from hindsight_core import MemoryPipeline, MemorySettings
t1 = time.perf_counter()
settings = MemorySettings(hindsight_api_url=url, bank_id="bench", store_conversations=False)
pipeline = MemoryPipeline(source="bench")
if warm:
    from hindsight_core.pipeline import warm_up
    from hindsight_core.pipeline.tokens import counter
    warm_up()  # what the adapters do when they are configured
    counter()  # here: wait until it is loaded, so that the first call's figure is the call alone
messages = [{"role": "user", "content": "What do I like to do on weekends, and where did I go last summer?"}]
times = []
for _ in range(52):
    started = time.perf_counter()
    call = pipeline.prepare(messages, settings)
    times.append((time.perf_counter() - started) * 1000)
    assert call.record.injected, call.record
from hindsight_core.pipeline import tokens
counter = type(tokens.counter()).__name__
print(json.dumps({"import_ms": (t1 - t0) * 1000, "calls_ms": times, "counter": counter}))
"""

RECALL_BODY = json.dumps(
    {
        "results": [
            {
                "id": f"m{i}",
                "text": f"The user likes topic {i} and mentioned it while planning release {i % 5}.",
                "type": "world",
            }
            for i in range(10)
        ]
    }
).encode()


class _Stub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # One write: headers and body in separate segments would meet the client's delayed ACK (~40 ms).
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(RECALL_BODY)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + RECALL_BODY)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def recall_stub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _uv(*args: str, cwd: Path = ROOT) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    done = subprocess.run(
        [sys.executable, "-m", "uv", *args], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"uv {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def build_and_install(workdir: Path, source: Path | None) -> Path:
    """The wheel built from this checkout (or from ``source``, a hindsight-core project directory), installed
    alone into a fresh venv; returns its python."""
    dist = workdir / "dist"
    if source is None:
        _uv("build", "--package", "hindsight-core", "--wheel", "--out-dir", str(dist))
    else:
        _uv("build", str(source), "--wheel", "--out-dir", str(dist))
    (wheel,) = dist.glob("hindsight_core-*.whl")
    venv = workdir / "venv"
    _uv("venv", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    _uv("pip", "install", "--python", str(python), "--compile-bytecode", str(wheel))
    return python


def closure(python: Path) -> dict[str, Any]:
    """Each installed distribution and its size on disk (the files its RECORD lists)."""
    script = (
        "import importlib.metadata as m, json, os\n"
        "out = {}\n"
        "for d in m.distributions():\n"
        "    size = 0\n"
        "    for f in d.files or []:\n"
        "        p = d.locate_file(f)\n"
        "        if os.path.isfile(p): size += os.path.getsize(p)\n"
        "    out[d.metadata['Name']] = {'version': d.version, 'bytes': size}\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True)
    dists: dict[str, dict[str, Any]] = json.loads(done.stdout)
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    on_disk = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    rows = sorted(dists.items(), key=lambda item: -int(item[1]["bytes"]))
    return {
        "distributions": {name: {**row, "mb": row["bytes"] / 1e6} for name, row in rows},
        "total_mb": sum(int(row["bytes"]) for _, row in rows) / 1e6,
        "site_packages_mb": on_disk / 1e6,
        "numpy": any(name.lower() == "numpy" for name in dists),
    }


def _importtime_lines(python: Path, statement: str) -> list[tuple[int, int, str, bool]]:
    """``-X importtime`` of ``statement``: (self us, cumulative us, module, top level) per import."""
    done = subprocess.run(
        [str(python), "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, total, name = line[len("import time:") :].split("|", 2)
        lines.append((int(own), int(total), name.strip(), not name.startswith("  ")))
    return lines


def _importtime(python: Path, statement: str, startup: set[str]) -> tuple[float, dict[str, float]]:
    """The cumulative ms of the imports ``statement`` makes (the interpreter's own start-up imports, in
    ``startup``, left out), and the self ms by top-level package."""
    cumulative = 0.0
    by_package: dict[str, float] = {}
    for own, total, name, top_level in _importtime_lines(python, statement):
        if name in startup:
            continue
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + own / 1000
        if top_level:
            cumulative += total / 1000
    return cumulative, by_package


def import_sample(python: Path, statement: str, startup: set[str]) -> dict[str, Any]:
    """One fresh interpreter of each kind: bare, timing ``statement``, and under ``-X importtime``."""
    started = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True)
    bare = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), "-c", IMPORT_PROBE.format(statement=statement, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = (time.perf_counter() - started) * 1000
    probe = json.loads(done.stdout)
    cumulative, by_package = _importtime(python, statement, startup)
    return {
        "bare": bare,
        "wall": wall,
        "inside": float(probe["ms"]),
        "cpu": float(probe["cpu_ms"]),
        "probe": probe,
        "cumulative": cumulative,
        "by_package": by_package,
    }


def summarize_imports(statement: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    inside = [s["inside"] for s in samples]
    packages = {name for s in samples for name in s["by_package"]}
    by_package = {
        name: statistics.median(s["by_package"].get(name, 0.0) for s in samples) for name in packages
    }
    last = samples[-1]["probe"]
    return {
        "statement": statement,
        "runs": len(samples),
        "median_ms": statistics.median(inside),
        "min_ms": min(inside),
        "max_ms": max(inside),
        "samples_ms": inside,
        "cpu_median_ms": statistics.median(s["cpu"] for s in samples),
        "cpu_min_ms": min(s["cpu"] for s in samples),
        "process_wall_median_ms": statistics.median(s["wall"] for s in samples),
        "bare_interpreter_wall_median_ms": statistics.median(s["bare"] for s in samples),
        "importtime_cumulative_median_ms": statistics.median(s["cumulative"] for s in samples),
        "importtime_self_ms_by_package": dict(sorted(by_package.items(), key=lambda item: -item[1])[:8]),
        "loaded_after_import": last.get("loaded", []),
        "modules_loaded": last.get("modules"),
    }


def first_call_sample(python: Path, url: str, *, warm: bool) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", FIRST_CALL_PROBE, url, "warm" if warm else "cold"],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def summarize_first_calls(samples: list[dict[str, Any]], *, warm: bool) -> dict[str, Any]:
    firsts = [s["calls_ms"][0] for s in samples]
    seconds = [s["calls_ms"][1] for s in samples]
    steadies = [statistics.median(s["calls_ms"][2:]) for s in samples]
    return {
        "runs": len(samples),
        "warm_up_before_first_call": warm,
        "import_median_ms": statistics.median(s["import_ms"] for s in samples),
        "first_call_median_ms": statistics.median(firsts),
        "second_call_median_ms": statistics.median(seconds),
        "steady_call_median_ms": statistics.median(steadies),
        "first_call_extra_ms": statistics.median(firsts) - statistics.median(steadies),
        "token_counter": sorted({s["counter"] for s in samples}),
    }


def measure(pythons: list[Path], runs: int) -> list[dict[str, Any]]:
    """Imports and first calls of each venv, the venvs taking turns in every round (so that a change of
    the machine's load affects them alike)."""
    startups = []
    for python in pythons:
        for statement in IMPORTS.values():
            subprocess.run([str(python), "-c", statement], check=True)  # page cache, not measured
        startups.append({name for _, _, name, _ in _importtime_lines(python, "pass")})
    imports: list[dict[str, list[dict[str, Any]]]] = [{name: [] for name in IMPORTS} for _ in pythons]
    warm: list[list[dict[str, Any]]] = [[] for _ in pythons]
    cold: list[list[dict[str, Any]]] = [[] for _ in pythons]
    with recall_stub() as url:
        for _ in range(runs):
            for i, python in enumerate(pythons):
                for name, statement in IMPORTS.items():
                    imports[i][name].append(import_sample(python, statement, startups[i]))
                warm[i].append(first_call_sample(python, url, warm=True))
                cold[i].append(first_call_sample(python, url, warm=False))
    return [
        {
            "imports": {
                name: summarize_imports(IMPORTS[name], samples) for name, samples in imports[i].items()
            },
            "first_call_warmed": summarize_first_calls(warm[i], warm=True),
            "first_call_cold": summarize_first_calls(cold[i], warm=False),
        }
        for i in range(len(pythons))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the results here (default: print them)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs (their paths are in the results)")
    parser.add_argument("--label", default="this checkout", help="what was measured, for the report")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="also measure the hindsight-core project in DIR (e.g. an earlier version), taking turns",
    )
    parser.add_argument("--compare-label", help="what DIR is, for the report (default: DIR)")
    parser.add_argument("--compare-json", help="write DIR's results here (default: print them)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hindsight-core-alone-"))
    sides: list[tuple[Path | None, str, str | None]] = [(None, args.label, args.json)]
    if args.compare is not None:
        sides.append((args.compare, args.compare_label or str(args.compare), args.compare_json))
    try:
        results: list[dict[str, Any]] = []
        pythons = []
        for index, (source, label, _) in enumerate(sides):
            python = build_and_install(workdir / str(index), source)
            pythons.append(python)
            results.append(
                {
                    "machine": machine(),
                    "source": str(source or ROOT / "packages" / "core"),
                    "label": label,
                    "venv": str(python.parent.parent),
                    "closure": closure(python),
                }
            )
        load_before = os.getloadavg()
        for result, measured in zip(results, measure(pythons, args.runs), strict=True):
            result.update(measured)
            result["load_average_before"] = load_before
            result["load_average_after"] = os.getloadavg()
            result["measured_with"] = [r["label"] for r in results if r is not result]
        for result, (_, _, path) in zip(results, sides, strict=True):
            write_json(path, result)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
