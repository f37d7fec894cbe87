"""logwrite as a real subprocess against a real memlogd (docs/logwrite.md)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logwrite.cli import main as logwrite_main
from logwrite.rotation import safe_log_name
from memlogd.wire import protocol as proto
from memlogd.wire import timefmt
from tests.e2e.test_kmsg import CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, examples, unprivileged
from tests.e2e.test_logread import FakeServer
from tests.helpers import MemlogdProcess, dump, ignores, new_source, python_m, query_raw, wait_for
from tests.helpers import messages as messages_of
from tests.oneflags import one_dash_mismatches
from tests.wire import encode_entry

pytestmark = pytest.mark.e2e


class Logwrite:
    """``python -m logwrite`` with its stderr (JSON events) in a file."""

    def __init__(self, tmp: Path, query_path: str, log_dir: Path, *args: str) -> None:
        self.cmd = python_m(
            "logwrite",
            "-log-format",
            "json",
            "-socket",
            query_path,
            "-log-dir",
            str(log_dir),
            *args,
        )
        self.stderr_path = tmp / f"logwrite-{id(self)}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Logwrite:
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        return self

    def run(self, timeout: float = 10) -> int:
        self.start()
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    out.append(event)
        return out

    def wait_event(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.events(name)) >= count, what=name)
        return self.events(name)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("logwrite did not exit") from None


@pytest.fixture(name="running")
def fixture_running() -> Iterator[list[Logwrite]]:
    """Logwrite processes to stop at the end of a test, whatever happens."""
    procs: list[Logwrite] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(AssertionError):
            proc.stop(signal.SIGKILL)


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def messages(path: Path) -> list[str]:
    """The MSG part of each line of a log file."""
    return [line.split(" ", 2)[2] for line in read(path).decode().splitlines()]


def numbers(data: bytes) -> list[int]:
    return [int(line.rsplit(b" ", 1)[1]) for line in data.splitlines()]


def ends_with(path: Path, tail: bytes) -> Callable[[], bool]:
    return lambda: read(path).endswith(tail)


def header(query_path: str) -> proto.Header:
    raw = query_raw(query_path, proto.encode_request(proto.QueryRequest(dump=False)))
    reply = proto.decode_reply(raw.splitlines()[0])
    assert isinstance(reply, proto.Header)
    return reply


# --------------------------------------------------------------------------- rotation


def test_rotation_keeps_a_contiguous_run_in_upstream_names(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    logs = short_tmp / "logs"
    lw = Logwrite(
        short_tmp, memlogd.query_path, logs, "-max-log-size", "1024", "-max-log-files", "3"
    )
    running.append(lw.start())
    src = new_source(memlogd.log_path, "svc.out")
    for i in range(1, 501):
        src.sendall(b"line %04d\n" % i)
    wait_for(ends_with(logs / "svc.out.log", b" svc.out line 0500\n"), what="line 500")
    assert lw.stop() == 0
    parts = [read(logs / name) for name in ("svc.out.log.2", "svc.out.log.1", "svc.out.log.0")]
    live = read(logs / "svc.out.log")
    got = numbers(b"".join([*parts, live]))
    assert got == list(range(got[0], 501)) and got[0] > 1
    assert not (logs / "svc.out.log.3").exists()
    for part in parts:  # each rotated file went past 1024 bytes with its last line, not before
        assert len(part) > 1024
        assert len(part) - len(part.splitlines(keepends=True)[-1]) <= 1024
    assert len(live) <= 1024
    assert live.startswith(b"20") and b"Z svc.out line " in live


# --------------------------------------------------------------------------- names and safety


def test_hostile_source_names_stay_inside_the_dir(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    logs = short_tmp / "logs"
    before = sorted(os.listdir(short_tmp))
    raw_names = [
        b"../evil",
        b"a/b",
        b"..",
        b".",
        b"x\ny",
        b"\xff\xfe",
        b"n" * 600,
        b"logwrite.cursor",
        b"/etc/passwd",
        b"",
        b".hidden",
    ]
    lw = Logwrite(short_tmp, memlogd.query_path, logs, "--skip-source", "nothing-skipped")
    running.append(lw.start())
    for i, raw in enumerate(raw_names):
        new_source(memlogd.log_path, raw).sendall(b"message %d\n" % i)
    expected = {}
    for i, raw in enumerate(raw_names):
        name = proto.decode_name(raw)
        expected[safe_log_name(name) + ".log"] = f"message {i}"
    assert len(expected) == len(raw_names)
    for file_name, msg in expected.items():
        wait_for(lambda: messages(logs / file_name) == [msg], what=file_name)  # noqa: B023
    for entry in os.scandir(logs):
        assert entry.is_file(follow_symlinks=False)
        assert not entry.name.startswith("."), f"{entry.name!r} is hidden from ls"
    assert messages(logs / (safe_log_name(".hidden") + ".log")) == [f"message {len(raw_names) - 1}"]
    # SPEC 19: a name's controls are escaped as logread escapes them: one entry, one line
    forged = read(logs / (safe_log_name("x\ny") + ".log"))
    assert forged.count(b"\n") == 1 and forged.endswith(b"Z x\\x0ay message 4\n")
    after = [n for n in sorted(os.listdir(short_tmp)) if not n.startswith("logwrite-")]
    assert after == sorted([*before, "logs"])
    assert not Path("/etc/passwd.log").exists()


def test_planted_symlinks_are_never_followed(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    logs = short_tmp / "logs"
    logs.mkdir()
    outside = short_tmp / "outside.txt"
    outside.write_bytes(b"precious\n")
    (logs / "x.log").symlink_to(outside)
    outside2 = short_tmp / "outside2.txt"
    outside2.write_bytes(b"precious too\n")
    (logs / "r.log.0").symlink_to(outside2)  # a rotation target: replaced, not followed
    lw = Logwrite(short_tmp, memlogd.query_path, logs, "-max-log-size", "256")
    running.append(lw.start())
    x = new_source(memlogd.log_path, "x")
    for i in range(20):
        x.sendall(b"attack %d\n" % i)
    wait_for(lambda: len(dump(memlogd.query_path)) >= 22, what="x lines in the ring")
    r = new_source(memlogd.log_path, "r")
    for i in range(30):
        r.sendall(b"rotating line number %03d\n" % i)

    def r_lines() -> list[str]:
        names = [n for n in os.listdir(logs) if n.startswith("r.log")]
        names.sort(key=lambda n: -int(n.rsplit(".", 1)[1]) if n != "r.log" else 1)
        regular = [n for n in names if not (logs / n).is_symlink()]
        return [m for n in regular for m in messages(logs / n)]

    want = [f"rotating line number {i:03d}" for i in range(30)]
    wait_for(lambda: r_lines() == want, what="r lines")
    assert outside.read_bytes() == b"precious\n"
    assert outside2.read_bytes() == b"precious too\n"
    assert (logs / "x.log").is_symlink()
    assert not (logs / "r.log.0").is_symlink()  # the planted link was moved, never followed
    refused = lw.events("log_file_refused")
    assert len(refused) == 1  # rate-limited: one line per kind per 10 s
    assert refused[0]["file"] == "x.log" and refused[0]["kind"] == "ELOOP"
    assert lw.proc is not None and lw.proc.poll() is None


def plant_cursor(logs: Path, obj: dict[str, Any]) -> Path:
    logs.mkdir(exist_ok=True)
    path = logs / "logwrite.cursor"
    path.write_text(json.dumps(obj) + "\n")
    path.chmod(0o640)
    return path


def test_a_planted_cursor_cannot_touch_files_outside_the_dir(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    """SPEC 19: a user who may write in DIR plants a cursor whose unfinished batch
    names files outside it; root's logwrite must not delete, cut or move them."""
    q = memlogd.query_path
    new_source(memlogd.log_path, "a").sendall(b"hello\n")
    wait_for(lambda: any(e["source"] == "a" for e in dump(q)), what="a's line")
    victim = short_tmp / "victim"
    victim.mkdir()
    for name in ("important.log", "important.log.0", "trunc.log"):
        (victim / name).write_bytes(b"precious " + name.encode() + b"\n")
    logs = short_tmp / "logs"
    logs.mkdir(mode=0o1777)
    logs.chmod(0o1777)
    ino = (victim / "trunc.log").stat().st_ino
    absolute = str(victim / "important")
    for stem, names in [
        (absolute, {absolute + ".log.7": 1}),  # made by "the batch": removed
        ("../victim/trunc", {"../victim/trunc.log": ino}),  # cut to size 0
        ("ok", {"../victim/important.log": ino}),  # a name that is not the stem's
        ("ok", {"ok.log/../../victim/trunc.log": ino}),
    ]:
        cursor = plant_cursor(logs, {"instance": "x", "seq": 0, "pending": {stem: [names, 0]}})
        lw = Logwrite(short_tmp, q, logs, "--once")
        assert lw.run() == 0
        for name in ("important.log", "important.log.0", "trunc.log"):
            assert (victim / name).read_bytes() == b"precious " + name.encode() + b"\n"
        reasons = {w["reason"] for w in lw.events("cursor_ignored")}  # (each time DIR is read)
        assert len(reasons) == 1
        assert reasons.pop().startswith("logwrite.cursor names a file logwrite never writes: ")
        assert messages(logs / "a.log") == ["hello"]  # the documented fresh start
        assert json.loads(cursor.read_text())["instance"] != "x"
        (logs / "a.log").unlink()
        lw.stderr_path.unlink()  # (the next one may get the same id, so the same file)
    assert sorted(os.listdir(victim)) == ["important.log", "important.log.0", "trunc.log"]


