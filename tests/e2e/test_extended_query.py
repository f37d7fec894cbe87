"""The extended query (mode 3, docs/protocol.md) against a real memlogd process: resume by
``after_seq`` is exact, losses are counted exactly, filters match a model computed
from a full dump, and stats count what was written."""

from __future__ import annotations

import fnmatch
import json
import os
import random
import socket
import subprocess
import time
from typing import Any

import pytest

from memlogd import config
from memlogd.wire import timefmt
from tests.helpers import new_source, python_m, query_raw, wait_for

pytestmark = pytest.mark.e2e

DEADLINE_S = 10.0


def request(**req: Any) -> bytes:
    return b"\x03" + json.dumps(req).encode() + b"\n"


def ext_lines(query_path: str, **req: Any) -> tuple[dict[str, Any], list[bytes]]:
    """An extended answer: the header object and the raw lines after it."""
    lines = query_raw(query_path, request(**req)).splitlines()
    header = json.loads(lines[0])
    assert set(header) == {"memlogd"}, header
    return header["memlogd"], lines[1:]


def ext(query_path: str, **req: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, lines = ext_lines(query_path, **req)
    return header, [json.loads(line) for line in lines]


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def wait_landed(query_path: str, source: str, last_msg: str) -> None:
    """Until the newest entry of ``source`` in the ring is ``last_msg``."""

    def landed() -> bool:
        _, got = ext(query_path, sources=[glob_escape(source)], tail=1)
        return bool(got) and got[-1]["msg"] == last_msg

    wait_for(landed, DEADLINE_S, f"{last_msg!r} from {source!r} in the ring")


def write_lines(sock: socket.socket, source: str, query_path: str, msgs: list[str]) -> None:
    sock.sendall("".join(m + "\n" for m in msgs).encode())
    wait_landed(query_path, source, msgs[-1])


class JsonLines:
    """Lines from a query socket, each read with the deadline left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""

    def next(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            assert left > 0, "timed out reading the query answer"
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the server closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        obj: dict[str, Any] = json.loads(line)
        return obj


def connect_follower(query_path: str, rcvbuf: int | None = None, **req: Any) -> JsonLines:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(query_path)
    sock.sendall(request(**req))
    return JsonLines(sock, time.monotonic() + DEADLINE_S)


# ---------------------------------------------------------------------- resume


def test_after_seq_from_many_points_is_exact_and_unions_to_the_ring(start_memlogd) -> None:
    proc = start_memlogd("-max-lines", "20000")
    src = new_source(proc.log_path, "writer")
    msgs = [f"line {i}" for i in range(10_000)]
    write_lines(src, "writer", proc.query_path, msgs)

    header, ring = ext_lines(proc.query_path)
    first, nxt = header["first_seq"], header["next_seq"]
    seqs = [json.loads(line)["seq"] for line in ring]
    assert seqs == list(range(first, nxt))
    assert [e["msg"] for e in map(json.loads, ring) if e["source"] == "writer"] == msgs

    rng = random.Random(3)
    points = {0, first - 1, first, nxt - 2, nxt - 1, nxt, nxt + 1000}
    points |= set(rng.sample(range(first, nxt), 25))
    for point in sorted(points):
        got_header, got = ext_lines(proc.query_path, after_seq=point)
        assert got_header["instance"] == header["instance"]
        assert got == ring[max(0, point + 1 - first) :], f"after_seq={point}"

    # read the ring in pieces, each resumed from where the previous one stopped
    cuts = [*sorted(rng.sample(range(first, nxt - 1), 40)), nxt - 1]
    union: list[bytes] = []
    cursor = first - 1
    for cut in cuts:
        _, got = ext_lines(proc.query_path, after_seq=cursor)
        piece = [line for line in got if json.loads(line)["seq"] <= cut]
        union += piece
        cursor = json.loads(piece[-1])["seq"]
    assert union == ring
    assert len({json.loads(line)["seq"] for line in union}) == len(ring)


def test_follow_with_after_seq_starts_right_after_it(start_memlogd) -> None:
    proc = start_memlogd("-max-lines", "20000")
    src = new_source(proc.log_path, "writer")
    write_lines(src, "writer", proc.query_path, [f"line {i}" for i in range(3000)])
    header, ring = ext(proc.query_path)
    for point in (0, header["first_seq"] + 17, header["next_seq"] - 1):
        follower = connect_follower(proc.query_path, dump=False, follow=True, after_seq=point)
        assert follower.next()["memlogd"]["instance"] == header["instance"]
        expected = [e for e in ring if e["seq"] > point]
        assert [follower.next() for _ in expected] == expected
        src.sendall(b"after %d\n" % point)
        new = follower.next()
        assert (new["seq"], new["source"], new["msg"]) == (
            expected[-1]["seq"] + 1 if expected else point + 1,
            "writer",
            f"after {point}",
        )
        follower.sock.close()
        header, ring = ext(proc.query_path)


@pytest.mark.parametrize("follow", [False, True], ids=["dump", "follow"])
def test_late_resume_in_a_small_ring_counts_exactly_what_was_missed(
    start_memlogd, follow: bool
) -> None:
    proc = start_memlogd("-max-lines", "100", "-evict", "oldest")  # no holes: one run missed
    src = new_source(proc.log_path, "writer")
    write_lines(src, "writer", proc.query_path, [f"early {i}" for i in range(50)])
    _, seen = ext(proc.query_path)
    cursor = seen[-1]["seq"]
    later = [f"late {i}" for i in range(230)]
    write_lines(src, "writer", proc.query_path, later)

    if follow:
        reader = connect_follower(proc.query_path, dump=False, follow=True, after_seq=cursor)
        header = reader.next()["memlogd"]
        got = [reader.next() for _ in range(1 + header["next_seq"] - header["first_seq"])]
        reader.sock.close()
    else:
        header, got = ext(proc.query_path, after_seq=cursor)
    first, nxt = header["first_seq"], header["next_seq"]
    assert nxt - first == 100
    missed = first - cursor - 1
    assert got[0] == {"seq": cursor + 1, "dropped": missed}
    assert [e["seq"] for e in got[1:]] == list(range(first, nxt))
    # everything after the cursor came from the writer: dropped + held = written
    assert {e["source"] for e in got[1:]} == {"writer"}
    assert [e["msg"] for e in got[1:]] == later[missed:]
    assert missed + len(got) - 1 == len(later)


# ---------------------------------------------------------------------- slow follower


@pytest.mark.parametrize("dump", [False, True], ids=["follow", "dump+follow"])
@pytest.mark.parametrize("pace", ["stalled", "slow", "keeping_up"])
@pytest.mark.parametrize("run", range(2))
def test_slow_follower_gets_or_is_told_of_every_entry(
    start_memlogd, pace: str, run: int, dump: bool
) -> None:
    written = 20_000
    proc = start_memlogd("-max-lines", "100")
    src = new_source(proc.log_path, "writer")
    write_lines(src, "writer", proc.query_path, ["registered"])  # fd_registered is logged
    follower = connect_follower(proc.query_path, rcvbuf=4096, dump=dump, follow=True)
    header = follower.next()["memlogd"]
    start = header["next_seq"]
    # more than the follower's socket buffers hold: a follower is handed each
    # batch before the ring makes room (SPEC 14), so it loses only once they are full
    pad = b"p" * 200
    payload = b"".join(b"w%d %s%s\n" % (i, b"x" * (i % 40), pad) for i in range(written))
    step = 16 * 1024
    for offset in range(0, len(payload), step):
        src.sendall(payload[offset : offset + step])
        if pace == "slow":
            follower.sock.settimeout(DEADLINE_S)
            follower.buf += follower.sock.recv(2048)
        elif pace == "keeping_up":
            follower.sock.setblocking(False)
            try:
                while chunk := follower.sock.recv(1 << 16):
                    follower.buf += chunk
            except BlockingIOError:
                pass

    # the dump part is a snapshot: whole, though read only after the flood
    held = [follower.next() for _ in range(start - header["first_seq"]) if dump]
    assert [e["seq"] for e in held] == list(range(header["first_seq"], start))[: len(held)]
    assert not dump or (len(held) > 1 and held[-1]["msg"] == "registered")

    expect_seq = start
    received: list[str] = []
    dropped = 0
    last = f"w{written - 1} " + "x" * ((written - 1) % 40) + pad.decode()
    while not received or received[-1] != last:
        obj = follower.next()
        if "dropped" in obj:
            assert set(obj) == {"seq", "dropped"}
            assert obj["seq"] == expect_seq and obj["dropped"] > 0
            dropped += obj["dropped"]
            expect_seq += obj["dropped"]
        else:
            assert obj["seq"] == expect_seq, "seqs strictly increasing, no gap untold"
            assert obj["source"] == "writer"
            received.append(obj["msg"])
            expect_seq += 1
    follower.sock.close()

    assert len(received) + dropped == written
    assert len(set(received)) == len(received)
    indices = [int(m.split()[0][1:]) for m in received]
    assert indices == sorted(indices)
    if pace != "keeping_up":
        assert dropped > 0, "the follower was expected to fall a ring behind"


# ---------------------------------------------------------------------- filters


SOURCES = ["web.out", "web", "db", "cache;1", "Web", "db-replica"]


@pytest.fixture(name="mixed")
def fixture_mixed(start_memlogd) -> tuple[str, list[dict[str, Any]]]:
    """A memlogd holding interleaved batches of several sources, and its full dump."""
    proc = start_memlogd()
    socks = {name: new_source(proc.log_path, name) for name in SOURCES}
    for rnd in range(4):
        for name, sock in socks.items():
            write_lines(sock, name, proc.query_path, [f"{name} {rnd} {i}" for i in range(3)])
    _, full = ext(proc.query_path)
    assert len(full) >= len(SOURCES) * 12
    return proc.query_path, full


def matches(entry: dict[str, Any], globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(entry["source"], g) for g in globs)


GLOBS = [
    ["web*"],
    ["web"],
    ["db", "cache*"],
    ["[wW]eb"],
    ["*;*"],
    ["db-?eplica"],
    ["nothing"],
    ["*"],
    ["memlogd"],
]


@pytest.mark.parametrize("globs", GLOBS, ids=lambda g: ",".join(g))
def test_sources_filter_matches_the_model(mixed, globs: list[str]) -> None:
    query_path, full = mixed
    _, got = ext(query_path, sources=globs)
    assert got == [e for e in full if matches(e, globs)]


@pytest.mark.parametrize("tail", [0, 1, 5, 20, 10_000])
@pytest.mark.parametrize("globs", [[], ["web*"], ["db"]], ids=["all", "web*", "db"])
def test_tail_is_the_last_matching_entries(mixed, tail: int, globs: list[str]) -> None:
    query_path, full = mixed
    _, got = ext(query_path, sources=globs, tail=tail)
    model = [e for e in full if not globs or matches(e, globs)]
    assert got == (model[max(0, len(model) - tail) :] if tail else [])


def test_since_drops_older_entries(mixed) -> None:
    query_path, full = mixed
    times = sorted({e["time"] for e in full}, key=timefmt.parse_time)
    assert len(times) >= len(SOURCES) * 4  # one time per batch
    for since in [times[0], times[1], times[len(times) // 2], times[-1]]:
        since_ns = timefmt.parse_time(since)
        _, got = ext(query_path, since=since)
        assert got == [e for e in full if timefmt.parse_time(e["time"]) >= since_ns]
        # one nanosecond later drops exactly the entries of that instant
        _, later = ext(query_path, since=timefmt.format_time(since_ns + 1))
        assert later == [e for e in full if timefmt.parse_time(e["time"]) > since_ns]
    _, none = ext(query_path, since="2999-01-01T00:00:00Z")
    assert none == []


def test_filters_combine(mixed) -> None:
    query_path, full = mixed
    since = sorted({e["time"] for e in full}, key=timefmt.parse_time)[10]
    cursor = full[len(full) // 3]["seq"]
    model = [
        e
        for e in full
        if matches(e, ["web*", "db"])
        and timefmt.parse_time(e["time"]) >= timefmt.parse_time(since)
        and e["seq"] > cursor
    ]
    _, got = ext(query_path, sources=["web*", "db"], since=since, after_seq=cursor, tail=4)
    assert got == model[-4:]
    assert len(model) > 4


@pytest.mark.parametrize(
    "line",
    [
        b'{"bogus": 1}',
        b'{"tail": -1}',
        b'{"tail": "3"}',
        b'{"sources": "web"}',
        b'{"sources": [1]}',
        b'{"since": "yesterday"}',
        b'{"follow": 1}',
        b"[]",
        b"not json",
    ],
)
def test_malformed_request_gets_one_error_line(start_memlogd, line: bytes) -> None:
    proc = start_memlogd()
    answer = query_raw(proc.query_path, b"\x03" + line + b"\n")
    assert answer.count(b"\n") == 1
    reply = json.loads(answer)
    assert list(reply) == ["error"] and isinstance(reply["error"], str) and reply["error"]


# ---------------------------------------------------------------------- stats


def logread(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(python_m("logread", *args), capture_output=True, timeout=DEADLINE_S)


def test_stats_count_what_was_written(start_memlogd) -> None:
    proc = start_memlogd()
    alpha = new_source(proc.log_path, "alpha")
    beta1 = new_source(proc.log_path, "beta")
    beta2 = new_source(proc.log_path, "beta")
    write_lines(alpha, "alpha", proc.query_path, [f"a{i}" for i in range(7)])
    write_lines(beta1, "beta", proc.query_path, [f"b{i}" for i in range(5)])
    write_lines(beta2, "beta", proc.query_path, [f"c{i}" for i in range(8)])
    beta2.close()

    def stats() -> dict[str, Any]:
        result = logread("-socket", proc.query_path, "--stats", "-o", "json")
        assert result.returncode == 0 and result.stderr == b""
        values: dict[str, Any] = json.loads(result.stdout)
        return values

    values = wait_for(lambda: (s := stats())["sources"]["beta"]["open"] == 1 and s, DEADLINE_S)
    _, full = ext(proc.query_path)
    me = {"evicted": 0, "pid": os.getpid(), "uid": os.getuid()}
    assert values["sources"]["alpha"] == {"entries": 7, "received": 7, "open": 1, **me}
    assert values["sources"]["beta"] == {"entries": 13, "received": 13, "open": 1, **me}
    assert values["open_fds"] == 2
    assert values["entries"] == sum(s["entries"] for s in values["sources"].values())
    assert values["received"] == sum(s["received"] for s in values["sources"].values())
    assert values["overwritten"] == 0
    assert values["limits"]["max_lines"] == config.DEFAULT_MAX_LINES
    # memlogd's own events are entries too: the ring holds what the stats say
    assert len(full) == values["entries"]
    assert sum(e["source"] == "memlogd" for e in full) == values["sources"]["memlogd"]["entries"]

    table = logread("-socket", proc.query_path, "--stats")
    assert table.returncode == 0 and table.stderr == b""
    text = table.stdout.decode()
    pid, uid = os.getpid(), os.getuid()
    assert _row(text, "SOURCE") == [
        "SOURCE",
        "ENTRIES",
        "RECEIVED",
        "EVICTED",
        "OPEN",
        "PID",
        "UID",
    ]
    assert _row(text, "alpha") == ["alpha", "7", "7", "0", "1", str(pid), str(uid)]
    assert _row(text, "beta") == ["beta", "13", "13", "0", "1", str(pid), str(uid)]
    assert _field(text, "open_fds") == "2"
    assert _field(text, "max_lines") == str(config.DEFAULT_MAX_LINES)


def _row(text: str, name: str) -> list[str]:
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, text
    return rows[0]


def _field(text: str, key: str) -> str:
    row = _row(text, key)
    assert len(row) == 2, row
    return row[1]


def test_stats_of_a_full_ring(start_memlogd) -> None:
    proc = start_memlogd("-max-lines", "5")
    src = new_source(proc.log_path, "busy")
    write_lines(src, "busy", proc.query_path, [f"m{i}" for i in range(40)])
    result = logread("-socket", proc.query_path, "--stats", "-o", "json")
    values = json.loads(result.stdout)
    assert values["entries"] == 5
    assert values["sources"]["busy"]["received"] == 40
    assert values["received"] == values["entries"] + values["overwritten"]
    assert sum(s["entries"] for s in values["sources"].values()) == 5


def test_follow_from_a_cursor_beyond_the_ring_starts_now(start_memlogd: Any) -> None:
    """A cursor from another instance (past next_seq) must not stall the follow."""
    proc = start_memlogd()
    src = new_source(proc.log_path, "c")
    write_lines(src, "c", proc.query_path, ["before"])
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(proc.query_path)
    sock.settimeout(DEADLINE_S)
    sock.sendall(request(dump=False, follow=True, after_seq=10**9))
    data = b""
    while b"\n" not in data:
        data += sock.recv(65536)
    next_seq = json.loads(data.split(b"\n")[0])["memlogd"]["next_seq"]
    src.sendall(b"after\n")
    while data.count(b"\n") < 2:
        data += sock.recv(65536)
    first = json.loads(data.split(b"\n")[1])
    assert (first["source"], first["msg"], first["seq"]) == ("c", "after", next_seq)
    sock.close()
    src.close()
