"""logread selecting as journalctl does: -u, -g/-i, -n/--lines, --since/--until, -r,
-o short-iso/json-pretty/cat, --list-sources, '-- No entries --' and its hint.
Real `python -m logread` processes against a real memlogd (and, where the exact
requests matter, the scripted fake server of test_logread)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from typing import Any

import pytest

from memlogd.wire import protocol as proto
from memlogd.wire.timefmt import parse_time
from tests.e2e.test_logread import (
    DEADLINE_S,
    FakeServer,
    answer_as_upstream,
    ext_dump,
    fixture_fake,
    fixture_logread,
    header,
    run_logread,
    short_line,
    sync,
    wait_landed,
)
from tests.helpers import MemlogdProcess, dump, new_source

__all__ = ["fixture_fake", "fixture_logread"]  # the fixtures this module uses
from tests.wire import encode_entry

pytestmark = pytest.mark.e2e

Entry = dict[str, Any]

WRITES = {
    "web": [b"web starting", b"error: timeout talking to db"],
    "web.out": [b"GET / 200", b"GET /error 500"],
    "db.out": [b"db ready", b"ERROR disk full"],
    "error-src": [b"all fine"],  # the source matches "error", its message does not
    "webapp": [b"webapp line"],
}


@pytest.fixture(name="services")
def fixture_services(memlogd: MemlogdProcess) -> MemlogdProcess:
    """memlogd holding the lines of a few services (stderr as NAME, stdout as NAME.out)."""
    for name, lines in WRITES.items():
        with new_source(memlogd.log_path, name) as src:
            src.sendall(b"".join(line + b"\n" for line in lines))
    for lines in WRITES.values():
        wait_landed(memlogd.query_path, lines[-1].decode())
    return memlogd


def expect(
    ring: list[Entry],
    *,
    globs: tuple[str, ...] = (),
    grep: str | None = None,
    flags: int = 0,
    since: str | None = None,
    until: str | None = None,
    tail: int | None = None,
    reverse: bool = False,
) -> list[Entry]:
    """What logread must show of ``ring``, computed here from its definition."""
    since_ns = parse_time(since) if since else None
    until_ns = parse_time(until) if until else None
    shown = []
    for e in ring:
        t = parse_time(e["time"])
        if until_ns is not None and t > until_ns:
            break
        if globs and not any(fnmatch.fnmatchcase(e["source"], g) for g in globs):
            continue
        if since_ns is not None and t < since_ns:
            continue
        if grep is None or re.search(grep, e["msg"], flags):
            shown.append(e)
    if tail is not None:
        shown = shown[max(0, len(shown) - tail) :]
    return shown[::-1] if reverse else shown


def short(entries: list[Entry]) -> bytes:
    return b"".join(map(short_line, entries))


def ok(*args: str) -> bytes:
    """logread's stdout; it must exit 0 with nothing on stderr."""
    result = run_logread(*args)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    return result.stdout


def webs(ring: list[Entry]) -> list[Entry]:
    return [e for e in ring if e["source"] in ("web", "web.out")]


# ---------------------------------------------------------------------- -u, -s


@pytest.mark.parametrize("unit", ["web", "web.service"])
def test_unit_is_both_streams_of_a_service(services: MemlogdProcess, unit: str) -> None:
    ring = dump(services.query_path)
    assert sorted(e["msg"].encode() for e in webs(ring)) == sorted(
        WRITES["web"] + WRITES["web.out"]
    )
    assert ok("-socket", services.query_path, "-u", unit) == short(webs(ring))


def test_units_and_sources_are_or_ed(services: MemlogdProcess) -> None:
    q = services.query_path
    ring = dump(q)
    want = short(expect(ring, globs=("web", "web.out", "db", "db.out", "error-src")))
    assert ok("-socket", q, "-u", "web", "--unit", "db", "-s", "error-src") == want
    assert ok("-socket", q, "-unit", "web", "-source", "error-src", "-u", "db") == want


