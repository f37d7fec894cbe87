"""A TCP receiver for ``-ship-to tcp://``: accepts, reads and discards.

It runs in a forked process (standard library only), so that it takes no
CPU from the benchmark's own process; the bytes and connections it received
are counted in a shared anonymous mapping the parent reads.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import selectors
import signal
import socket
import struct
from dataclasses import dataclass

_COUNTS = struct.Struct("=QQ")  # bytes received, connections accepted
RECV_BYTES = 256 * 1024
PARENT_CHECK_S = 1.0


@dataclass
class Sink:
    pid: int
    port: int
    _shared: mmap.mmap

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def counts(self) -> tuple[int, int]:
        """(bytes received, connections accepted) so far."""
        received, connections = _COUNTS.unpack_from(self._shared, 0)
        return int(received), int(connections)

    @property
    def received(self) -> int:
        return self.counts()[0]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self._shared.close()


def start_sink() -> Sink:
    """Listen on 127.0.0.1 (a free port) and serve in a forked child."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    shared = mmap.mmap(-1, _COUNTS.size)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _serve(listener, shared, parent)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    listener.close()
    return Sink(pid, port, shared)


def _serve(listener: socket.socket, shared: mmap.mmap, parent: int) -> None:  # pragma: no cover
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    received = connections = 0
    while os.getppid() == parent:  # a benchmark that was killed leaves no sink behind
        for key, _ in sel.select(PARENT_CHECK_S):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                connections += 1
            else:
                try:
                    data = sock.recv(RECV_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    continue
                received += len(data)
            _COUNTS.pack_into(shared, 0, received, connections)
