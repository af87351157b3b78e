"""Shared helpers of the benchmarks: statistics, the machine, the server, the fake provider, seeding.

The benchmarks run as modules from the repository root (``uv run python -m bench.<name>``), so that
``bench._common`` and ``tests.providers`` are importable; ``bench/run_all.py`` runs all of them.
"""

from __future__ import annotations

import os

# LiteLLM downloads its model cost map at import time unless told not to; the benchmarks are offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import contextlib
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

__all__ = [
    "RESULTS",
    "ROOT",
    "FakeProvider",
    "facts",
    "machine",
    "operations_running",
    "percentile",
    "seed_tagged",
    "server_url",
    "summary",
    "wait_idle",
    "write_json",
]


def facts(n: int) -> list[str]:
    """``n`` distinct facts about a user, as the benchmarks seed their banks with."""
    return [
        f"Fact {i}: the user likes topic {i} and mentioned it on day {i % 7} while planning release {i % 5}."
        for i in range(n)
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank on the sorted values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, mean and max of ``values``."""
    return {
        "n": float(len(values)),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "litellm": _version("litellm"),
        "hindsight-core": _version("hindsight-core"),
        "hindsight-litellm": _version("hindsight-litellm"),
        "httpx": _version("httpx"),
    }


def write_json(path: str | os.PathLike[str] | None, data: Any) -> None:
    """Write the results as JSON (for ``run_all``), or print them when no path is given."""
    text = json.dumps(data, indent=2, default=str)
    if path is None:
        print(text)
    else:
        Path(path).write_text(text)


@contextlib.contextmanager
def server_url(url: str | None = None) -> Iterator[str]:
    """The Hindsight server to use: ``url``, else ``HINDSIGHT_API_URL``, else a local one started here
    (and stopped at the end)."""
    url = url or os.environ.get("HINDSIGHT_API_URL")
    if url:
        yield url.rstrip("/")
        return
    from hindsight_core.local import local_server

    with local_server() as server:
        yield server.url


class FakeProvider:
    """The loopback fake OpenAI-compatible provider (``tests.providers.FakeOpenAI``) in its own process,
    so that its request handling does not compete for our process's GIL, and the same provider can serve
    the benchmark processes of both venvs. A context manager; ``base_url`` is the ``api_base``."""

    def __init__(self, *, reply: str = "OK.", delay: float = 0.0, stream_delay: float = 0.0) -> None:
        self._args = [
            sys.executable,
            "-m",
            "bench._fake_provider",
            "--reply",
            reply,
            "--delay",
            str(delay),
            "--stream-delay",
            str(stream_delay),
        ]
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> FakeProvider:
        self._process = subprocess.Popen(
            self._args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.close()
            raise RuntimeError(f"the fake provider did not start (said {line!r})")
        self.base_url = line
        return self

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()  # the provider stops when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def seed_tagged(url: str, bank: str, facts: Iterable[str], tags: Sequence[str]) -> None:
    """Create ``bank`` storing text verbatim (no LLM extraction) and retain ``facts`` with ``tags``,
    synchronously."""
    from hindsight_core import HindsightClient

    with HindsightClient(url) as client:
        client.create_bank(bank, extraction_mode="chunks")
        items = [{"content": fact, "tags": list(tags)} for fact in facts]
        if items:
            client.retain_batch(bank, items)


def operations_running(url: str, bank: str, kind: str | None = None) -> int:
    """How many operations of ``bank`` (of type ``kind``, or of any type: retains, and the consolidation and
    graph maintenance they trigger) the server has not finished."""
    total = 0
    for state in ("pending", "processing"):
        params: dict[str, str | int] = {"status": state, "limit": 1}
        if kind is not None:
            params["type"] = kind
        response = httpx.get(f"{url}/v1/default/banks/{bank}/operations", params=params, timeout=30)
        if response.status_code == 404:
            return 0
        response.raise_for_status()
        total += int(response.json()["total"])
    return total


def wait_idle(url: str, banks: Iterable[str], timeout: float = 180.0, kind: str | None = None) -> float:
    """Wait until the server has finished every operation (of type ``kind``) of ``banks``; returns the
    seconds waited."""
    started = time.perf_counter()
    pending = list(banks)
    deadline = started + timeout
    while pending:
        pending = [bank for bank in pending if operations_running(url, bank, kind)]
        if not pending:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the server is still busy with {pending} after {timeout:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started