def test_a_fifo_named_by_a_cursors_batch_never_blocks_the_undo(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    q = memlogd.query_path
    logs = short_tmp / "logs"
    logs.mkdir()
    os.mkfifo(logs / "a.log")
    fifo = (logs / "a.log").stat().st_ino
    plant_cursor(logs, {"instance": "x", "seq": 0, "pending": {"a": [{"a.log": fifo}, 0]}})
    lw = Logwrite(short_tmp, q, logs, "--once")
    assert lw.run() == 0  # (it hung, opening the FIFO to cut it)
    (kept,) = lw.events("unfinished_batch_kept")
    assert kept["error"] in ("No such device or address", "not a regular file")
    assert (logs / "a.log").is_fifo()


def test_a_cursor_of_another_user_or_writable_by_others_is_not_trusted(
    memlogd: MemlogdProcess, short_tmp: Path, local_user: Any
) -> None:
    q = memlogd.query_path
    new_source(memlogd.log_path, "a").sendall(b"hello\n")
    wait_for(lambda: any(e["source"] == "a" for e in dump(q)), what="a's line")
    logs = short_tmp / "logs"
    everything = {"instance": header(q).instance, "seq": header(q).next_seq - 1}
    for owner, mode, reason in [
        (local_user.pw_uid, 0o600, f"it is owned by uid {local_user.pw_uid}, not 0"),
        (0, 0o666, "it is writable by others (mode 0666)"),
        (0, 0o620, "it is writable by others (mode 0620)"),
    ]:
        cursor = plant_cursor(logs, everything)
        os.chown(cursor, owner, -1)
        cursor.chmod(mode)
        lw = Logwrite(short_tmp, q, logs, "--once")
        assert lw.run() == 0
        assert [e["reason"] for e in lw.events("cursor_ignored")] == [
            f"logwrite.cursor is not used: {reason}"
        ]
        assert messages(logs / "a.log") == ["hello"]  # written: the cursor was not obeyed
        assert cursor.stat().st_uid == 0 and cursor.stat().st_mode & 0o777 == 0o640
        (logs / "a.log").unlink()
        lw.stderr_path.unlink()  # (the next one may get the same id, so the same file)


def test_a_cursor_beyond_the_rings_next_seq_is_not_obeyed(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    q = memlogd.query_path
    new_source(memlogd.log_path, "a").sendall(b"hello\n")
    wait_for(lambda: any(e["source"] == "a" for e in dump(q)), what="a's line")
    logs = short_tmp / "logs"
    h = header(q)
    plant_cursor(logs, {"instance": h.instance, "seq": h.next_seq + 1000})
    lw = Logwrite(short_tmp, q, logs, "--once")
    assert lw.run() == 0
    (warning,) = lw.events("cursor_ignored")
    assert warning["reason"] == (
        f"its seq {h.next_seq + 1000} is beyond memlogd's next_seq {header(q).next_seq}"
    )
    assert messages(logs / "a.log") == ["hello"]
    saved = json.loads((logs / "logwrite.cursor").read_text())
    assert saved == {"instance": h.instance, "seq": header(q).next_seq - 1}


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_something_else_at_the_cursors_names_never_blocks_it(
    memlogd: MemlogdProcess, short_tmp: Path, kind: str
) -> None:
    """A FIFO at the cursor (or its temporary file) blocked open() for ever."""
    q = memlogd.query_path
    new_source(memlogd.log_path, "a").sendall(b"hello\n")
    wait_for(lambda: any(e["source"] == "a" for e in dump(q)), what="a's line")
    logs = short_tmp / "logs"
    logs.mkdir()
    target = short_tmp / "elsewhere"
    target.write_text(json.dumps({"instance": header(q).instance, "seq": 10**6}))
    for name in ("logwrite.cursor", "logwrite.cursor.tmp"):
        if kind == "fifo":
            os.mkfifo(logs / name)
        elif kind == "symlink":
            (logs / name).symlink_to(target)
        elif name.endswith(".tmp"):
            (logs / name).mkdir()
    lw = Logwrite(short_tmp, q, logs, "--once")
    assert lw.run() == 0
    assert messages(logs / "a.log") == ["hello"]
    if kind != "directory":
        reason = {"fifo": "it is a FIFO", "symlink": "it is a symbolic link"}[kind]
        (warning,) = lw.events("cursor_ignored")
        assert warning["reason"] == f"logwrite.cursor is not used: {reason}"
        assert (logs / "logwrite.cursor").is_file() and not (logs / "logwrite.cursor").is_symlink()
        assert not (logs / "logwrite.cursor.tmp").exists()
    assert target.read_text() == json.dumps({"instance": header(q).instance, "seq": 10**6})


def test_at_most_max_open_files_handles(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, memlogd.query_path, logs, "--max-open-files", "2")
    running.append(lw.start())
    sources = [new_source(memlogd.log_path, f"s{k}") for k in range(5)]
    for i in range(20):
        for src in sources:
            src.sendall(b"line %d\n" % i)
    for k in range(5):
        wait_for(lambda: len(messages(logs / f"s{k}.log")) == 20, what=f"s{k}")  # noqa: B023
        assert messages(logs / f"s{k}.log") == [f"line {i}" for i in range(20)]
    assert lw.proc is not None
    fd_dir = Path(f"/proc/{lw.proc.pid}/fd")
    open_logs = [
        target
        for fd in os.listdir(fd_dir)
        if (target := os.readlink(fd_dir / fd) if (fd_dir / fd).exists() else "").endswith(".log")
    ]
    assert 1 <= len(open_logs) <= 2


# --------------------------------------------------------------------------- continuity

WRITER = """
import os, sys, time
fd, count = int(sys.argv[1]), int(sys.argv[2])
for i in range(count):
    os.write(fd, b"n %05d\\n" % i)
    time.sleep(0.001)
"""


def test_restarting_logwrite_loses_and_duplicates_nothing(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    logs = short_tmp / "logs"
    count = 1500
    src = new_source(memlogd.log_path, "w")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(src.fileno()), str(count)], pass_fds=[src.fileno()]
    )
    src.close()
    try:
        first = Logwrite(short_tmp, memlogd.query_path, logs)
        running.append(first.start())
        wait_for(lambda: len(read(logs / "w.log").splitlines()) >= 100, what="first lines")
        assert first.stop() == 0
        assert writer.poll() is None, "the writer should still be writing"
        cursor = json.loads((logs / "logwrite.cursor").read_text())
        assert cursor["instance"] == header(memlogd.query_path).instance
        second = Logwrite(short_tmp, memlogd.query_path, logs)
        running.append(second.start())
        assert writer.wait(10) == 0
        wait_for(ends_with(logs / "w.log", b" w n %05d\n" % (count - 1)), what="last line")
        assert second.stop() == 0
    finally:
        writer.kill()
        writer.wait()
    assert numbers(read(logs / "w.log")) == list(range(count))
    assert second.events("connected")[0]["after_seq"] == cursor["seq"]
    assert not read(logs / "logwrite.log")  # no gap


def test_memlogd_killed_and_restarted_under_logwrite(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, memlogd.query_path, logs)
    running.append(lw.start())
    new_source(memlogd.log_path, "svc").sendall(b"before\n")
    wait_for(lambda: messages(logs / "svc.log") == ["before"], what="before")
    assert memlogd.proc is not None
    memlogd.proc.kill()
    memlogd.proc.wait(10)
    memlogd.start()
    new_source(memlogd.log_path, "svc").sendall(b"after\n")
    wait_for(lambda: messages(logs / "svc.log") == ["before", "after"], what="after")
    started = [m for m in messages(logs / "memlogd.log") if m.startswith("memlogd started")]
    assert len(started) == 2  # the new daemon's whole ring was read
    restarted = lw.wait_event("memlogd_restarted")
    assert restarted[0]["instance"] == header(memlogd.query_path).instance
    assert lw.proc is not None and lw.proc.poll() is None
    assert lw.stop() == 0


def test_logwrite_waits_for_memlogd_to_appear(short_tmp: Path, running: list[Logwrite]) -> None:
    daemon = MemlogdProcess(short_tmp)
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, daemon.query_path, logs)
    running.append(lw.start())
    lw.wait_event("memlogd_unreachable")
    daemon.start()
    try:
        new_source(daemon.log_path, "late").sendall(b"hello\n")
        wait_for(lambda: messages(logs / "late.log") == ["hello"], what="late line")
        unreachable = lw.events("memlogd_unreachable")
        assert len(unreachable) == 1  # rate-limited
        assert unreachable[0]["consequence"] == "retrying with backoff; nothing is lost meanwhile"
    finally:
        daemon.stop()


