"""memlogd's start-up check of a query socket path (SPEC 17; docs/memlogd.md,
"Sockets"): live only when a dump is answered and, where stats are answered
too, their keeper is a live process; a connection never answered is no proof."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memlogd.sockets import query_socket_live

CHECK_S = 1.0  # the check's length in these tests (memlogd's is 5 s)

FAKE = r"""
import json, os, socket, sys
path, mode, keeper = sys.argv[1:4]
if keeper == "alive":
    pid = os.getpid()
elif keeper == "none":
    pid = None
else:
    child = os.fork()
    if child == 0:
        os._exit(0)
    if keeper == "dead":
        os.waitpid(child, 0)
    else:  # "zombie": exited (waited for without reaping it), never reaped
        os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    pid = child
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(64)
print("ready", flush=True)
held = []
if mode == "deaf":  # listens, never accepts: a stopped process
    sys.stdin.read()
while True:
    conn, _ = srv.accept()
    if mode == "mute":  # accepts, never answers
        held.append(conn)
        continue
    first = conn.recv(1)
    if first == b"\x00":
        conn.sendall(b'{"time":"2026-12-07T00:00:00Z","source":"x","msg":"hi"}\n')
    elif first == b"\x03" and mode == "ours":
        conn.recv(4096)
        header = {"memlogd": {"instance": "i", "first_seq": 1, "next_seq": 2}}
        stats = {"stats": {"pid": os.getpid(), "keeper_pid": pid}}
        conn.sendall((json.dumps(header) + "\n" + json.dumps(stats) + "\n").encode())
    conn.close()
"""


Serve = Callable[[str, str], str]


@pytest.fixture(name="serve")
def fixture_serve(short_tmp: Path) -> Iterator[Serve]:
    procs: list[subprocess.Popen[str]] = []

    def serve(mode: str, keeper: str) -> str:
        path = str(short_tmp / f"{mode}-{keeper}.sock")
        proc = subprocess.Popen(
            [sys.executable, "-c", FAKE, path, mode, keeper],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return path

    yield serve
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("mode", "keeper", "live"),
    [
        ("ours", "alive", True),  # ours, its keeper alive (also -daemonize'd)
        ("ours", "none", True),  # ours, -no-keeper
        ("upstream", "alive", True),  # a dump answered, stats not: upstream's
        ("ours", "dead", False),  # a worker whose keeper died
        ("ours", "zombie", False),  # ... and was not reaped yet
        ("mute", "alive", False),  # accepted, never answered: no proof of life
        ("deaf", "alive", False),  # queued, never accepted (a stopped process)
    ],
)
def test_a_path_is_live_only_with_proof_of_life(
    serve: Serve, mode: str, keeper: str, live: bool
) -> None:
    path = serve(mode, keeper)
    assert query_socket_live(path, CHECK_S) is live


def test_a_stale_file_is_not_live(short_tmp: Path) -> None:
    import socket

    path = str(short_tmp / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # the file stays, nobody listens
    assert query_socket_live(path, CHECK_S) is False
