"""logread -p/--priority and mode 3's ``priority`` key (SPEC 15), end to end: real
`python -m logread` processes against a real memlogd, and against the scripted fake
server for what an older memlogd (which refuses the key) or upstream's (which never
answers mode 3) makes logread do."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from memlogd.wire import protocol as proto
from memlogd.wire.severity import level_or_default
from tests.e2e.test_logread import (
    DEADLINE_S,
    FakeServer,
    ext_dump,
    fixture_fake,
    fixture_logread,
    header,
    run_logread,
    sync,
    wait_landed,
)
from tests.helpers import MemlogdProcess, dump, new_source
from tests.wire import encode_entry

__all__ = ["fixture_fake", "fixture_logread"]  # the fixtures this module uses

pytestmark = pytest.mark.e2e

Entry = dict[str, Any]

# Lines of several formats, interleaved so that a tail taken before the priority
# would show other lines than a tail taken after it.
WRITES = {
    "web": [
        b'time="2026-12-07T10:00:00Z" level=error msg="upstream timeout"',
        b"plain line, no level",
        b'time="2026-12-07T10:00:01Z" level=warning msg="slow"',
        b"GET /error.html 200",
    ],
    "db.out": [
        b"<3>disk failed",
        b'{"level":"info","msg":"checkpoint"}',
        b"E1207 10:00:00.123456       1 main.go:42] replica lost",
        b"<5>notice this",
        b"INFO:db:ready",
    ],
    "app": [b"CRITICAL:app:out of memory", b"2026/12/07 10:00:00 DEBUG detail", b"done"],
}


@pytest.fixture(name="levelled")
def fixture_levelled(memlogd: MemlogdProcess) -> MemlogdProcess:
    for name, lines in WRITES.items():
        with new_source(memlogd.log_path, name) as src:
            src.sendall(b"".join(line + b"\n" for line in lines))
    for lines in WRITES.values():
        wait_landed(memlogd.query_path, lines[-1].decode())
    return memlogd


def raw(entries: list[Entry]) -> bytes:
    return b"".join(e["msg"].encode() + b"\n" for e in entries)


def within(ring: list[Entry], lo: int, hi: int, tail: int | None = None) -> list[Entry]:
    shown = [e for e in ring if lo <= level_or_default(e["msg"]) <= hi]
    return shown if tail is None else shown[max(0, len(shown) - tail) :]


def ok(*args: str) -> bytes:
    result = run_logread(*args)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("value", "lo", "hi"),
    [
        ("err", 0, 3),
        ("3", 0, 3),
        ("warning", 0, 4),
        ("crit", 0, 2),
        ("debug", 0, 7),
        ("notice..warning", 4, 5),
        ("6..4", 4, 6),
        ("info..info", 6, 6),
    ],
)
def test_priority_selects_the_levels(
    levelled: MemlogdProcess, value: str, lo: int, hi: int
) -> None:
    ring = dump(levelled.query_path)
    out = ok("-socket", levelled.query_path, "-p", value, "-o", "raw")
    assert out == raw(within(ring, lo, hi))


def test_the_errors_of_the_example_lines(levelled: MemlogdProcess) -> None:
    out = ok("-socket", levelled.query_path, "-p", "err", "-o", "raw")
    assert out == (
        b'time="2026-12-07T10:00:00Z" level=error msg="upstream timeout"\n'
        b"<3>disk failed\n"
        b"E1207 10:00:00.123456       1 main.go:42] replica lost\n"
        b"CRITICAL:app:out of memory\n"
    )


@pytest.mark.parametrize("tail", [1, 2, 3, 10])
def test_tail_is_the_last_n_of_the_priority(levelled: MemlogdProcess, tail: int) -> None:
    ring = dump(levelled.query_path)
    out = ok("-socket", levelled.query_path, "-p", "err", "-n", str(tail), "-o", "raw")
    assert out == raw(within(ring, 0, 3, tail))


def test_nothing_at_the_priority(levelled: MemlogdProcess) -> None:
    result = run_logread("-socket", levelled.query_path, "-p", "alert", "-s", "web")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"-- No entries --\n")


def test_with_units_grep_and_since(levelled: MemlogdProcess) -> None:
    q = levelled.query_path
    out = ok("-socket", q, "-p", "warning", "-u", "web", "-g", "slow|timeout", "--since", "1h")
    lines = out.decode().splitlines()
    assert [line.split(";", 2)[2] for line in lines] == [
        'time="2026-12-07T10:00:00Z" level=error msg="upstream timeout"',
        'time="2026-12-07T10:00:01Z" level=warning msg="slow"',
    ]


def test_mode_3_priority_key_is_applied_before_tail(levelled: MemlogdProcess) -> None:
    q = levelled.query_path
    ring = dump(q)
    for key, lo, hi in ((3, 0, 3), ([5, 4], 4, 5), ([6, 6], 6, 6)):
        lines = ext_dump(q, priority=key, tail=2)
        assert [json.loads(line)["msg"] for line in lines] == [
            e["msg"] for e in within(ring, lo, hi, 2)
        ]
        assert all(list(json.loads(line)) == ["time", "source", "msg", "seq"] for line in lines)


@pytest.mark.parametrize("bad", ["8", "[1,2,3]", '"err"', "true", "[0,9]"])
def test_mode_3_bad_priority_is_refused(levelled: MemlogdProcess, bad: str) -> None:
    from tests.helpers import query_raw

    answer = query_raw(levelled.query_path, b'\x03{"priority":%s}\n' % bad.encode())
    assert json.loads(answer)["error"].startswith("request key 'priority'")


def test_json_has_the_priority(levelled: MemlogdProcess) -> None:
    out = ok("-socket", levelled.query_path, "-o", "json", "-s", "db.out")
    objs = [json.loads(line) for line in out.splitlines()]
    assert [(o["msg"], o["priority"]) for o in objs] == [
        ("<3>disk failed", 3),
        ('{"level":"info","msg":"checkpoint"}', 6),
        ("E1207 10:00:00.123456       1 main.go:42] replica lost", 3),
        ("<5>notice this", 5),
        ("INFO:db:ready", 6),
    ]
    assert all(list(o) == ["time", "source", "msg", "seq", "priority"] for o in objs)


def test_colours_by_severity(levelled: MemlogdProcess) -> None:
    out = ok("-socket", levelled.query_path, "-s", "web", "--color", "always")
    lines = out.split(b"\n")
    assert b";\x1b[1;31mweb;time=" in lines[0] and lines[0].endswith(b'timeout"\x1b[0m')
    assert lines[1].endswith(b"m;plain line, no level")  # its source's colour
    assert b";\x1b[33mweb;time=" in lines[2]
    never = ok("-socket", levelled.query_path, "-s", "web", "--color", "never")
    assert b"\x1b" not in never


# ---------------------------------------------------------------------- following


def sync_warnings(src: socket.socket, reader: Any) -> None:
    """As test_logread's sync, with lines that pass -p warning: afterwards the
    next line logread prints is the next one written."""
    for i in range(100):
        src.sendall(b"<4>sync %d\n" % i)
        try:
            first = reader.lines(1, timeout=0.1)
        except AssertionError:
            continue
        if not first[0].endswith(b"sync %d" % i):
            reader.until(b"<4>sync %d" % i)
        return
    raise AssertionError("the follower never showed a marker line")


def test_follow_shows_new_errors_only(memlogd: MemlogdProcess, logread) -> None:
    src = new_source(memlogd.log_path, "svc")
    reader = logread("-socket", memlogd.query_path, "-f", "-s", "svc", "-p", "warning", "-o", "raw")
    sync_warnings(src, reader)
    src.sendall(b"info 1\n<3>err 1\nlevel=debug x\nERROR:a:err 2\n<6>x\n<4>warn 3\n")
    assert reader.lines(3) == [b"<3>err 1", b"ERROR:a:err 2", b"<4>warn 3"]
    assert reader.interrupt() == (130, b"")


@pytest.mark.parametrize("follow", ["-f", "-F"])
def test_last_errors_then_follow(memlogd: MemlogdProcess, logread, follow: str) -> None:
    """-p err -n 2 -f: the last 2 errors held, then new errors, none twice."""
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"<3>e1\ninfo\n<3>e2\n<2>e3\n<6>i\n")
    wait_landed(memlogd.query_path, "<6>i")
    reader = logread("-socket", memlogd.query_path, follow, "-n", "2", "-p", "err", "-o", "raw")
    assert reader.lines(2) == [b"<3>e2", b"<2>e3"]
    src.sendall(b"info\n<3>e4\n")
    assert reader.lines(1) == [b"<3>e4"]
    assert reader.interrupt() == (130, b"")


@pytest.mark.parametrize(
    ("args", "asked"),
    [
        (["-p", "err"], {"dump": True, "follow": False, "priority": 3}),
        (["-p", "2..4", "-n", "5"], {"dump": True, "follow": False, "tail": 5, "priority": [2, 4]}),
        (["-p", "err", "-f"], {"dump": False, "follow": True, "priority": 3}),
        (
            ["-p", "err", "-F", "-u", "web"],
            {
                "dump": True,
                "follow": True,
                "sources": ["web", "web.out"],
                "priority": 3,
            },
        ),
        (["-p", "err", "-f", "--retry"], {"dump": False, "follow": True, "priority": 3}),
        (["-p", "err", "-g", "x", "-f"], {"dump": False, "follow": True, "priority": 3}),
        (
            ["-p", "err", "--since", "2019-02-22 16:04:24"],
            {
                "dump": True,
                "follow": False,
                "since": "2019-02-22T16:04:24Z",
                "priority": 3,
            },
        ),
    ],
    ids=str,
)
def test_memlogd_is_asked_for_the_priority(
    fake: FakeServer, logread, args: list[str], asked: dict[str, Any]
) -> None:
    reader = logread("-socket", fake.path, *args)
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:]) == asked
        conn.sendall(header("I", 1, 1))
        if not asked["follow"]:
            conn.shutdown(socket.SHUT_WR)
            assert reader.proc.wait(DEADLINE_S) == 0
        else:
            assert reader.interrupt()[0] == 130


# ---------------------------------------------------------------------- other memlogds


def fake_entry(seq: int, msg: str) -> bytes:
    return encode_entry(proto.LogEntry(1_550_851_463 * 10**9 + seq, "svc", msg, seq))


OLDER_ENTRIES = [(1, "<3>e1"), (2, "x"), (3, "<3>e2"), (4, "<6>i"), (5, "level=error a"), (6, "y")]


def refuse_priority(fake: FakeServer, conn: socket.socket) -> dict[str, Any]:
    """What an older memlogd answers to a request with the ``priority`` key."""
    request: dict[str, Any] = json.loads(fake.read_request(conn)[1:])
    assert "priority" in request
    conn.sendall(proto.encode_error("unknown request key 'priority'"))
    conn.close()
    return request


def test_an_older_memlogd_that_refuses_the_key(fake: FakeServer, logread) -> None:
    """logread asks again without the key and selects itself, before the tail."""
    reader = logread("-socket", fake.path, "-p", "err", "-n", "2", "-o", "raw")
    with fake.accept() as conn:
        assert refuse_priority(fake, conn) == {
            "dump": True,
            "follow": False,
            "tail": 2,
            "priority": 3,
        }
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:]) == {"dump": True, "follow": False}
        conn.sendall(header("I", 1, 7) + b"".join(fake_entry(s, m) for s, m in OLDER_ENTRIES))
        conn.shutdown(socket.SHUT_WR)
        assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.lines(2) == [b"<3>e2", b"level=error a"]
    assert reader.stderr() == b""


def test_an_older_memlogd_with_follow(fake: FakeServer, logread) -> None:
    """-F -n 1: the dump alone (its last error kept here), then a follow after it."""
    reader = logread("-socket", fake.path, "-F", "-n", "1", "-p", "err", "-o", "raw")
    with fake.accept() as conn:
        refuse_priority(fake, conn)
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:]) == {"dump": True, "follow": False}
        conn.sendall(header("I", 1, 7) + b"".join(fake_entry(s, m) for s, m in OLDER_ENTRIES))
    assert reader.lines(1) == [b"level=error a"]
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:]) == {
            "dump": True,
            "follow": True,
            "after_seq": 6,
        }
        conn.sendall(header("I", 1, 9) + fake_entry(7, "info") + fake_entry(8, "<2>crit"))
        assert reader.lines(1) == [b"<2>crit"]
        assert reader.interrupt() == (130, b"")


UPSTREAM_LEVELLED = b"".join(
    b'{"time":"2019-02-22T16:04:2%dZ","source":"svc","msg":%s}\n' % (i, json.dumps(m).encode())
    for i, m in enumerate(["<3>e1", "x", '{"level":"error"}', "<4>w", "y"])
)


def test_upstreams_memlogd(fake: FakeServer, logread) -> None:
    """Upstream's memlogd never answers mode 3: logread reads mode 0 and selects
    by priority itself, before the tail."""
    reader = logread("-socket", fake.path, "-p", "err", "-n", "1", "-o", "raw")
    with fake.accept() as conn:
        assert fake.read_request(conn)[:1] == b"\x03"  # then silence
        with fake.accept() as base:
            assert base.recv(1) == b"\x00"
            base.sendall(UPSTREAM_LEVELLED)
            base.shutdown(socket.SHUT_WR)
            assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.lines(1) == [b'{"level":"error"}']
    assert reader.stderr() == b""


def test_upstreams_memlogd_follow(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-f", "-p", "warning", "-o", "raw")
    with fake.accept() as conn:
        assert fake.read_request(conn)[:1] == b"\x03"
        with fake.accept() as base:
            assert base.recv(1) == b"\x01"
            base.sendall(UPSTREAM_LEVELLED)
            assert reader.lines(3) == [b"<3>e1", b'{"level":"error"}', b"<4>w"]
            assert reader.interrupt() == (130, b"")


def test_lines_without_a_level_are_info(memlogd: MemlogdProcess, logread) -> None:
    """-p info shows lines that say no level (they count as info)."""
    src = new_source(memlogd.log_path, "svc")
    reader = logread("-socket", memlogd.query_path, "-f", "-s", "svc", "-p", "info", "-o", "raw")
    sync(src, reader)
    src.sendall(b"<7>debug\nno level\n")
    assert reader.lines(1) == [b"no level"]
    assert reader.interrupt() == (130, b"")
