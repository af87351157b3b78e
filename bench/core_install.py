"""``hindsight-core`` installed alone: what it brings, how long ``import hindsight_core`` takes, what the
first call costs.

Builds the hindsight-core wheel (``uv build``), installs it with nothing else into a fresh venv under /tmp
(``uv pip install --compile-bytecode``, as pip does by default), then reports:

- the closure: every distribution installed, its size on disk (from its ``RECORD``), the total in MB, and
  whether numpy is among them;
- import time, median of ``--runs`` fresh interpreters, for ``import hindsight_core`` and for
  ``from hindsight_core import MemoryPipeline, MemorySettings`` (what an application needs before its first
  call): timed inside the process (``time.perf_counter``, interpreter start-up excluded), the wall time of
  the whole process next to the wall time of a bare interpreter, and ``python -X importtime``'s cumulative
  figure with the packages the import spends most time in (self time);
- the first call: in fresh interpreters, ``MemoryPipeline.prepare()`` with a recall against a loopback stub
  of the Hindsight recall endpoint (in this process, answering 10 memories at once, so that the figures are
  ours, not a server's): the first call, the second, and the median of the next ones; once as an adapter
  does it (``warm_up()`` at configuration, the first call shortly after) and once cold (no warm-up: the first
  call loads the tokenizer itself).

Run: ``uv run python -m bench.core_install [--runs N] [--json PATH] [--keep] [--source DIR]``.
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
started = time.perf_counter()
{statement}
elapsed = (time.perf_counter() - started) * 1000
print(json.dumps({{"ms": elapsed, "loaded": [m for m in {heavy!r} if m in sys.modules],
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


def import_time(python: Path, statement: str, runs: int) -> dict[str, Any]:
    subprocess.run([str(python), "-c", statement], check=True)  # page cache, not measured
    startup = {name for _, _, name, _ in _importtime_lines(python, "pass")}
    inside, wall, bare, cumulative = [], [], [], []
    last: dict[str, Any] = {}
    tops: list[dict[str, float]] = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", "pass"], check=True)
        bare.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        done = subprocess.run(
            [str(python), "-c", IMPORT_PROBE.format(statement=statement, heavy=HEAVY)],
            capture_output=True,
            text=True,
            check=True,
        )
        wall.append((time.perf_counter() - started) * 1000)
        last = json.loads(done.stdout)
        inside.append(float(last["ms"]))
        total, top = _importtime(python, statement, startup)
        cumulative.append(total)
        tops.append(top)
    packages = {name for top in tops for name in top}
    by_package = {name: statistics.median(top.get(name, 0.0) for top in tops) for name in packages}
    by_package = dict(sorted(by_package.items(), key=lambda item: -item[1])[:8])
    return {
        "statement": statement,
        "runs": runs,
        "median_ms": statistics.median(inside),
        "min_ms": min(inside),
        "max_ms": max(inside),
        "samples_ms": inside,
        "process_wall_median_ms": statistics.median(wall),
        "bare_interpreter_wall_median_ms": statistics.median(bare),
        "importtime_cumulative_median_ms": statistics.median(cumulative),
        "importtime_self_ms_by_package": by_package,
        "loaded_after_import": last.get("loaded", []),
        "modules_loaded": last.get("modules"),
    }


def first_call(python: Path, url: str, runs: int, *, warm: bool) -> dict[str, Any]:
    firsts, seconds, steadies, imports = [], [], [], []
    counters: set[str] = set()
    for _ in range(runs):
        done = subprocess.run(
            [str(python), "-c", FIRST_CALL_PROBE, url, "warm" if warm else "cold"],
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(done.stdout.strip().splitlines()[-1])
        calls = data["calls_ms"]
        imports.append(data["import_ms"])
        counters.add(data["counter"])
        firsts.append(calls[0])
        seconds.append(calls[1])
        steadies.append(statistics.median(calls[2:]))
    return {
        "runs": runs,
        "warm_up_before_first_call": warm,
        "import_median_ms": statistics.median(imports),
        "first_call_median_ms": statistics.median(firsts),
        "second_call_median_ms": statistics.median(seconds),
        "steady_call_median_ms": statistics.median(steadies),
        "first_call_extra_ms": statistics.median(firsts) - statistics.median(steadies),
        "token_counter": sorted(counters),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the results here (default: print them)")
    parser.add_argument("--keep", action="store_true", help="keep the venv (its path is in the results)")
    parser.add_argument("--label", help="what was measured, for the report (default: the source directory)")
    parser.add_argument(
        "--source",
        type=Path,
        help="build this hindsight-core project directory instead (e.g. an earlier version, for comparison)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hindsight-core-alone-"))
    try:
        python = build_and_install(workdir, args.source)
        result: dict[str, Any] = {
            "machine": machine(),
            "source": str(args.source or ROOT / "packages" / "core"),
            "label": args.label or str(args.source or "this checkout"),
            "venv": str(workdir / "venv"),
            "load_average_before": os.getloadavg(),
        }
        result["closure"] = closure(python)
        result["imports"] = {name: import_time(python, code, args.runs) for name, code in IMPORTS.items()}
        with recall_stub() as url:
            result["first_call_warmed"] = first_call(python, url, args.runs, warm=True)
            result["first_call_cold"] = first_call(python, url, args.runs, warm=False)
        result["load_average_after"] = os.getloadavg()
        write_json(args.json, result)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