def test_a_gap_is_recorded_in_logwrite_log(short_tmp: Path, running: list[Logwrite]) -> None:
    daemon = MemlogdProcess(short_tmp, ["-max-lines", "20"])
    daemon.start()
    try:
        logs = short_tmp / "logs"
        src = new_source(daemon.log_path, "s")
        src.sendall(b"kept\n")
        wait_for(lambda: any(e["msg"] == "kept" for e in dump(daemon.query_path)), what="kept")
        assert Logwrite(short_tmp, daemon.query_path, logs, "--once").run() == 0
        cursor = json.loads((logs / "logwrite.cursor").read_text())
        for i in range(50):
            src.sendall(b"burst %d\n" % i)
        wait_for(lambda: dump(daemon.query_path)[-1]["msg"] == "burst 49", what="burst")
        # what memlogd tells a reader from that cursor: one run of seqs (the
        # fair ring dropped the oldest of "s", the source holding the most)
        request = b"\x03" + json.dumps({"after_seq": cursor["seq"]}).encode() + b"\n"
        told = json.loads(query_raw(daemon.query_path, request).splitlines()[1])
        assert told["seq"] == cursor["seq"] + 1
        lost = told["dropped"]
        assert Logwrite(short_tmp, daemon.query_path, logs, "--once").run() == 0
        assert messages(logs / "logwrite.log") == [
            f"lost {lost} entries (seq {cursor['seq'] + 1}-{cursor['seq'] + lost})"
        ]
        assert messages(logs / "s.log")[0] == "kept"
        assert messages(logs / "s.log")[-1] == "burst 49"
    finally:
        daemon.stop()