def test_unit_asks_memlogd_for_both_globs(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-u", "web", "-s", "kmsg", "-u", "web")
    with fake.accept() as conn:
        request = fake.read_request(conn)
        assert json.loads(request[1:]) == {
            "dump": True,
            "follow": False,
            "sources": ["kmsg", "web", "web.out"],
        }
        conn.sendall(header("i", 1, 1))
    assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.stderr() == b"-- No entries --\n"


# ---------------------------------------------------------------------- -g, -i


def test_grep_matches_the_message_only(services: MemlogdProcess) -> None:
    q = services.query_path
    ring = dump(q)
    shown = expect(ring, grep="error")
    assert "all fine" not in [e["msg"] for e in shown]  # its source says error, not its message
    assert "ERROR disk full" not in [e["msg"] for e in shown]  # case matters
    assert ok("-socket", q, "-g", "error") == short(shown)
    assert ok("-socket", q, "--grep=error", "-o", "cat") == b"".join(
        e["msg"].encode() + b"\n" for e in shown
    )


def test_ignore_case(services: MemlogdProcess) -> None:
    q = services.query_path
    shown = expect(dump(q), grep="error", flags=re.IGNORECASE)
    assert "ERROR disk full" in [e["msg"] for e in shown]
    assert ok("-socket", q, "-g", "error", "-i") == short(shown)
    assert ok("-socket", q, "-grep", "ERROR", "-ignore-case") == short(shown)


def test_grep_with_units_and_a_regex(services: MemlogdProcess) -> None:
    q = services.query_path
    shown = expect(dump(q), globs=("web", "web.out"), grep=r"^GET /\w+")
    assert [e["msg"] for e in shown] == ["GET /error 500"]
    assert ok("-socket", q, "-u", "web", "-g", r"^GET /\w+") == short(shown)


def test_a_bad_regex_is_a_usage_error(services: MemlogdProcess) -> None:
    result = run_logread("-socket", services.query_path, "-g", "a(b")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.endswith(
        b"Error: Invalid value for '-g' / '--grep': 'a(b' is not a regular expression: "
        b"missing ), unterminated subpattern at position 1\n"
    )


# ---------------------------------------------------------------------- -n, --lines


@pytest.mark.parametrize("flag", ["-n", "--lines", "--tail", "-lines", "-tail"])
def test_lines_is_tail(services: MemlogdProcess, flag: str) -> None:
    q = services.query_path
    assert ok("-socket", q, flag, "3") == short(dump(q)[-3:])


def test_tail_of_what_grep_shows(services: MemlogdProcess) -> None:
    """-n with -g: the last N of the matching lines, not the matches among the last N."""
    q = services.query_path
    ring = dump(q)
    shown = expect(ring, grep="error|ERROR", tail=2)
    assert len(shown) == 2
    assert ok("-socket", q, "-n", "2", "-g", "error|ERROR") == short(shown)
    assert ok("-socket", q, "-n", "2", "-g", "error", "-i") == short(
        expect(ring, grep="error", flags=re.IGNORECASE, tail=2)
    )
    assert ok("-socket", q, "-n", "50", "-g", "error") == short(expect(ring, grep="error"))


def test_tail_larger_than_what_is_held(services: MemlogdProcess) -> None:
    """More than there is, but less than twice as many (a negative slice start
    would give the last 4 - 5 = -1, i.e. one entry)."""
    q = services.query_path
    ring = dump(q)
    want = short(webs(ring))
    assert ok("-socket", q, "-u", "web", "-n", str(len(webs(ring)) + 1)) == want


def test_tail_larger_than_what_grep_shows(services: MemlogdProcess) -> None:
    q = services.query_path
    shown = expect(dump(q), grep="GET")
    assert len(shown) == 2
    assert ok("-socket", q, "-n", "3", "-g", "GET") == short(shown)


# ---------------------------------------------------------------------- --since, --until


def test_since_and_until_in_journalctl_forms(services: MemlogdProcess) -> None:
    q = services.query_path
    everything = short(dump(q))
    assert ok("-socket", q, "--since", "5 min ago") == everything
    assert ok("-socket", q, "--since", "today", "--until", "now") == everything
    assert ok("-socket", q, "-since", "1h", "-until", "+1h") == everything
    for args in (["--since", "tomorrow"], ["--until", "yesterday"]):
        result = run_logread("-socket", q, *args)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"-- No entries --\n")


