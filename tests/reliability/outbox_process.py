"""One application process storing turns through a shared outbox, for ``test_shared_outbox.py``.

``python -m tests.reliability.outbox_process URL OUTBOX BANK DOCUMENT TURNS``: submits ``TURNS`` turns
(one marker each, from ``MARKERS``, comma-separated in the environment) to ``DOCUMENT`` with its own storage
worker, prints ``owner <claim>`` once the worker has written them to the outbox, then keeps running (taking
over the files of stopped processes every 0.2 s) until its standard input closes; then it flushes and prints
its counters as one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from hindsight_core.connection import Connection
from hindsight_core.storage import StorageWorker, Turn


def on_disk(outbox: Path, owner: str) -> int:
    """Turns in this process's outbox files."""
    total = 0
    for path in outbox.glob(f"*.{owner}.json"):
        with contextlib.suppress(OSError, ValueError):
            total += len(json.loads(path.read_text())["turns"])
    return total


def main() -> None:
    url, outbox, bank, document, count = sys.argv[1:6]
    markers = os.environ["MARKERS"].split(",")[: int(count)]
    worker = StorageWorker(outbox_dir=outbox, adopt_interval=0.2, retry_initial=0.05, retry_max=0.2)
    connection = Connection(base_url=url)
    for marker in markers:
        worker.submit(Turn(connection, bank, document, f"user: remember {marker}\nassistant: noted"))
    box = worker._state.outbox
    assert box is not None
    owner = box.claim.owner
    deadline = time.monotonic() + 30
    while on_disk(Path(outbox), owner) < len(markers) and time.monotonic() < deadline:
        time.sleep(0.02)  # every turn is written before its first send, as the outbox promises
    print("owner", owner, flush=True)
    sys.stdin.read()
    done = worker.flush(60)
    stats = worker.stats()
    counters = {"flushed": done, "recovered": stats.recovered, "stored": stats.stored, "failed": stats.failed}
    print(json.dumps(counters), flush=True)
    worker.close(5)


if __name__ == "__main__":
    main()