# --------------------------------------------------------------------------- --once, formats


def expected_lines(entries: list[dict[str, Any]], source: str, nano: bool = False) -> bytes:
    fmt = timefmt.format_time if nano else timefmt.format_time_seconds
    return b"".join(
        f"{fmt(timefmt.parse_time(e['time']))} {source} {e['msg']}\n".encode()
        for e in entries
        if e["source"] == source
    )


def test_once_writes_exactly_the_ring_and_skips_logwrite(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    q = memlogd.query_path
    a, b, own = (new_source(memlogd.log_path, n) for n in ("a", "b", "logwrite-svc"))
    for i in range(30):
        a.sendall(b"a says %d\n" % i)
        b.sendall(b"b says %d\n" % i)
        own.sendall(b"own %d\n" % i)
    wait_for(lambda: len(dump(q)) >= 94, what="all lines in the ring")
    ring = dump(q)
    logs = short_tmp / "logs"
    assert Logwrite(short_tmp, q, logs, "--once").run() == 0
    assert dump(q) == ring  # nothing new meanwhile: the files must be the ring
    names = sorted(n for n in os.listdir(logs))
    assert names == ["a.log", "b.log", "instances", "logwrite.cursor", "memlogd.log"]
    for source in ("a", "b", "memlogd"):
        assert read(logs / f"{source}.log") == expected_lines(ring, source)
    # run again: the cursor says everything is written
    assert Logwrite(short_tmp, q, logs, "--once").run() == 0
    for source in ("a", "b", "memlogd"):
        assert read(logs / f"{source}.log") == expected_lines(ring, source)
    a.sendall(b"one more\n")
    wait_for(lambda: dump(q)[-1]["msg"] == "one more", what="one more")
    assert Logwrite(short_tmp, q, logs, "--once").run() == 0
    assert messages(logs / "a.log")[-2:] == ["a says 29", "one more"]
    assert len(messages(logs / "a.log")) == 31
    # nanoseconds, and a --skip-source that replaces the default
    nano = short_tmp / "nano"
    lw = Logwrite(
        short_tmp, q, nano, "--once", "--time-format", "rfc3339nano", "--skip-source", "b"
    )
    assert lw.run() == 0
    ring = dump(q)
    assert read(nano / "a.log") == expected_lines(ring, "a", nano=True)
    assert read(nano / "logwrite-svc.log") == expected_lines(ring, "logwrite-svc", nano=True)
    assert not (nano / "b.log").exists()


def test_sighup_reopens_files(memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]):
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, memlogd.query_path, logs)
    running.append(lw.start())
    src = new_source(memlogd.log_path, "s")
    src.sendall(b"one\n")
    wait_for(lambda: messages(logs / "s.log") == ["one"], what="one")
    os.rename(logs / "s.log", logs / "s.log.moved")
    assert lw.proc is not None
    lw.proc.send_signal(signal.SIGHUP)
    lw.wait_event("files_reopened")
    src.sendall(b"two\n")
    wait_for(lambda: messages(logs / "s.log") == ["two"], what="two")
    assert messages(logs / "s.log.moved") == ["one"]
    assert lw.stop() == 0