def test_until_and_a_window(services: MemlogdProcess) -> None:
    q = services.query_path
    ring = dump(q)
    middle = ring[len(ring) // 2]["time"]
    up_to = expect(ring, until=middle)
    assert 0 < len(up_to) < len(ring)
    assert ok("-socket", q, "--until", middle) == short(up_to)
    # a space instead of T, and the same instant with an offset
    spaced = middle.replace("T", " ")
    assert ok("-socket", q, "--until", spaced) == short(up_to)
    since = ring[2]["time"]
    window = expect(ring, since=since, until=middle)
    assert ok("-socket", q, "--since", since, "--until", middle) == short(window)
    assert ok("-socket", q, "--until", middle, "-n", "2") == short(up_to[-2:])


def test_since_after_until_is_a_usage_error(services: MemlogdProcess) -> None:
    result = run_logread("-socket", services.query_path, "--since", "now", "--until", "1h")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.endswith(b"Error: --since is later than --until: nothing could match\n")


# ---------------------------------------------------------------------- -r


def test_reverse_is_newest_first(services: MemlogdProcess) -> None:
    q = services.query_path
    ring = dump(q)
    assert ok("-socket", q, "-r") == short(ring[::-1])
    assert ok("-socket", q, "--reverse", "-n", "3") == short(ring[-3:][::-1])
    assert ok("-socket", q, "-r", "-g", "error", "-i", "-n", "2") == short(
        expect(ring, grep="error", flags=re.IGNORECASE, tail=2, reverse=True)
    )
    assert ok("-socket", q, "-r", "-u", "db") == short(expect(ring, globs=("db", "db.out"))[::-1])


@pytest.mark.parametrize("follow", ["-f", "-F"])
def test_reverse_with_follow_is_a_usage_error(services: MemlogdProcess, follow: str) -> None:
    result = run_logread("-socket", services.query_path, "-r", follow)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.endswith(
        b"Error: -r/--reverse shows a dump newest first: not with -f or -F\n"
    )


# ---------------------------------------------------------------------- -o


def test_short_iso(services: MemlogdProcess) -> None:
    q = services.query_path
    ring = dump(q)
    out = ok("-socket", q, "-o", "short-iso", "-u", "db")
    assert out == b"".join(
        f"{e['time'][:19]}+0000;{e['source']};{e['msg']}\n".encode()
        for e in expect(ring, globs=("db", "db.out"))
    )
    assert re.fullmatch(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000;db\.out;[^\n]*\n){2}", out)


def test_json_pretty(services: MemlogdProcess) -> None:
    q = services.query_path
    objects = [json.loads(line) for line in ext_dump(q, sources=["web.out"])]
    for o in objects:
        o["priority"] = 6  # lines that say no level are info
    out = ok("-socket", q, "-o", "json-pretty", "-s", "web.out")
    assert out == b"".join(
        json.dumps(o, indent=2, ensure_ascii=False).encode() + b"\n" for o in objects
    )
    assert out.startswith(b'{\n  "time": "')
    assert list(objects[0]) == ["time", "source", "msg", "seq", "priority"]


@pytest.mark.parametrize("output", ["cat", "raw"])
def test_cat_is_raw(services: MemlogdProcess, output: str) -> None:
    q = services.query_path
    assert ok("-socket", q, "-o", output, "-u", "web") == b"".join(
        e["msg"].encode() + b"\n" for e in webs(dump(q))
    )


# ---------------------------------------------------------------------- --list-sources


def test_list_sources(services: MemlogdProcess) -> None:
    q = services.query_path
    out = ok("-socket", q, "--list-sources")
    (stats_line,) = ext_dump(q, stats=True)
    counts = {k: v["entries"] for k, v in json.loads(stats_line)["stats"]["sources"].items()}
    assert {k: counts[k] for k in WRITES} == {k: len(v) for k, v in WRITES.items()}
    width = max(map(len, counts))
    digits = max(len(str(n)) for n in counts.values())
    assert out == b"".join(
        f"{name.ljust(width)}  {str(counts[name]).rjust(digits)}\n".encode()
        for name in sorted(counts)
    )
    as_json = ok("-socket", q, "-list-sources", "-o", "json")
    assert [json.loads(line) for line in as_json.splitlines()] == [
        {"source": name, "entries": counts[name], "evicted": 0} for name in sorted(counts)
    ]


def test_list_sources_with_a_selection_is_a_usage_error(services: MemlogdProcess) -> None:
    result = run_logread("-socket", services.query_path, "--list-sources", "-u", "web")
    assert (result.returncode, result.stdout) == (2, b"")
    assert b"--list-sources cannot be combined with" in result.stderr


# ---------------------------------------------------------------------- no entries


@pytest.mark.parametrize(
    "args",
    [
        ["-s", "nothing"],
        ["-u", "nothing"],
        ["-g", "no such words"],
        ["-n", "0"],
        ["-s", "web", "-g", "no such words"],  # web matched: no hint
        ["-s", "db*", "-g", "no such words"],
    ],
    ids=str,
)
def test_no_entries(services: MemlogdProcess, args: list[str]) -> None:
    result = run_logread("-socket", services.query_path, *args)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"-- No entries --\n")


