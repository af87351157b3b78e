"""Fault injection for integration tests: a loopback TCP forwarder that can cut the server off."""

from __future__ import annotations

import contextlib
import socket
import threading

import httpx

__all__ = ["CuttableProxy"]


class CuttableProxy:
    """A loopback TCP forwarder to ``upstream`` that can be cut and restored (threads, no asyncio)."""

    def __init__(self, upstream: str) -> None:
        url = httpx.URL(upstream)
        self._upstream = (url.host, url.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._cut = False
        self._hung = False
        self._held: list[socket.socket] = []
        self._drop = 0
        self._stopping = False
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.refused = 0
        self.dropped = 0
        self.accepted = 0
        """Connections accepted so far (forwarded, refused or held)."""
        self._acceptor = threading.Thread(target=self._accept_loop, name="test-proxy-accept", daemon=True)
        self._acceptor.start()

    # -- control

    def cut(self) -> None:
        """Act like a server that went away: close every open connection and refuse new ones."""
        with self._lock:
            self._cut = True
            doomed = list(self._sockets)
        for sock in doomed:
            self._kill(sock)

    def hang(self) -> None:
        """Act like a server that accepts connections and never answers: open connections are cut, new ones
        are accepted and held, their requests read and never answered, until :meth:`restore`."""
        with self._lock:
            self._hung = True
            doomed = list(self._sockets)
        for sock in doomed:
            self._kill(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            self._hung = False
            held, self._held = self._held, []
        for sock in held:  # what was held is dropped, as a restarted server would
            self._kill(sock)

    def drop_responses(self, count: int) -> None:
        """Forward the next ``count`` requests but discard the server's responses and hang up."""
        with self._lock:
            self._drop = count

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        self.restore()
        self.cut()
        self._acceptor.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    # -- machinery

    @staticmethod
    def _kill(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept_loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.accepted += 1
                refuse = self._cut or self._stopping
                if refuse:
                    self.refused += 1
                elif self._hung:
                    self._held.append(client)
                    continue
            if refuse:
                self._kill(client)
                continue
            thread = threading.Thread(target=self._serve, args=(client,), name="test-proxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            self._kill(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.update((client, upstream))
        pump = threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True)
        pump.start()
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                with self._lock:
                    drop = self._drop > 0
                    if drop:
                        self._drop -= 1
                        self.dropped += 1
                if drop:
                    break  # the server answered; the client never hears it
                client.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)
            self._kill(client)
            self._kill(upstream)
            pump.join(5)

    @staticmethod
    def _pump_up(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)


# ----------------------------------------------------------------------------------------------- helpers