def test_sighup_during_start_up_does_not_end_logwrite(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    """SPEC 19: a SIGHUP before logwrite had taken it over ended it."""
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, memlogd.query_path, logs)
    running.append(lw.start())
    assert lw.proc is not None
    pid = lw.proc.pid

    wait_for(lambda: ignores(pid, signal.SIGHUP), what="its first instructions")

    def hup_then_look() -> list[dict[str, Any]]:
        os.kill(pid, signal.SIGHUP)  # again and again, through its start-up
        return lw.events("connected")

    wait_for(hup_then_look, what="logwrite connected, under SIGHUPs")
    new_source(memlogd.log_path, "svc").sendall(b"after the hangups\n")
    wait_for(lambda: messages(logs / "svc.log") == ["after the hangups"], what="svc.log")
    assert lw.proc.poll() is None
    assert lw.stop() == 0


def test_a_deleted_log_dir_is_waited_for_then_gets_the_ring(
    memlogd: MemlogdProcess, short_tmp: Path, running: list[Logwrite]
) -> None:
    """SPEC 17: after start, a DIR that disappears is not made again (it is a mount
    point more often than not); once it is back, it gets what the ring holds."""
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, memlogd.query_path, logs)
    running.append(lw.start())
    src = new_source(memlogd.log_path, "s")
    src.sendall(b"one\n")
    wait_for(lambda: messages(logs / "s.log") == ["one"], what="one")
    # the path goes at once (a rename), then its contents: logwrite may still be
    # writing its cursor into the directory it holds, which rmtree would race
    gone = short_tmp / "gone"
    logs.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)
    src.sendall(b"two\n")
    missing = lw.wait_event("log_dir_unavailable")[0]
    assert (missing["kind"], missing["dir"]) == ("ENOENT", str(logs))
    assert not logs.exists()  # waited for, not made again
    logs.mkdir()
    wait_for(lambda: messages(logs / "s.log") == ["one", "two"], what="the ring in the new dir")
    assert lw.stop() == 0
    assert messages(logs / "s.log") == ["one", "two"]


# --------------------------------------------------------------------------- upstream memlogd

FAKE_UPSTREAM = """
import json, socket, sys
entries = [
    json.dumps({"time": "2026-11-29T10:00:0%dZ" % i, "source": "up", "msg": "hello %d" % i},
               separators=(",", ":"))
    for i in range(3)
]
data = ("\\n".join(entries) + "\\n").encode()
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(8)
print("ready", flush=True)
held = []
while True:
    conn, _ = srv.accept()
    mode = conn.recv(1)
    if mode in (b"\\x00", b"\\x02"):
        conn.sendall(data)
        if mode == b"\\x02":
            held.append(conn)
        else:
            conn.close()
    elif sys.argv[2] == "silent":
        held.append(conn)  # an old server that answers nothing
    else:
        conn.close()  # upstream closes on an unknown mode
"""