def test_no_entries_hint_when_the_services_stderr_holds_none(fake: FakeServer, logread) -> None:
    """`-s chatty`: chatty is known but holds 0 entries (overwritten), chatty.out
    holds 490: the hint still points at `-u chatty` (SPEC 18)."""
    reader = logread("-socket", fake.path, "-s", "chatty")
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:])["sources"] == ["chatty"]
        conn.sendall(header("I", 1, 600))
    with fake.accept() as conn:  # the hint's source list
        assert json.loads(fake.read_request(conn)[1:])["stats"] is True
        sources = {"chatty": {"entries": 0}, "chatty.out": {"entries": 490}}
        conn.sendall(header("I", 1, 600) + proto.encode_stats({"sources": sources}))
    assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.stderr() == (
        b"-- No entries --\n"
        b"logread: -s chatty matches no source, but chatty.out exists (a service's stdout): "
        b"use -u chatty for both streams, or -s 'chatty*'\n"
    )


def test_no_entries_hint_for_a_services_stdout(services: MemlogdProcess) -> None:
    """`-s db` names the service's stderr; it wrote only to stdout (db.out)."""
    result = run_logread("-socket", services.query_path, "-s", "db", "-s", "nothing")
    assert (result.returncode, result.stdout) == (0, b"")
    assert result.stderr == (
        b"-- No entries --\n"
        b"logread: -s db matches no source, but db.out exists (a service's stdout): "
        b"use -u db for both streams, or -s 'db*'\n"
    )
    assert ok("-socket", services.query_path, "-u", "db") == short(
        expect(dump(services.query_path), globs=("db", "db.out"))
    )


def test_no_entries_from_upstream_memlogd_has_no_hint(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-s", "db")
    for _ in range(2):  # closed twice unanswered: upstream's memlogd (once: a killed worker)
        with fake.accept() as conn:
            assert fake.read_request(conn)[:1] == b"\x03"
    with fake.accept() as conn:
        answer_as_upstream(conn, 0)
    assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.stderr() == b"-- No entries --\n"
    fake.sock.settimeout(0)  # and it did not ask upstream's memlogd for statistics
    with pytest.raises(BlockingIOError):
        fake.sock.accept()


# ---------------------------------------------------------------------- following


def test_follow_with_grep(memlogd: MemlogdProcess, logread) -> None:
    src = new_source(memlogd.log_path, "svc")
    reader = logread(
        "-socket", memlogd.query_path, "-f", "-s", "svc", "-g", "keep|sync", "-o", "raw"
    )
    sync(src, reader)
    src.sendall(b"drop 1\nkeep 1\ndrop 2\nkeep 2\n")
    assert reader.lines(2) == [b"keep 1", b"keep 2"]
    assert reader.interrupt() == (130, b"")


def test_follow_tail_of_grep_then_new_lines(memlogd: MemlogdProcess, logread) -> None:
    """-f -n 2 -g: the last 2 matching lines held, then the new ones, none twice."""
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"keep 1\ndrop\nkeep 2\nkeep 3\ndrop\n")
    wait_landed(memlogd.query_path, "keep 3")
    reader = logread("-socket", memlogd.query_path, "-f", "-n", "2", "-g", "keep", "-o", "raw")
    assert reader.lines(2) == [b"keep 2", b"keep 3"]
    src.sendall(b"drop\nkeep 4\n")
    assert reader.lines(1) == [b"keep 4"]
    assert reader.interrupt() == (130, b"")


