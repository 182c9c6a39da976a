"""A TCP proxy on loopback that a test can make misbehave: stall its connections (a half-open peer: nothing
passes, nothing is closed) or reset them, at once or once a number of bytes has passed (a link cut in the
middle of a transfer), while new connections pass normally."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; ``stall`` freezes the connections open now (bytes are
    held, neither side is told), ``reset`` closes them abruptly. Use as a context manager."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._connections: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self.accepted = 0
        self.passed = 0  # bytes forwarded, both ways
        self._cut_at: int | None = None
        self._cut_by_stall = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._server.accept()
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                frozen = threading.Event()
                with self._lock:
                    self._connections.append((client, upstream, frozen))
                    self.accepted += 1
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(source, sink, frozen), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, frozen: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if frozen.is_set():
                    continue  # a stalled link: swallowed, like packets into a dead switch
                sink.sendall(data)
                self._count(len(data))
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _count(self, size: int) -> None:
        with self._lock:
            self.passed += size
            due = self._cut_at is not None and self.passed >= self._cut_at
            if due:
                self._cut_at = None
        if due:
            self.stall() if self._cut_by_stall else self.reset()

    def cut_after(self, byte_count: int, *, stall: bool = False) -> None:
        """Reset (or ``stall``) the connections once ``byte_count`` more bytes have passed, either way (once)."""
        with self._lock:
            self._cut_at = self.passed + byte_count
            self._cut_by_stall = stall

    def stall(self) -> None:
        with self._lock:
            for _, _, frozen in self._connections:
                frozen.set()

    def reset(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for client, upstream, _ in connections:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                    sock.close()

    def close(self) -> None:
        self._server.close()
        self.reset()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
