"""The loopback fake OpenAI provider as a process: prints its ``api_base``, serves until stdin closes.

Started by ``bench._common.FakeProvider``. The request log is cleared every second (the benchmarks send
thousands of requests and read none of them back). Nagle's algorithm is off on its sockets: the fake writes
the headers and the body of a response separately, and with Nagle on, the body waits for the client's
delayed ACK of the headers (about 40 ms on Linux loopback), which a real provider's stack does not cost.
"""

from __future__ import annotations

import argparse
import sys
import threading

from tests.providers import FakeOpenAI, _Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reply", default="OK.")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stream-delay", type=float, default=0.0)
    args = parser.parse_args()
    _Handler.disable_nagle_algorithm = True  # socketserver.StreamRequestHandler sets TCP_NODELAY
    stop = threading.Event()
    with FakeOpenAI(reply=args.reply, delay=args.delay) as fake:
        fake.stream_delay = args.stream_delay

        def clear_log() -> None:
            while not stop.wait(1.0):
                fake.clear()

        cleaner = threading.Thread(target=clear_log, daemon=True)
        cleaner.start()
        print(fake.base_url, flush=True)
        sys.stdin.read()  # returns when the parent closes our stdin (or exits)
        stop.set()
        if fake.errors:
            print(f"fake provider errors: {fake.errors[:3]}", file=sys.stderr)


if __name__ == "__main__":
    main()
