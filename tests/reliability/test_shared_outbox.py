"""Several processes sharing one outbox directory (``litellm --num_workers``, replicas on one volume), one of
them killed with unsent turns: every turn is stored exactly once, by the process that took its file over.

Three real processes (``tests/reliability/outbox_process.py``) store through one ``HINDSIGHT_OUTBOX_DIR``,
to the real server behind a :class:`~tests.faults.CuttableProxy` that is cut meanwhile, so every turn stays
in the outbox. One is killed with ``SIGKILL``; the server comes back; the two that live take over the dead
one's files (each file by one of them only: the counts of turns they took over add up to the dead one's) and
the server holds each turn of each process once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import CuttableProxy
from tests.helpers import markers, seed_bank, settled_text

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
TURNS = 12


@pytest.fixture
def proxy(hindsight_server: str) -> Iterator[CuttableProxy]:
    forwarder = CuttableProxy(hindsight_server)
    yield forwarder
    forwarder.close()


def start(url: str, outbox: Path, bank: str, document: str, marks: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "MARKERS": ",".join(marks)}
    env.pop("HINDSIGHT_API_KEY", None)
    command = [sys.executable, "-m", "tests.reliability.outbox_process", url, str(outbox), bank, document]
    process = subprocess.Popen(
        [*command, str(len(marks))],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    assert line[:1] == ["owner"], f"the process did not start: {line}"
    return process


def finish(process: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = process.communicate("", timeout=90)
    counters: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return counters


def test_a_killed_process_s_turns_are_taken_over_once_by_the_living(
    proxy: CuttableProxy, hindsight_server: str, tmp_path: Path
) -> None:
    bank = f"shared-outbox-{uuid.uuid4().hex[:8]}"
    seed_bank(hindsight_server, bank)
    outbox = tmp_path / "outbox"
    proxy.cut()  # the server is away: every turn stays in the outbox
    marks = {name: markers(TURNS) for name in ("dead", "left", "right")}
    living = [start(proxy.url, outbox, bank, f"doc-{name}", marks[name]) for name in ("left", "right")]
    doomed = start(proxy.url, outbox, bank, "doc-dead", marks["dead"])
    doomed.send_signal(signal.SIGKILL)  # no exit handler runs: its files stay, its lock goes
    doomed.wait(10)
    proxy.restore()
    counters = [finish(process) for process in living]

    assert all(c["flushed"] and c["failed"] == 0 for c in counters), counters
    assert sum(c["recovered"] for c in counters) == TURNS  # the dead one's turns, each taken over once
    assert [c["stored"] for c in counters] != [0, 0]
    for name, expected in marks.items():
        text = settled_text(hindsight_server, bank, f"doc-{name}", expected)
        for marker in expected:
            assert text.count(marker) == 1, (name, marker, text)
    assert not list(outbox.glob("*.json")), "files left in the outbox"