@pytest.fixture(name="upstream", params=["closes", "silent"])
def fixture_upstream(short_tmp: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A base-mode-only server: on mode 3 it closes (as upstream does) or is silent."""
    path = str(short_tmp / f"{request.param}.sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_UPSTREAM, path, request.param],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield path
    finally:
        proc.kill()
        proc.wait()


UPSTREAM_LINES = b"".join(b"2026-11-29T10:00:0%dZ up hello %d\n" % (i, i) for i in range(3))


def test_falls_back_to_base_mode_with_upstream_memlogd(
    upstream: str, short_tmp: Path, running: list[Logwrite]
) -> None:
    once = short_tmp / "once"
    lw = Logwrite(short_tmp, upstream, once, "--once")
    assert lw.run(timeout=15) == 0
    assert read(once / "up.log") == UPSTREAM_LINES
    assert lw.events("extended_query_unavailable")
    if upstream.endswith("silent.sock"):
        return  # following works the same once the fallback is taken (3 s each time)
    follow = short_tmp / "follow"
    lw = Logwrite(short_tmp, upstream, follow)
    running.append(lw.start())
    wait_for(lambda: read(follow / "up.log") == UPSTREAM_LINES, what="followed lines", timeout=15)
    assert lw.events("connected")[-1]["mode"] == "base"
    assert lw.stop() == 0


KILLED_ENTRIES = [proto.LogEntry(1_764_000_000 * 10**9 + i, "s", f"l {i}", i) for i in range(1, 5)]


def answer_as_a_worker(
    fake: FakeServer, conn: socket.socket, entries: list[proto.LogEntry]
) -> None:
    """What a worker of ours answers: the extended query after its cursor (the
    base modes, which logwrite asks of upstream's memlogd: the whole ring)."""
    request = fake.read_request(conn)
    if request[:1] != b"\x03":
        conn.sendall(b"".join(encode_entry(e._replace(seq=None)) for e in entries))
        return
    after = json.loads(request[1:]).get("after_seq", 0)
    chosen = [e for e in entries if e.seq is not None and e.seq > after]
    header = proto.Header("i-1", 1, len(entries) + 1)  # (seqs 1..n)
    conn.sendall(proto.encode_header(header) + b"".join(encode_entry(e) for e in chosen))


def test_a_worker_killed_as_it_took_the_first_query_is_not_taken_for_upstreams(
    short_tmp: Path, running: list[Logwrite]
) -> None:
    """memlogd's worker killed just after it accepted logwrite's very first query
    closes it without a word, as upstream's memlogd closes mode 3 (every time):
    logwrite asks again and follows the next worker in extended mode, so when
    that one is killed too, it resumes after its cursor.  It took such a memlogd
    for upstream's, and wrote its whole ring again after the next kill (the
    keeper test saw each of a writer's 1,500 lines twice in its file)."""
    fake = FakeServer(short_tmp)
    logs = short_tmp / "logs"
    lw = Logwrite(short_tmp, fake.path, logs)
    running.append(lw.start())
    first = [f"l {i}" for i in (1, 2, 3)]
    try:
        with fake.accept() as conn:  # the worker killed as it took the query
            assert fake.read_request(conn)[:1] == b"\x03"
        with fake.accept() as conn:  # the next worker, killed after three lines
            answer_as_a_worker(fake, conn, KILLED_ENTRIES[:3])
            wait_for(lambda: messages(logs / "s.log")[-1:] == first[-1:], what="three lines")
        with fake.accept() as conn:  # and the next
            answer_as_a_worker(fake, conn, KILLED_ENTRIES)
            wait_for(lambda: messages(logs / "s.log")[-1:] == ["l 4"], what="the fourth")
            assert messages(logs / "s.log") == [*first, "l 4"]  # nothing twice
    finally:
        fake.close()
    assert lw.stop() == 0
    assert lw.events("connected")[0]["mode"] == "extended"
    assert not lw.events("extended_query_unavailable")


# --------------------------------------------------------------------------- faults


@pytest.fixture(name="tmpfs")
def fixture_tmpfs(short_tmp: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a fresh tmpfs of that size; unmounted at the end."""
    mounted: list[Path] = []
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")

    def mount(size: str) -> Path:
        path = short_tmp / f"fs{len(mounted)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def try_remount(path: Path, options: str) -> bool:
    cmd = ["mount", "-o", f"remount,{options}", str(path)]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def test_disk_full_deletes_the_oldest_rotated_file_and_goes_on(
    memlogd: MemlogdProcess,
    short_tmp: Path,
    tmpfs: Callable[[str], Path],
    running: list[Logwrite],
) -> None:
    logs = tmpfs("256k")
    lw = Logwrite(
        short_tmp, memlogd.query_path, logs, "-max-log-size", "16384", "-max-log-files", "100"
    )
    running.append(lw.start())
    src = new_source(memlogd.log_path, "big")
    pad = b"x" * 900
    for i in range(600):
        src.sendall(pad + b" %05d\n" % i)
    wait_for(ends_with(logs / "big.log", b" %05d\n" % 599), what="last line")
    assert lw.proc is not None and lw.proc.poll() is None
    assert any(e["kind"] == "ENOSPC" for e in lw.events("write_failed"))
    assert lw.events("rotated_file_deleted")
    rotated = sorted(
        (int(n.rsplit(".", 1)[1]) for n in os.listdir(logs) if n.startswith("big.log.")),
        reverse=True,
    )
    data = b"".join(read(logs / f"big.log.{i}") for i in rotated) + read(logs / "big.log")
    got = numbers(data)
    assert got == list(range(got[0], 600)) and got[0] > 0  # the oldest went, nothing torn
    assert lw.stop() == 0


def test_disk_full_then_space_returns(
    memlogd: MemlogdProcess,
    short_tmp: Path,
    tmpfs: Callable[[str], Path],
    running: list[Logwrite],
) -> None:
    logs = tmpfs("64k")
    lw = Logwrite(short_tmp, memlogd.query_path, logs)
    running.append(lw.start())
    src = new_source(memlogd.log_path, "big")
    pad = b"y" * 900
    for i in range(200):
        src.sendall(pad + b" %05d\n" % i)
    wait_for(lambda: any(e["kind"] == "ENOSPC" for e in lw.events("write_failed")), what="ENOSPC")
    assert lw.proc is not None and lw.proc.poll() is None
    remount(logs, "size=2m")
    wait_for(ends_with(logs / "big.log", b" %05d\n" % 199), what="last line")
    assert numbers(read(logs / "big.log")) == list(range(200))  # each once, none torn
    assert lw.stop() == 0
    assert (
        json.loads((logs / "logwrite.cursor").read_text())["seq"]
        == header(memlogd.query_path).next_seq - 1
    )


def test_read_only_dir_then_writable_again(
    memlogd: MemlogdProcess,
    short_tmp: Path,
    tmpfs: Callable[[str], Path],
    running: list[Logwrite],
) -> None:
    logs = tmpfs("1m")
    lw = Logwrite(short_tmp, memlogd.query_path, logs)
    running.append(lw.start())
    src = new_source(memlogd.log_path, "s")
    for i in range(10):
        src.sendall(b"line %d\n" % i)
    wait_for(lambda: len(messages(logs / "s.log")) == 10, what="first lines")
    # a file system cannot turn read-only while files are open for writing:
    # SIGHUP makes logwrite close them, as an administrator would do
    assert lw.proc is not None
    lw.proc.send_signal(signal.SIGHUP)
    lw.wait_event("files_reopened")
    wait_for(lambda: try_remount(logs, "ro"), what="read-only remount")
    try:
        for i in range(10, 20):
            src.sendall(b"line %d\n" % i)
        wait_for(
            lambda: any(e["kind"] == "EROFS" for e in lw.events("log_dir_unavailable")),
            what="EROFS",
        )
        assert lw.proc is not None and lw.proc.poll() is None
    finally:
        remount(logs, "rw")
    wait_for(lambda: len(messages(logs / "s.log")) == 20, what="all lines")
    assert messages(logs / "s.log") == [f"line {i}" for i in range(20)]
    assert lw.stop() == 0


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "args",
    [["-max-log-files", "-1"], ["-max-log-size", "0"], ["--time-format", "iso"], ["--bogus"]],
)
def test_bad_flags_exit_2_with_a_message(args: list[str]) -> None:
    done = subprocess.run(python_m("logwrite", *args), capture_output=True, timeout=10)
    assert done.returncode == 2
    assert b"Error" in done.stderr and b"Traceback" not in done.stderr


def test_once_without_memlogd_exits_1(short_tmp: Path) -> None:
    path = str(short_tmp / "nothing.sock")
    lw = Logwrite(short_tmp, path, short_tmp / "logs", "--once")
    assert lw.run() == 1
    # the one line, and nothing made or said before it (SPEC 18)
    assert lw.stderr() == (
        f"logwrite: cannot connect to memlogd at {path}: no such socket (is memlogd running?)\n"
    )
    assert not (short_tmp / "logs").exists()


@pytest.mark.parametrize(
    ("log_dir", "reason"),
    [
        ("file", "it is not a directory"),
        ("link-to-file", "it is not a directory"),
        ("dangling", "it is a symbolic link to nowhere, which does not exist"),
        ("file/logs", "{tmp}/file is not a directory"),
        ("file/a/b", "{tmp}/file is not a directory"),
    ],
)
@pytest.mark.parametrize("once", [True, False])
def test_unusable_log_dir_is_one_line_saying_what_is_wrong(
    short_tmp: Path, log_dir: str, reason: str, once: bool
) -> None:
    (short_tmp / "file").write_text("x")
    (short_tmp / "link-to-file").symlink_to("file")
    (short_tmp / "dangling").symlink_to("nowhere")
    before = sorted(os.listdir(short_tmp))
    path = short_tmp / log_dir
    lw = Logwrite(short_tmp, str(short_tmp / "q.sock"), path, *(["-once"] if once else []))
    assert lw.run() == 1
    reason = reason.format(tmp=short_tmp)
    assert lw.stderr() == f"logwrite: cannot use log directory {path}: {reason}\n"
    assert sorted(n for n in os.listdir(short_tmp) if not n.startswith("logwrite-")) == before
    assert (short_tmp / "file").read_text() == "x"


def test_log_dir_without_write_permission_is_refused_at_once(short_tmp: Path) -> None:
    caps = (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
    locked = short_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for path, reason in [
        (locked, "Permission denied"),
        (locked / "logs", "cannot create it: Permission denied"),
        (locked / "a" / "b", f"cannot create {locked / 'a'}: Permission denied"),
    ]:
        done = subprocess.run(
            python_m("logwrite", "-socket", str(short_tmp / "q.sock"), "-log-dir", str(path)),
            capture_output=True,
            text=True,
            timeout=10,
            preexec_fn=unprivileged(*caps),
        )
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert done.stderr == f"logwrite: cannot use log directory {path}: {reason}\n"
    assert os.listdir(locked) == []


def test_once_into_a_read_only_dir_says_where_and_why(
    memlogd: MemlogdProcess, short_tmp: Path, tmpfs: Callable[[str], Path]
) -> None:
    logs = tmpfs("1m")
    src = new_source(memlogd.log_path, "s")
    for i in range(10):
        src.sendall(b"line %d\n" % i)
    wait_for(lambda: len(messages_of(memlogd.query_path, "s")) == 10, what="lines in the ring")
    ring = len(dump(memlogd.query_path))
    remount(logs, "ro")
    try:
        done = subprocess.run(
            python_m("logwrite", "-socket", memlogd.query_path, "-log-dir", str(logs), "-once"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        remount(logs, "rw")
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    last = done.stderr.splitlines()[-1]
    m = re.fullmatch(
        rf"logwrite: (\d+) lines? could not be written to {re.escape(str(logs))}: (.*)", last
    )
    assert m is not None, done.stderr
    assert m.group(2) == "Read-only file system"
    assert 1 <= int(m.group(1)) <= ring
    assert "Traceback" not in done.stderr
    assert os.listdir(logs) == []


def test_long_flags_are_accepted_too(memlogd: MemlogdProcess, short_tmp: Path) -> None:
    logs = short_tmp / "logs"
    new_source(memlogd.log_path, "s").sendall(b"hi\n")
    wait_for(lambda: any(e["msg"] == "hi" for e in dump(memlogd.query_path)), what="hi")
    cmd = python_m(
        "logwrite",
        f"--socket={memlogd.query_path}",
        "--log-dir",
        str(logs),
        "--max-log-files=2",
        "--max-log-size",
        "100",
        "-once",
    )
    assert subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    assert messages(logs / "s.log") == ["hi"]


def test_every_long_option_has_its_one_dash_form() -> None:
    assert one_dash_mismatches(logwrite_main) == []


def test_one_dash_forms_in_a_real_process(memlogd: MemlogdProcess, short_tmp: Path) -> None:
    a, b = (new_source(memlogd.log_path, n) for n in ("a", "b"))
    for i in range(5):
        a.sendall(b"a %d\n" % i)
        b.sendall(b"b %d\n" % i)
    wait_for(lambda: len(messages_of(memlogd.query_path, "b")) == 5, what="lines in the ring")
    logs = short_tmp / "logs"
    args = [
        "-socket", memlogd.query_path, "-log-dir", str(logs), "-max-log-files", "2",
        "-max-log-size=100000", "-time-format", "rfc3339nano", "-skip-source", "b",
        "-skip-source=memlogd", "-max-open-files", "1", "-once", "-log-format", "json",
    ]  # fmt: skip
    done = subprocess.run(python_m("logwrite", *args), capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(logs)) == ["a.log", "instances", "logwrite.cursor"]
    assert read(logs / "a.log") == expected_lines(dump(memlogd.query_path), "a", nano=True)


@pytest.mark.parametrize(
    ("word", "error"),
    [
        ("-onc", "No such option '-onc'. Did you mean '-once'?"),
        ("-skip-sourc", "No such option '-skip-sourc'. Did you mean '-skip-source'?"),
        ("-ms5", "No such option '-ms5'."),
    ],
)
def test_a_one_dash_word_that_names_no_option_is_a_usage_error(
    short_tmp: Path, word: str, error: str
) -> None:
    logs = short_tmp / "logs"
    done = subprocess.run(
        python_m("logwrite", "-log-dir", str(logs), word),
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.endswith(f"\n\nError: {error}\n"), done.stderr
    assert not logs.exists()


def test_help_ends_with_examples_that_parse() -> None:
    for flag in ("-h", "-help", "--help"):
        done = subprocess.run(
            python_m("logwrite", flag), capture_output=True, text=True, timeout=10
        )
        assert (done.returncode, done.stderr) == (0, ""), flag
        found = examples(done.stdout, "logwrite")
        assert 2 <= len(found) <= 3
        for example in found:
            words = shlex.split(re.split(r" [|#] ", example)[0])
            logwrite_main.make_context("logwrite", words[1:]).close()  # no usage error
