"""memlogd as a real subprocess, over real Unix sockets (docs/memlogd.md)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartMemlogd
from tests.helpers import (
    LineReader,
    MemlogdProcess,
    as_user,
    dump,
    messages,
    new_source,
    open_query,
    python_m,
    query_raw,
    send_fds,
    wait_for,
    wait_value,
)
from tests.helpers import stats as helper_stats

pytestmark = pytest.mark.e2e


def held(query_path: str, source: str, count: int) -> list[str]:
    """Wait until ``source`` has ``count`` entries in the ring; return its messages."""
    return wait_value(
        lambda: messages(query_path, source),
        lambda m: len(m) >= count,
        what=f"{count} entries of {source}",
    )


def test_dump_returns_upstream_json_lines_in_order(memlogd: MemlogdProcess) -> None:
    with new_source(memlogd.log_path, "svc.out") as w:
        w.sendall(b"one\ntwo\r\nthree")
    msgs = held(memlogd.query_path, "svc.out", 3)
    assert msgs == ["one", "two", "three"]
    raw = query_raw(memlogd.query_path, b"\x00").splitlines()
    lines = [json.loads(line) for line in raw]
    assert all(list(obj) == ["time", "source", "msg"] for obj in lines)
    assert lines[0]["source"] == "memlogd"
    assert lines[0]["msg"].startswith("memlogd started")


def test_binary_garbage_and_nul_are_stored_faithfully(memlogd: MemlogdProcess) -> None:
    payload = bytes(range(256)).replace(b"\n", b"") + b"\n"
    with new_source(memlogd.log_path, "bin") as w:
        w.sendall(payload + b"a\x00b\n" + b"\xff\xfe\n")
    msgs = held(memlogd.query_path, "bin", 3)
    assert msgs[0] == payload[:-1].decode("utf-8", "replace")
    assert msgs[1] == "a\x00b"
    assert msgs[2] == "\ufffd\ufffd"


def sync_follower(writer: socket.socket, reader: LineReader, source: str) -> None:
    """Write probe lines until the follower sees one: from then on it sees everything."""
    for i in range(500):
        writer.sendall(b"sync %d\n" % i)
        try:
            for entry in reader.json(1, timeout=0.2):
                if entry["source"] == source and entry["msg"].startswith("sync"):
                    return
        except AssertionError:
            continue
    raise AssertionError("the follower never saw a probe line")


def test_follow_sees_only_new_entries(memlogd: MemlogdProcess) -> None:
    with new_source(memlogd.log_path, "f") as w:
        w.sendall(b"old\n")
        held(memlogd.query_path, "f", 1)
        follower = open_query(memlogd.query_path, b"\x01")
        sync_follower(w, follower, "f")
        w.sendall(b"new1\nnew2\n")
        got = [e for e in follower.json(2) if e["source"] == "f"]
    follower.sock.close()
    assert [e["msg"] for e in got] == ["new1", "new2"]
    assert all(list(e) == ["time", "source", "msg"] for e in got)


def test_dump_follow_has_no_gap_and_no_duplicate(memlogd: MemlogdProcess) -> None:
    """A writer writes across the request: every line appears exactly once, in order."""
    total = 20_000
    got: list[int] = []
    with new_source(memlogd.log_path, "w") as w:
        w.sendall(b"".join(b"%d\n" % i for i in range(3_000)))
        held(memlogd.query_path, "w", 1)  # some lines are in already, maybe not all
        reader = open_query(memlogd.query_path, b"\x02")
        for start in range(3_000, total, 500):  # the reader keeps up: nothing may be lost
            w.sendall(b"".join(b"%d\n" % i for i in range(start, start + 500)))
            while not got or got[-1] < start + 499:
                got.extend(int(e["msg"]) for e in reader.json(1) if e["source"] == "w")
    reader.sock.close()
    assert got == list(range(total))


def test_dump_follow_complete_with_large_ring(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-lines", "50000")
    total = 30_000
    with new_source(proc.log_path, "w") as w:
        w.sendall(b"".join(b"%d\n" % i for i in range(10_000)))
        held(proc.query_path, "w", 10_000)
        reader = open_query(proc.query_path, b"\x02")
        w.sendall(b"".join(b"%d\n" % i for i in range(10_000, total)))
        got: list[int] = []
        while len(got) < total:
            got.extend(int(e["msg"]) for e in reader.json(1) if e["source"] == "w")
    reader.sock.close()
    assert got == list(range(total))


def test_ring_overflow_keeps_exactly_the_newest(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-lines", "100", "-evict", "oldest")  # upstream's order
    with new_source(proc.log_path, "o") as w:
        w.sendall(b"".join(b"%d\n" % i for i in range(1000)))
        w.sendall(b"end\n")

    entries = wait_value(
        lambda: dump(proc.query_path),
        lambda d: bool(d) and d[-1]["msg"] == "end",
        what="the last line",
    )
    assert len(entries) == 100
    assert [e["msg"] for e in entries] == [str(i) for i in range(901, 1000)] + ["end"]


def test_slow_dump_reader_gets_the_whole_dump(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-lines", "3000", "-evict", "oldest")  # memlogd's own lines go
    line = b"x" * 1000
    with new_source(proc.log_path, "big") as w:
        w.sendall(b"".join(b"%04d%s\n" % (i, line) for i in range(3000)))
        held(proc.query_path, "big", 3000)
        sock = socket.socket(socket.AF_UNIX)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(proc.query_path)
        sock.sendall(b"\x00")
        sock.settimeout(10)
        data = sock.recv(1)  # the first byte: the snapshot is taken
        # the ring moves on completely while the dump reader reads nothing
        w.sendall(b"".join(b"new%d\n" % i for i in range(6000)))
        wait_for(lambda: "new5999" in messages(proc.query_path, "big"), what="new lines")
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
    msgs = [json.loads(x)["msg"] for x in data.splitlines()]
    assert msgs == [f"{i:04d}" + "x" * 1000 for i in range(3000)]


def test_hundred_fds_in_one_datagram(memlogd: MemlogdProcess) -> None:
    pairs = [socket.socketpair() for _ in range(100)]
    send_fds(memlogd.log_path, b"many", [theirs.fileno() for _, theirs in pairs])
    for i, (ours, theirs) in enumerate(pairs):
        theirs.close()
        ours.sendall(b"fd%d\n" % i)
        ours.close()
    msgs = held(memlogd.query_path, "many", 100)
    assert sorted(msgs) == sorted(f"fd{i}" for i in range(100))


def test_three_hundred_concurrent_writers(memlogd: MemlogdProcess) -> None:
    writers = [new_source(memlogd.log_path, f"w{i}") for i in range(300)]
    for rnd in range(3):
        for i, w in enumerate(writers):
            w.sendall(b"%d-%d\n" % (i, rnd))
    for w in writers:
        w.close()
    entries = wait_value(
        lambda: [e for e in dump(memlogd.query_path) if e["source"].startswith("w")],
        lambda d: len(d) >= 900,
        what="900 entries",
    )
    by_source: dict[str, list[str]] = {}
    for e in entries:
        by_source.setdefault(e["source"], []).append(e["msg"])
    assert len(by_source) == 300
    for i in range(300):
        assert by_source[f"w{i}"] == [f"{i}-0", f"{i}-1", f"{i}-2"]  # per-fd order kept


def test_long_line_is_cut_at_utf8_boundary_and_rest_discarded(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-line-len", "10")
    with new_source(proc.log_path, "cut") as w:
        w.sendall("aaaaaaaaé€tail\nnext\n".encode())
    assert held(proc.query_path, "cut", 2) == ["aaaaaaaaé", "next"]


def test_hundred_megabytes_without_newline_stays_bounded(memlogd: MemlogdProcess) -> None:
    rss_before = memlogd.rss_kib()
    with new_source(memlogd.log_path, "flood") as w:
        block = b"z" * (1 << 20)
        for _ in range(100):
            w.sendall(block)
        w.sendall(b"\nafter\n")
    msgs = held(memlogd.query_path, "flood", 2)
    assert msgs == ["z" * 1024, "after"]
    assert memlogd.rss_kib() - rss_before < 20 * 1024


def test_final_partial_line_is_emitted_at_eof(memlogd: MemlogdProcess) -> None:
    with new_source(memlogd.log_path, "p") as w:
        w.sendall(b"complete\npartial")
    assert held(memlogd.query_path, "p", 2) == ["complete", "partial"]


def test_source_name_rules(memlogd: MemlogdProcess) -> None:
    long_name = "é" * 5000  # 10 KB
    hostile = "a/../b;c\nd"
    for name, line in [
        (b"", b"e\n"),
        (long_name.encode(), b"l\n"),
        (hostile.encode(), b"h\n"),
        (b"\xff\xfebad", b"u\n"),
    ]:
        with new_source(memlogd.log_path, name) as w:
            w.sendall(line)
    wait_for(
        lambda: len([e for e in dump(memlogd.query_path) if e["source"] != "memlogd"]) >= 4,
        what="four entries",
    )
    sources = {e["msg"]: e["source"] for e in dump(memlogd.query_path) if e["source"] != "memlogd"}
    assert sources["e"] == "unnamed"
    assert sources["l"] == "é" * 256  # 512 bytes, cut at a character boundary
    assert sources["h"] == hostile
    assert sources["u"] == "\ufffd\ufffdbad"


def test_names_beginning_with_memlogd_are_reserved_for_its_own_events(
    memlogd: MemlogdProcess,
) -> None:
    for name in (b"memlogd", b"memlogd-fake", b"memlogdx"):
        with new_source(memlogd.log_path, name) as w:
            w.sendall(b"forged " + name + b"\n")
    with new_source(memlogd.log_path, b"my-memlogd") as w:
        w.sendall(b"not forged\n")
    wait_for(lambda: len([e for e in dump(memlogd.query_path) if "forged" in e["msg"]]) == 4)
    got = {e["msg"]: e["source"] for e in dump(memlogd.query_path) if "forged" in e["msg"]}
    assert got == {
        "forged memlogd": "user:memlogd",
        "forged memlogd-fake": "user:memlogd-fake",
        "forged memlogdx": "user:memlogdx",
        "not forged": "my-memlogd",
    }


USER_WRITER = """
import array, socket, sys
log, count, name = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
held = []
for _ in range(count):
    ours, theirs = socket.socketpair()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(log)
        fds = array.array("i", [theirs.fileno()])
        sock.sendmsg([name], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    theirs.close()
    held.append(ours)
print("sent", flush=True)
sys.stdin.read()
"""

USER_READER = """
import socket, sys
query, count = sys.argv[1], int(sys.argv[2])
conns = []
for _ in range(count):
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(query)
    conn.sendall(b'\\x03{"dump":false,"follow":true}\\n')
    conns.append(conn)
for conn in conns:
    conn.settimeout(10)
    try:
        data = conn.recv(4096)
    except ConnectionResetError:
        data = b""
    print("answered" if data else "closed", flush=True)
sys.stdin.read()
"""


def as_local_user(user: Any, script: str, *args: str) -> subprocess.Popen[str]:
    """``script`` run by the system's Python as ``user`` (stdin: hold until closed)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that another user may run")
    return subprocess.Popen(
        [python, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=as_user(user),
    )


def test_one_user_cannot_take_more_than_half_the_sources(
    start_memlogd: StartMemlogd, short_tmp: Path, local_user: Any
) -> None:
    """SPEC 19: one user's fds locked root's services out of -max-sources."""
    short_tmp.chmod(0o755)
    memlogd = start_memlogd("-max-sources", "4", "-socket-mode", "0666")
    user = as_local_user(local_user, USER_WRITER, memlogd.log_path, "3", "theirs")
    try:
        assert user.stdout is not None and user.stdout.readline() == "sent\n"
        share = f"over uid {local_user.pw_uid}'s share of -max-sources (2)"
        wait_for(lambda: share in memlogd.stderr(), what="the refusal")
        assert helper_stats(memlogd.query_path)["sources"]["theirs"]["open"] == 2
        root = [new_source(memlogd.log_path, "root-svc") for _ in range(2)]  # root's half
        for i, sock in enumerate(root):
            sock.sendall(b"root %d\n" % i)
        wait_for(lambda: sorted(messages(memlogd.query_path, "root-svc")) == ["root 0", "root 1"])
        assert helper_stats(memlogd.query_path)["open_fds"] == 4
    finally:
        user.kill()
        user.wait(10)


def test_one_user_cannot_take_more_than_half_the_clients(
    start_memlogd: StartMemlogd, short_tmp: Path, local_user: Any
) -> None:
    """SPEC 19: one user's connections locked root out of -max-clients."""
    short_tmp.chmod(0o755)
    memlogd = start_memlogd("-max-clients", "4", "-socket-mode", "0666")
    user = as_local_user(local_user, USER_READER, memlogd.query_path, "3")
    try:
        assert user.stdout is not None
        assert [user.stdout.readline() for _ in range(3)] == ["answered\n"] * 2 + ["closed\n"]
        assert f"over uid {local_user.pw_uid}'s share of -max-clients (2)" in memlogd.stderr()
        assert helper_stats(memlogd.query_path)["next_seq"] >= 1  # root is still served
    finally:
        user.kill()
        user.wait(10)


def test_a_request_with_too_many_or_too_long_globs_is_malformed(memlogd: MemlogdProcess) -> None:
    """SPEC 19: 2,000 long globs cost the worker's only thread 0.4 s."""
    for globs, reason in [
        (["x*"] * 65, "request key 'sources' holds more than 64 globs"),
        (["x" * 257], "request key 'sources' holds a glob over 256 bytes"),
    ]:
        request = b"\x03" + json.dumps({"sources": globs}).encode() + b"\n"
        assert json.loads(query_raw(memlogd.query_path, request)) == {"error": reason}
    fine = b"\x03" + json.dumps({"sources": ["x" * 256] * 64}).encode() + b"\n"
    assert b"error" not in query_raw(memlogd.query_path, fine)


def test_bad_datagrams_and_fds_warn_and_daemon_keeps_serving(memlogd: MemlogdProcess) -> None:
    send_fds(memlogd.log_path, b"nofd", [])
    dir_fd = os.open(memlogd.tmp, os.O_RDONLY | os.O_DIRECTORY)
    r, w_only = os.pipe()
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(memlogd.tmp / "listen.sock"))
    listening.listen()
    regular = memlogd.tmp / "file.txt"
    regular.write_bytes(b"from a file\nsecond\n")
    file_fd = os.open(regular, os.O_RDONLY)
    try:
        send_fds(memlogd.log_path, b"dir", [dir_fd])
        send_fds(memlogd.log_path, b"wronly", [w_only])
        send_fds(memlogd.log_path, b"listening", [listening.fileno()])
        send_fds(memlogd.log_path, b"file", [file_fd])
    finally:
        for fd in (dir_fd, r, w_only, file_fd):
            os.close(fd)
        listening.close()
    assert held(memlogd.query_path, "file", 2) == ["from a file", "second"]
    warnings = wait_value(
        lambda: [x for x in messages(memlogd.query_path, "memlogd") if "level=warning" in x],
        lambda m: len(m) >= 4,
        what="four warnings",
    )
    assert any(x.startswith("fds_refused level=warning source=nofd fds=0") for x in warnings), (
        warnings
    )
    unreadable = sorted(x.split()[2] for x in warnings if x.startswith("source_unreadable"))
    assert unreadable == ["source=dir", "source=listening", "source=wronly"]
    with new_source(memlogd.log_path, "still") as w:
        w.sendall(b"alive\n")
    assert held(memlogd.query_path, "still", 1) == ["alive"]


def test_sources_over_max_sources_are_refused_whole(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-sources", "50")
    keep = [new_source(proc.log_path, f"k{i}") for i in range(48)]
    ours = [socket.socketpair() for _ in range(3)]
    send_fds(proc.log_path, b"three", [t.fileno() for _, t in ours])
    for _, t in ours:
        t.close()
    for o, _ in ours:  # refused: the writer sees EOF/EPIPE
        o.settimeout(10)
        assert o.recv(1) == b""
        o.close()
    extra = [new_source(proc.log_path, f"x{i}") for i in range(2000)]
    for i, w in enumerate(keep):
        w.sendall(b"kept %d\n" % i)
    assert held(proc.query_path, "k47", 1) == ["kept 47"]
    # every refused writer sees its stream closed (EOF); at most the two free slots stay
    poller = select.poll()
    for w in extra:
        poller.register(w, select.POLLIN)
    closed: set[int] = set()
    deadline = time.monotonic() + 20
    while len(closed) < len(extra) - 2 and time.monotonic() < deadline:
        closed |= {fd for fd, _ in poller.poll(100)}
        for fd in closed:
            with contextlib.suppress(KeyError):
                poller.unregister(fd)
    assert len(closed) >= len(extra) - 2
    for w in extra:
        w.close()
    for w in keep:
        w.close()
    log_text = "\n".join(messages(proc.query_path, "memlogd"))
    assert "fds_refused" in log_text and "over -max-sources 50" in log_text


def test_bad_query_clients_do_not_delay_others(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd()
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(proc.query_path)  # never sends a mode byte
    assert query_raw(proc.query_path, b"\x09") == b""  # unknown mode: closed
    huge = socket.socket(socket.AF_UNIX)
    huge.connect(proc.query_path)
    huge.settimeout(10)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        huge.sendall(b"\x03{" + b" " * (1 << 20))  # 1 MB of JSON: refused after 64 KiB
    answer = huge.recv(65536)
    huge.close()
    assert answer == b'{"error":"request longer than 65536 bytes"}\n'

    bad = query_raw(proc.query_path, b'\x03{"bogus": 1}\n')
    assert json.loads(bad) == {"error": "unknown request key 'bogus'"}
    entries = dump(proc.query_path)  # served despite the silent client...
    assert entries[0]["msg"].startswith("memlogd started")
    silent.setblocking(False)
    with pytest.raises(BlockingIOError):  # ...which memlogd has not given up on yet
        silent.recv(1)
    silent.setblocking(True)
    silent.settimeout(10)
    assert silent.recv(1) == b""  # closed after the 5 s mode timeout
    silent.close()
    log_text = "\n".join(messages(proc.query_path, "memlogd"))
    for kind in ("query_bad_mode", "query_malformed", "query_timeout"):
        assert kind in log_text


def test_hundred_clients_at_once(memlogd: MemlogdProcess) -> None:
    with new_source(memlogd.log_path, "c") as w:
        w.sendall(b"hello\n")
    held(memlogd.query_path, "c", 1)
    socks = []
    for _ in range(100):
        s = socket.socket(socket.AF_UNIX)
        s.connect(memlogd.query_path)
        s.sendall(b"\x00")
        socks.append(s)
    for s in socks:
        s.settimeout(10)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        assert b'"source":"c","msg":"hello"}' in data


def test_clients_over_max_clients_are_closed(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-clients", "3")
    followers = [open_query(proc.query_path, b"\x02") for _ in range(3)]
    for f in followers:  # each is being served (its dump starts with memlogd's first event)
        assert f.json(1)[0]["msg"].startswith("memlogd started")
    refused = socket.socket(socket.AF_UNIX)
    refused.connect(proc.query_path)
    refused.settimeout(10)
    assert refused.recv(1) == b""
    refused.close()
    for f in followers:
        f.sock.close()

    def dump_or_refused() -> list[dict[str, object]] | None:
        try:
            return dump(proc.query_path)
        except ConnectionResetError:
            return None

    # the slots are freed as soon as memlogd notices the followers hung up
    wait_for(dump_or_refused, what="a dump after the followers left")
    log_text = "\n".join(messages(proc.query_path, "memlogd"))
    assert 'client_refused level=warning reason="over -max-clients" max_clients=3' in log_text


def test_follower_that_never_reads_blocks_nobody(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-lines", "1000")
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(proc.query_path)
    stuck.sendall(b"\x01")
    rss_start = proc.rss_kib()
    with new_source(proc.log_path, "fast") as w:
        for i in range(50):
            w.sendall(b"".join(b"%d-%d %s\n" % (i, j, b"y" * 200) for j in range(1000)))
        w.sendall(b"done\n")
    wait_value(
        lambda: messages(proc.query_path, "fast"),
        lambda m: bool(m) and m[-1] == "done",
        what="the writer's last line",
    )
    assert proc.rss_kib() - rss_start < 30 * 1024
    stuck.close()


def test_sigterm_exits_zero_and_removes_socket_files(short_tmp: Path) -> None:
    proc = MemlogdProcess(short_tmp)
    proc.start()
    follower = open_query(proc.query_path, b"\x01")
    with new_source(proc.log_path, "s") as w:
        sync_follower(w, follower, "s")
    assert os.path.exists(proc.log_path) and os.path.exists(proc.query_path)
    assert proc.stop() == 0
    follower.sock.settimeout(10)
    rest = b""
    while chunk := follower.sock.recv(65536):  # followers get the ring's end, then EOF
        rest += chunk
    follower.sock.close()
    told = [json.loads(line)["msg"] for line in (follower.buf + rest).splitlines()]
    assert told[-2:] == ["signal_received signal=SIGTERM", "shutdown_started readers=1"]
    assert not os.path.exists(proc.log_path)
    assert not os.path.exists(proc.query_path)
    assert "Traceback" not in proc.stderr()


def test_sockets_have_mode_0600(memlogd: MemlogdProcess) -> None:
    for path in (memlogd.log_path, memlogd.query_path):
        assert os.stat(path).st_mode & 0o777 == 0o600


def test_stale_socket_is_replaced_and_live_one_refused(
    short_tmp: Path, start_memlogd: StartMemlogd
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_tmp / "query.sock"))
    stale.close()  # the file stays, nobody listens
    proc = start_memlogd()
    second = subprocess.run(
        python_m(
            "memlogd",
            "-socket-log",
            str(short_tmp / "l2.sock"),
            "-socket-query",
            proc.query_path,
            "--no-console",
        ),
        capture_output=True,
        timeout=10,
        text=True,
    )
    assert second.returncode == 1
    assert second.stderr == f"memlogd: a memlogd is already serving at {proc.query_path}\n"
    assert not os.path.exists(short_tmp / "l2.sock")
    assert dump(proc.query_path)  # the first one is unaffected


def test_unbindable_path_is_named_in_error(short_tmp: Path) -> None:
    bad = str(short_tmp / "missing-dir" / "q.sock")
    result = subprocess.run(
        python_m("memlogd", "-socket-log", str(short_tmp / "l.sock"), "-socket-query", bad),
        capture_output=True,
        timeout=10,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == f"memlogd: cannot bind socket {bad}: No such file or directory\n"


def pids_with_argument(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (to clean up a detached daemon)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_daemonize_parent_exits_zero_once_child_serves(short_tmp: Path) -> None:
    log_path, query_path = str(short_tmp / "l.sock"), str(short_tmp / "q.sock")
    err_path = short_tmp / "stderr"
    try:
        with open(err_path, "wb") as err:  # the daemon keeps its stderr: not a pipe we wait on
            result = subprocess.run(
                python_m(
                    "memlogd",
                    "-daemonize",
                    "-socket-log",
                    log_path,
                    "-socket-query",
                    query_path,
                    "--no-console",
                ),
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=20,
            )
        assert result.returncode == 0, err_path.read_text()
        entries = dump(query_path)  # serving as soon as the parent returned
        assert entries[0]["msg"].startswith("memlogd started")
        stats = helper_stats(query_path)
        keeper, worker = stats["keeper_pid"], stats["pid"]
        # the parent is gone; the child (the keeper) and its worker serve
        assert sorted(pids_with_argument(log_path)) == sorted([keeper, worker])
        assert os.getsid(keeper) == keeper  # in a session of its own
        with new_source(log_path, "bg") as w:
            w.sendall(b"daemon line\n")
        assert held(query_path, "bg", 1) == ["daemon line"]
        os.kill(keeper, signal.SIGTERM)
        wait_for(
            lambda: not os.path.exists(query_path) and not os.path.exists(log_path),
            what="socket files removed by the daemon child",
        )
    finally:
        for stray in pids_with_argument(log_path):
            os.kill(stray, signal.SIGKILL)


def test_inherited_fds_upstream_command_line(short_tmp: Path) -> None:
    log_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log_sock.bind(str(short_tmp / "l.sock"))
    q_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    q_sock.bind(str(short_tmp / "q.sock"))
    q_sock.listen()
    r, w = os.pipe()
    cmd = python_m(
        "memlogd",
        "-fd-log",
        str(log_sock.fileno()),
        "-fd-query",
        str(q_sock.fileno()),
        "-max-lines",
        "5000",
        "-max-line-len",
        "1024",
        "--ready-fd",
        str(w),
        "--no-console",
    )
    proc = subprocess.Popen(
        cmd, pass_fds=(log_sock.fileno(), q_sock.fileno(), w), stderr=subprocess.PIPE
    )
    os.close(w)
    log_sock.close()
    q_sock.close()
    try:
        assert os.read(r, 1) == b"\n"
        with new_source(str(short_tmp / "l.sock"), "inh") as src:
            src.sendall(b"via fds\n")
        assert held(str(short_tmp / "q.sock"), "inh", 1) == ["via fds"]
    finally:
        os.close(r)
        proc.terminate()
        assert proc.wait(10) == 0
    # inherited sockets belong to whoever bound them: memlogd leaves the files
    assert os.path.exists(short_tmp / "q.sock")


def test_console_echo_format(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd(console=True)
    with new_source(proc.log_path, "echo") as w:
        w.sendall(b"hello console\n")
    held(proc.query_path, "echo", 1)
    line = wait_for(
        lambda: [x for x in proc.stdout_path.read_text().splitlines() if ";echo;" in x],
        what="console line",
    )[0]
    time_text, source, msg = line.split(";", 2)
    assert (source, msg) == ("echo", "hello console")
    assert time_text.endswith("Z") and "T" in time_text


def test_max_bytes_bounds_the_ring_by_message_bytes(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-max-bytes", "2048", "-max-line-len", "1024", "-evict", "oldest")
    with new_source(proc.log_path, "b") as w:
        w.sendall(b"".join(b"%d%s\n" % (i, b"x" * 499) for i in range(10)))
        w.sendall(b"end\n")
    entries = wait_value(
        lambda: dump(proc.query_path),
        lambda d: bool(d) and d[-1]["msg"] == "end",
        what="the last line",
    )
    # newest first until 2048 bytes: "end" (3) + four 500-byte lines (2000) fit, a fifth not
    assert [e["msg"][:1] for e in entries] == ["6", "7", "8", "9", "e"]
    assert sum(len(e["msg"].encode()) for e in entries) <= 2048


def test_socket_mode_flag(start_memlogd: StartMemlogd) -> None:
    proc = start_memlogd("-socket-mode", "0660")
    for path in (proc.log_path, proc.query_path):
        assert os.stat(path).st_mode & 0o777 == 0o660


def test_console_nobody_reads_drops_echo_never_lines(short_tmp: Path) -> None:
    """stdout is a pipe nobody reads: the echo is dropped (counted); the ring, the
    queries and the writers are unaffected; SIGINT still exits 0."""
    log_path, query_path = str(short_tmp / "l.sock"), str(short_tmp / "q.sock")
    r, w = os.pipe()
    proc = subprocess.Popen(
        python_m(
            "memlogd",
            "-socket-log",
            log_path,
            "-socket-query",
            query_path,
            "--ready-fd",
            str(w),
            "-max-lines",
            "20000",
        ),
        pass_fds=(w,),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        assert os.read(r, 1) == b"\n"
        with new_source(log_path, "loud") as src:
            for i in range(10):
                src.sendall(b"".join(b"%d-%d %s\n" % (i, j, b"e" * 100) for j in range(1000)))
        msgs = held(query_path, "loud", 10_000)
        assert msgs[-1].startswith("9-999 ")
        stats = helper_stats(query_path)
        assert stats["console_dropped"] > 0
        assert stats["sources"]["loud"]["received"] == 10_000
    finally:
        os.close(r)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stdout is not None
        proc.stdout.close()
