"""Losses on stderr: `logread: N entries lost (seq A-B)`, at most one line per
second, a burst of gaps summed into one line that comes out even when no further
gap arrives, and before exit.  Exact wire bytes from the scripted fake server of
test_logread; then a real memlogd whose follower falls a ring behind."""

from __future__ import annotations

import json
import re

import pytest

from memlogd.wire import protocol as proto
from tests.e2e.test_logread import (
    DEADLINE_S,
    FakeServer,
    entry,
    fixture_fake,
    fixture_logread,
    header,
    readers,
    wait_landed,
)
from tests.helpers import new_source, wait_for

__all__ = ["fixture_fake", "fixture_logread"]  # the fixtures this module uses

pytestmark = pytest.mark.e2e

# One answer chunk with three runs of holes (the fair ring's, or a reader a ring
# behind): one line at once, 3 + 2 + 1 = 6 entries, the first missing seq 2, the
# last 10.  A further gap within the second is held, and summed with any more.
BURST = (
    entry(1, "one")
    + proto.encode_dropped(2, 3)
    + entry(5, "five")
    + proto.encode_dropped(6, 2)
    + entry(8, "eight")
    + proto.encode_dropped(10, 1)
    + entry(11, "eleven")
)
FIRST = b"logread: 6 entries lost (seq 2-10)\n"


def test_a_dump_sums_a_burst_and_says_it_before_exit(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-o", "raw", "-s", "svc")
    with fake.accept() as conn:
        fake.read_request(conn)
        conn.sendall(header("I", 1, 12) + BURST)
    assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.lines(4) == [b"one", b"five", b"eight", b"eleven"]
    assert reader.stderr() == FIRST


def test_a_follow_says_the_summed_line_without_a_further_gap(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-f", "-o", "raw")
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:]) == {"dump": False, "follow": True}
        conn.sendall(header("I", 1, 1) + BURST)
        assert reader.lines(4) == [b"one", b"five", b"eight", b"eleven"]
        assert reader.stderr_line() == FIRST
        conn.sendall(entry(12, "twelve") + proto.encode_dropped(13, 2) + entry(15, "x"))
        assert reader.lines(2) == [b"twelve", b"x"]
        conn.sendall(proto.encode_dropped(16, 1) + entry(17, "y"))
        assert reader.lines(1) == [b"y"]
        # held within the second, summed, and said with nothing else arriving
        assert reader.stderr_line() == b"logread: 3 entries lost (seq 13-16)\n"
        code, err = reader.interrupt()
    assert (code, err) == (130, b"")


def test_plain_follow_reports_losses_from_the_extended_query(fake: FakeServer, logread) -> None:
    """Even `logread -f` with no flag of ours: it asks the extended query first."""
    reader = logread("-socket", fake.path, "-F")
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:]) == {"dump": True, "follow": True}
        conn.sendall(header("I", 5, 9) + proto.encode_dropped(5, 4) + entry(9, "nine"))
        assert reader.lines(1)[0].endswith(b";svc;nine")
        assert reader.stderr_line() == b"logread: 4 entries lost (seq 5-8)\n"
        code, err = reader.interrupt()
    assert (code, err) == (130, b"")


LOSS = re.compile(rb"logread: (\d+) entries lost \(seq (\d+)-(\d+)\)")


def test_a_follower_a_ring_behind_loses_nothing_silently(start_memlogd, logread) -> None:
    """Nobody reads logread's stdout while 100 000 lines go through a 100-line
    ring: memlogd drops what logread could not take, and logread says so.  Every
    seq from the first shown to the last is shown, or in a reported range."""
    proc = start_memlogd("-max-lines", "100")
    q = proc.query_path
    reader = logread("-socket", q, "-f", "-o", "json")  # every source: every seq
    wait_for(lambda: readers(q) == 1, DEADLINE_S, "logread following")
    src = new_source(proc.log_path, "svc")
    total = 100_000
    src.sendall(b"".join(b"%d\n" % i for i in range(total)))
    src.sendall(b"end\n")
    wait_landed(q, "end")
    shown = [json.loads(line) for line in reader.until(b'"msg":"end"', timeout=60)]
    code, err = reader.interrupt()
    assert code == 130
    losses = [LOSS.fullmatch(line) for line in err.splitlines()]
    assert all(losses), err
    ranges = [(int(m[2]), int(m[3]), int(m[1])) for m in losses if m]
    assert ranges, "memlogd dropped nothing: the test proves nothing"
    seqs = [e["seq"] for e in shown]
    assert seqs == sorted(set(seqs))
    numbers = [int(e["msg"]) for e in shown if e["source"] == "svc" and e["msg"] != "end"]
    assert numbers == sorted(numbers) and len(numbers) < total
    shown_seqs = set(seqs)
    missing = [s for s in range(seqs[0], seqs[-1]) if s not in shown_seqs]
    uncovered = [s for s in missing if not any(a <= s <= b for a, b, _ in ranges)]
    assert uncovered == []  # nothing lost silently
    within = sum(n for a, b, n in ranges if seqs[0] <= a and b <= seqs[-1])
    assert within <= len(missing) <= sum(n for _, _, n in ranges)