def entry_at(seq: int, msg: str, time_ns: int) -> bytes:
    return encode_entry(proto.LogEntry(time_ns, "svc", msg, seq))


def test_follow_tail_of_grep_resumes_right_after_the_dump(fake: FakeServer, logread) -> None:
    """The dump alone first, then a follow from the dump's end (its header's next_seq),
    so an entry appended in between is neither lost nor shown twice."""
    reader = logread("-socket", fake.path, "-f", "-n", "1", "-g", "keep", "-s", "svc", "-o", "raw")
    with fake.accept() as conn:
        request = fake.read_request(conn)
        assert json.loads(request[1:]) == {"dump": True, "follow": False, "sources": ["svc"]}
        conn.sendall(
            header("I", 3, 9) + entry_at(5, "keep a", 5) + entry_at(7, "keep b", 7)
        )  # seq 6 and 8 are another source's
    assert reader.lines(1) == [b"keep b"]
    with fake.accept() as conn:
        request = fake.read_request(conn)
        assert json.loads(request[1:]) == {
            "dump": True,
            "follow": True,
            "sources": ["svc"],
            "after_seq": 8,
        }
        conn.sendall(header("I", 3, 10) + entry_at(9, "keep c", 9) + entry_at(10, "drop", 10))
        assert reader.lines(1) == [b"keep c"]
        code, err = reader.interrupt()
    assert (code, err) == (130, b"")


def test_follow_tail_of_grep_from_upstream_memlogd(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-F", "-n", "1", "-g", "debug", "-o", "raw")
    for _ in range(2):  # upstream's memlogd closes mode 3 unanswered (each time)
        with fake.accept() as conn:
            assert fake.read_request(conn)[:1] == b"\x03"
    with fake.accept() as conn:
        answer_as_upstream(conn, 0)  # the dump, in mode 0
    assert reader.lines(1) == [b"level=debug"]
    with fake.accept() as conn:
        assert conn.recv(1) == b"\x01"  # then follow, in mode 1
        conn.sendall(b'{"time":"2019-02-22T16:04:25Z","source":"x","msg":"debug 2"}\n')
        assert reader.lines(1) == [b"debug 2"]
        code, err = reader.interrupt()
    assert (code, err) == (130, b"")


def test_until_ends_a_follow(fake: FakeServer, logread) -> None:
    """As journalctl: when following, the first entry later than --until ends logread."""
    until = "2019-02-22T16:04:24Z"
    reader = logread("-socket", fake.path, "-F", "--until", until, "-o", "raw")
    at = parse_time(until)
    with fake.accept() as conn:
        request = fake.read_request(conn)
        assert json.loads(request[1:]) == {"dump": True, "follow": True}
        conn.sendall(header("I", 1, 3) + entry_at(1, "before", at - 1) + entry_at(2, "at", at))
        assert reader.lines(2) == [b"before", b"at"]
        conn.sendall(entry_at(3, "after", at + 1) + entry_at(4, "older again", at - 5))
        assert reader.proc.wait(DEADLINE_S) == 0  # the connection is still open
    assert (reader.buf, os.read(reader.fd, 100), reader.stderr()) == (b"", b"", b"")


def test_until_in_the_past_ends_a_dump_follow_at_once(services: MemlogdProcess) -> None:
    q = services.query_path
    ring = dump(q)
    middle = ring[len(ring) // 2]["time"]
    result = run_logread("-socket", q, "-F", "--until", middle)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == short(expect(ring, until=middle))


def test_grep_over_many_batches(memlogd: MemlogdProcess) -> None:
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"".join(b"line %d\n" % i for i in range(50)))
    wait_landed(memlogd.query_path, "line 49")
    out = ok("-socket", memlogd.query_path, "-s", "svc", "-o", "cat", "-g", "line [0-9]*[05]$")
    assert out == b"".join(b"line %d\n" % i for i in range(0, 50, 5))
