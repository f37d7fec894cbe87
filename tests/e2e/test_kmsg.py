"""kmsg as a real subprocess (docs/kmsg.md): fake devices, the real /dev/kmsg, memlogd.

Fake devices are regular files or FIFOs of records, one per line plus its
dictionary lines.  Tests on the real ``/dev/kmsg`` skip (with the reason) where
it cannot be read or written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kmsg.cli import main as kmsg_main
from kmsg.reader import KmsgReader, boot_time_ns, decode_batch, open_failure_reason
from kmsg.record import KmsgDecoder
from kmsg.state import read_boot_id
from memlogd.wire.timefmt import parse_time
from tests.helpers import MemlogdProcess, dump, messages, python_m, wait_for
from tests.oneflags import one_dash_mismatches

pytestmark = pytest.mark.e2e

DEVICE = "/dev/kmsg"
LINE_RE = re.compile(r"<[0-7]>\((\d+)\) - (\S+): (.*)\Z")  # the level in front (SPEC 15)
RUN_TIMEOUT = 10.0


def kmsg(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_m("kmsg", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def parse_lines(text: str) -> list[tuple[int, int, str]]:
    """(seq, time_ns, text) of every record line; any other line fails the test."""
    out = []
    for line in text.splitlines():
        m = LINE_RE.match(line)
        assert m is not None, f"not a kmsg line: {line!r}"
        out.append((int(m.group(1)), parse_time(m.group(2)), m.group(3)))
    return out


class Background:
    """kmsg running in the background with stdout/stderr in files."""

    def __init__(self, tmp: Path, *args: str) -> None:
        name = f"kmsg-{uuid.uuid4().hex[:8]}"
        self.err_path = tmp / f"{name}.stderr"
        self.out_path = tmp / f"{name}.stdout"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                python_m("kmsg", *args),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(RUN_TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(RUN_TIMEOUT)


@pytest.fixture(name="background")
def fixture_background(short_tmp: Path) -> Iterator[list[Background]]:
    started: list[Background] = []
    yield started
    for bg in started:
        bg.kill()


def start(started: list[Background], tmp: Path, *args: str) -> Background:
    bg = Background(tmp, *args)
    started.append(bg)
    return bg


RECORDS = (
    b"6,10,1000000,-;first line\n"
    b"7,11,1500000,-;pci 0000:00:01.0: [8086:7000] type 00\n"
    b" SUBSYSTEM=pci\n"
    b" DEVICE=+pci:0000:00:01.0\n"
    b"14,12,2000001,c;escaped \\x1b[1m and a \\x5c backslash\n"
)


def write_device(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# ------------------------------------------------------------------ fake devices


def test_file_device_prints_upstream_lines_with_boot_time(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    before = boot_time_ns()
    result = kmsg("--path", dev, "--no-follow")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = parse_lines(result.stderr)
    assert [(seq, text) for seq, _, text in lines] == [
        (10, "first line"),
        (11, "pci 0000:00:01.0: [8086:7000] type 00"),
        (12, "escaped \\x1b[1m and a \\x5c backslash"),
    ]
    for (_, time_ns, _), usec in zip(lines, [1000000, 1500000, 2000001], strict=True):
        assert abs(time_ns - (before + usec * 1000)) < 50_000_000  # same boot time, within 50 ms
    assert lines[2][1] - lines[0][1] == 1_000_001_000  # exact microsecond offsets


def test_text_lines_carry_the_level_and_upstream_format_drops_it(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    ours = kmsg("--path", dev, "--no-follow").stderr.splitlines()
    upstreams = kmsg("-path", dev, "-no-follow", "-upstream-format").stderr.splitlines()
    assert [line[:8] for line in ours] == ["<6>(10) ", "<7>(11) ", "<6>(12) "]  # 14 & 7 = 6
    upstream_re = re.compile(r"\((\d+)\) - \S+Z: (.*)\Z")  # boot time may differ by a few ns
    assert [upstream_re.match(line).group(1, 2) for line in upstreams] == [  # type: ignore[union-attr]
        LINE_RE.match(line).group(1, 3)  # type: ignore[union-attr]
        for line in ours
    ]


def test_json_output_has_every_field_and_dictionary(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    result = kmsg("--path", dev, "--no-follow", "-o", "json")
    assert (result.returncode, result.stderr) == (0, "")  # json records go to stdout
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["seq"] for o in objs] == [10, 11, 12]
    second = objs[1]
    assert list(second) == [
        "seq",
        "time",
        "usec",
        "priority",
        "facility",
        "level",
        "flags",
        "text",
        "fields",
    ]
    assert {k: v for k, v in second.items() if k != "time"} == {
        "seq": 11,
        "usec": 1500000,
        "priority": 7,
        "facility": 0,
        "level": 7,
        "flags": "-",
        "text": "pci 0000:00:01.0: [8086:7000] type 00",
        "fields": {"SUBSYSTEM": "pci", "DEVICE": "+pci:0000:00:01.0"},
    }
    assert (objs[2]["facility"], objs[2]["level"], objs[2]["flags"]) == (1, 6, "c")


def test_malformed_record_is_reported_and_reading_goes_on(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", b"6,1,1,-;ok\nnot a record\n6,2,2,-;still ok\n")
    result = kmsg("--path", dev, "--no-follow", "-log-format", "json")
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    records = [line for line in lines if LINE_RE.match(line)]
    assert [LINE_RE.match(r).group(3) for r in records] == ["ok", "still ok"]  # type: ignore[union-attr]
    warnings = [json.loads(line) for line in lines if not LINE_RE.match(line)]
    assert [w["event"] for w in warnings] == ["malformed_record"]
    assert warnings[0]["level"] == "warning"


def test_state_file_continues_after_the_last_record(short_tmp: Path) -> None:
    dev = short_tmp / "kmsg"
    state = str(short_tmp / "kmsg.state")
    dev.write_bytes(b"6,1,1,-;one\n6,2,2,-;two\n")
    first = kmsg("--path", str(dev), "--no-follow", "--state-file", state)
    assert [s for s, _, _ in parse_lines(first.stderr)] == [1, 2]
    assert json.loads(Path(state).read_text()) == {"boot_id": read_boot_id(), "seq": 2}
    with open(dev, "ab") as f:
        f.write(b"6,3,3,-;three\n6,4,4,-;four\n")
    second = kmsg("--path", str(dev), "--no-follow", "--state-file", state)
    assert [(s, t) for s, _, t in parse_lines(second.stderr)] == [(3, "three"), (4, "four")]
    third = kmsg("--path", str(dev), "--no-follow", "--state-file", state)
    assert (third.returncode, third.stderr) == (0, "")
    assert json.loads(Path(state).read_text())["seq"] == 4


def test_state_file_reports_records_the_ring_lost_meanwhile(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", b"6,8,1,-;eight\n6,9,2,-;nine\n")
    state = short_tmp / "kmsg.state"
    state.write_text(json.dumps({"boot_id": read_boot_id(), "seq": 5}))
    result = kmsg("--path", dev, "--no-follow", "--state-file", str(state))
    lines = result.stderr.splitlines()
    assert lines[0] == "kmsg: 2 records lost"
    assert [LINE_RE.match(x).group(1) for x in lines[1:]] == ["8", "9"]  # type: ignore[union-attr]


def test_state_of_another_boot_is_ignored(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", b"6,1,1,-;one\n6,2,2,-;two\n")
    state = short_tmp / "kmsg.state"
    state.write_text(json.dumps({"boot_id": "some-other-boot", "seq": 100}))
    result = kmsg("--path", dev, "--no-follow", "--state-file", str(state))
    assert [s for s, _, _ in parse_lines(result.stderr)] == [1, 2]
    assert json.loads(state.read_text()) == {"boot_id": read_boot_id(), "seq": 2}


def kmsg_warnings(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def records_of(stderr: str) -> list[tuple[int, int, str]]:
    return parse_lines("\n".join(x for x in stderr.splitlines() if not x.startswith("{")))


def test_state_beyond_the_kernel_logs_last_record_is_not_obeyed(short_tmp: Path) -> None:
    """SPEC 19: a state naming a record the kernel never wrote skipped everything."""
    dev = write_device(short_tmp / "kmsg", b"6,1,1,-;one\n6,2,2,-;two\n")
    state = short_tmp / "kmsg.state"
    state.write_text(json.dumps({"boot_id": read_boot_id(), "seq": 1000}))
    result = kmsg("--path", dev, "--no-follow", "--state-file", str(state), "-log-format", "json")
    assert result.returncode == 0
    assert [s for s, _, _ in records_of(result.stderr)] == [1, 2]
    (warning,) = kmsg_warnings(result.stderr)
    assert (warning["event"], warning["reason"]) == (
        "state_ignored",
        "its seq 1000 is beyond the kernel log's last 2",
    )
    assert json.loads(state.read_text()) == {"boot_id": read_boot_id(), "seq": 2}


def test_real_device_state_beyond_its_last_record_is_not_obeyed(short_tmp: Path) -> None:
    _require_device(write=False)
    state = short_tmp / "kmsg.state"
    state.write_text(json.dumps({"boot_id": read_boot_id(), "seq": 2**62}))
    result = kmsg("--no-follow", "--state-file", str(state), "-log-format", "json")
    assert result.returncode == 0, result.stderr[-500:]
    warnings = [w for w in kmsg_warnings(result.stderr) if "event" in w]
    assert [w["event"] for w in warnings] == ["state_ignored"]
    records = records_of(result.stderr)
    assert records and json.loads(state.read_text())["seq"] == records[-1][0] < 2**62


@pytest.mark.parametrize("kind", ["fifo", "symlink", "other-owner", "writable"])
def test_a_hostile_state_file_is_refused_without_blocking(
    short_tmp: Path, kind: str, local_user: Any
) -> None:
    """SPEC 19: a FIFO at the state file (or its temporary) blocked kmsg for ever."""
    dev = write_device(short_tmp / "kmsg", b"6,1,1,-;one\n6,2,2,-;two\n")
    state = short_tmp / "kmsg.state"
    elsewhere = short_tmp / "elsewhere"
    elsewhere.write_text(json.dumps({"boot_id": read_boot_id(), "seq": 1}))
    reason = {
        "fifo": "it is a FIFO",
        "symlink": "it is a symbolic link",
        "other-owner": f"it is owned by uid {local_user.pw_uid}, not 0",
        "writable": "it is writable by others (mode 0646)",
    }[kind]
    if kind == "fifo":
        os.mkfifo(state)
        os.mkfifo(str(state) + ".tmp")
    elif kind == "symlink":
        state.symlink_to(elsewhere)
    else:
        state.write_text(json.dumps({"boot_id": read_boot_id(), "seq": 1}))
        if kind == "other-owner":
            os.chown(state, local_user.pw_uid, -1)
        else:
            state.chmod(0o646)
    result = kmsg("--path", dev, "--no-follow", "--state-file", str(state), "-log-format", "json")
    assert result.returncode == 0
    assert [s for s, _, _ in records_of(result.stderr)] == [1, 2]  # a fresh start
    (warning,) = kmsg_warnings(result.stderr)
    assert (warning["event"], warning["reason"]) == ("state_ignored", reason)
    assert not state.is_symlink() and state.stat().st_uid == 0
    assert json.loads(state.read_text()) == {"boot_id": read_boot_id(), "seq": 2}
    assert not Path(str(state) + ".tmp").exists()
    assert json.loads(elsewhere.read_text())["seq"] == 1


def test_fifo_follow_prints_records_as_they_come_and_sigterm_exits_0(
    short_tmp: Path, background: list[Background]
) -> None:
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    state = short_tmp / "state"
    bg = start(background, short_tmp, "--path", str(fifo), "--state-file", str(state))
    with open(fifo, "wb", buffering=0) as w:  # blocks until kmsg has opened it
        w.write(b"6,1,1,-;alpha\n")
        wait_for(lambda: "alpha" in bg.stderr(), what="first record")
        w.write(b"6,2,2,-;beta\n K=v\n")
        wait_for(lambda: "beta" in bg.stderr(), what="second record")
    assert bg.stop() == 0
    assert [(s, t) for s, _, t in parse_lines(bg.stderr())] == [(1, "alpha"), (2, "beta")]
    assert json.loads(state.read_text())["seq"] == 2


def test_from_end_skips_what_the_file_held(short_tmp: Path, background: list[Background]) -> None:
    dev = short_tmp / "kmsg"
    dev.write_bytes(b"6,1,1,-;old\n")
    bg = start(background, short_tmp, "--path", str(dev), "--from-end")
    # the file is polled at its end: append until kmsg shows it has started reading
    deadline = time.monotonic() + 8
    seq = 1
    while "new" not in bg.stderr():
        assert time.monotonic() < deadline, "kmsg printed none of the appended records"
        seq += 1
        with open(dev, "ab") as f:
            f.write(f"6,{seq},{seq},-;new {seq}\n".encode())
        with contextlib.suppress(AssertionError):
            wait_for(lambda: "new" in bg.stderr(), timeout=0.05, what="a new record")
    wait_for(lambda: bg.stderr().endswith(f"new {seq}\n"), what="the last record")
    assert bg.stop(signal.SIGINT) == 130
    lines = parse_lines(bg.stderr())
    assert "old" not in [t for _, _, t in lines]
    seqs = [s for s, _, _ in lines]
    assert seqs == list(range(seqs[0], seq + 1))


def test_sigint_exits_130_quietly(short_tmp: Path, background: list[Background]) -> None:
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    bg = start(background, short_tmp, "--path", str(fifo))
    with open(fifo, "wb", buffering=0) as w:
        w.write(b"6,1,1,-;x\n")
        wait_for(lambda: bg.stderr(), what="output")
        assert bg.stop(signal.SIGINT) == 130
    assert "Traceback" not in bg.stderr()
    assert len(bg.stderr().splitlines()) == 1


# ------------------------------------------------------------------ errors


def test_missing_path_is_one_clear_line(short_tmp: Path) -> None:
    path = str(short_tmp / "nope")
    result = kmsg("--path", path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"kmsg: cannot open {path}: No such file or directory\n"


def test_directory_path_is_one_clear_line(short_tmp: Path) -> None:
    result = kmsg("--path", str(short_tmp))
    assert result.returncode == 1
    assert result.stderr == f"kmsg: cannot open {short_tmp}: Is a directory\n"


def test_permission_denied_is_one_clear_line(short_tmp: Path) -> None:
    # a write-only sysctl refuses reading even to root (as /dev/kmsg does to
    # users without CAP_SYSLOG when dmesg_restrict is set)
    path = "/proc/sys/vm/compact_memory"
    if os.geteuid() != 0 or not os.path.exists(path):
        pytest.skip(f"needs root and {path} (a file root cannot read)")
    result = kmsg("--path", path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"kmsg: cannot open {path}: Permission denied\n"


def test_socket_log_without_memlogd_is_one_clear_line(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    sock = str(short_tmp / "none.sock")
    result = kmsg("--path", dev, "--socket-log", sock)
    assert result.returncode == 1
    assert result.stderr == (
        f"kmsg: cannot connect to memlogd at {sock}: no such socket (is memlogd running?)\n"
    )


def test_bad_output_format_is_a_usage_error() -> None:
    result = kmsg("-o", "xml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.endswith(
        "\n\nError: Invalid value for '-o' / '-output' / '--output': "
        "'xml' is not one of 'text', 'json'.\n"
    )


# ------------------------------------------------------------------ memlogd, fake device


def test_socket_log_hands_lines_to_memlogd_under_name(
    short_tmp: Path, memlogd: MemlogdProcess
) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    result = kmsg("--path", dev, "--no-follow", "--socket-log", memlogd.log_path, "--name", "kern")
    assert (result.returncode, result.stderr) == (0, "")

    def kern() -> list[str]:
        return [e["msg"] for e in dump(memlogd.query_path) if e["source"] == "kern"]

    wait_for(lambda: len(kern()) >= 3, what="3 entries of kern")
    msgs = kern()
    assert [LINE_RE.match(m).group(1, 3) for m in msgs] == [  # type: ignore[union-attr]
        ("10", "first line"),
        ("11", "pci 0000:00:01.0: [8086:7000] type 00"),
        ("12", "escaped \\x1b[1m and a \\x5c backslash"),
    ]
    # memlogd's readers see the kernel's levels: debug (7) is not warning or worse
    shown = subprocess.run(
        python_m("logread", "-socket", memlogd.query_path, "-s", "kern", "-p", "info", "-o", "raw"),
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    assert [LINE_RE.match(m).group(1) for m in shown.stdout.decode().splitlines()] == ["10", "12"]  # type: ignore[union-attr]


def test_lines_go_to_stderr_once_memlogd_is_gone(
    short_tmp: Path, memlogd: MemlogdProcess, background: list[Background]
) -> None:
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    bg = start(background, short_tmp, "--path", str(fifo), "--socket-log", memlogd.log_path)
    with open(fifo, "wb", buffering=0) as w:
        w.write(b"6,1,1,-;kept by memlogd\n")
        wait_for(
            lambda: any(e["source"] == "kmsg" for e in dump(memlogd.query_path)),
            what="the first record in memlogd",
        )
        assert memlogd.stop() == 0
        w.write(b"6,2,2,-;after memlogd\n")
        wait_for(lambda: "after memlogd" in bg.stderr(), what="the record on stderr")
        assert bg.stop() == 0
    lines = bg.stderr().splitlines()
    assert lines[0] == "kmsg: memlogd_gone level=warning fallback=stderr"
    assert [(s, t) for s, _, t in parse_lines("\n".join(lines[1:]))] == [(2, "after memlogd")]
    assert bg.stdout() == ""


def test_json_lines_go_to_stdout_once_memlogd_is_gone(
    short_tmp: Path, memlogd: MemlogdProcess, background: list[Background]
) -> None:
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    args = ("-path", str(fifo), "-socket-log", memlogd.log_path, "-o", "json")
    bg = start(background, short_tmp, *args)
    with open(fifo, "wb", buffering=0) as w:
        w.write(b"6,1,1,-;kept by memlogd\n")
        first = wait_for(lambda: messages(memlogd.query_path, "kmsg"), what="record 1 in memlogd")
        assert [json.loads(m)["text"] for m in first] == ["kept by memlogd"]
        assert memlogd.stop() == 0
        w.write(b"6,2,2,-;after memlogd\n")
        wait_for(lambda: bg.stdout().endswith("}\n"), what="the record on stdout")
        assert bg.stop() == 0
    assert [(o["seq"], o["text"]) for o in map(json.loads, bg.stdout().splitlines())] == [
        (2, "after memlogd")
    ]
    assert bg.stderr() == "kmsg: memlogd_gone level=warning fallback=stdout\n"


# ------------------------------------------------------------------ the reader, scripted


async def test_reader_turns_epipe_into_a_lost_line_and_goes_on() -> None:
    script: list[bytes | type[OSError]] = [
        b"6,1,1,-;a\n",
        BrokenPipeError,  # records 2..4 overwritten
        b"6,5,5,-;e\n",
        b"6,6,6,-;f\n",
        BlockingIOError,  # end of the log
    ]

    def read(_fd: int, size: int) -> bytes:
        assert size >= 8192
        step = script.pop(0)
        if isinstance(step, bytes):
            return step
        raise step()

    reader = KmsgReader(-1, "/dev/kmsg", device=True, follow=False, read=read)
    decoder = KmsgDecoder(0)
    with trio.fail_after(5):
        batch = await reader.next_batch()
        assert batch is not None
        assert decode_batch(decoder, batch) == [
            "<6>(1) - 1970-01-01T00:00:00.000001Z: a",
            "kmsg: 3 records lost",
            "<6>(5) - 1970-01-01T00:00:00.000005Z: e",
            "<6>(6) - 1970-01-01T00:00:00.000006Z: f",
        ]
        assert await reader.next_batch() is None
    assert decoder.lost == 3 and script == []


async def test_reader_epipe_before_any_record_says_count_unknown() -> None:
    script: list[bytes | type[OSError]] = [BrokenPipeError, b"6,7,7,-;g\n", BlockingIOError]

    def read(_fd: int, _size: int) -> bytes:
        step = script.pop(0)
        if isinstance(step, bytes):
            return step
        raise step()

    reader = KmsgReader(-1, "/dev/kmsg", device=True, follow=False, read=read)
    with trio.fail_after(5):
        batch = await reader.next_batch()
    assert batch is not None
    assert decode_batch(KmsgDecoder(0), batch) == [
        "kmsg: records lost (count unknown)",
        "<6>(7) - 1970-01-01T00:00:00.000007Z: g",
    ]


# ------------------------------------------------------------------ the real /dev/kmsg


def _require_device(write: bool = False) -> None:
    try:
        fd = os.open(DEVICE, os.O_WRONLY if write else os.O_RDONLY)
    except OSError as exc:
        pytest.skip(f"{DEVICE} cannot be opened for {'writing' if write else 'reading'}: {exc}")
    os.close(fd)


def _write_marker(marker: str) -> None:
    fd = os.open(DEVICE, os.O_WRONLY)
    try:
        os.write(fd, f"<6>{marker}\n".encode())
    finally:
        os.close(fd)


def test_real_device_no_follow_has_increasing_seq_and_no_future_times() -> None:
    _require_device()
    result = kmsg("--no-follow")
    now = time.time_ns()
    assert result.returncode == 0, result.stderr[-500:]
    records = [line for line in result.stderr.splitlines() if not line.startswith("kmsg: ")]
    lines = parse_lines("\n".join(records))
    assert lines, "the kernel log is empty"
    seqs = [s for s, _, _ in lines]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    boot = boot_time_ns()
    # the kernel stamps records with its local clock, which may run a few ms ahead
    # of CLOCK_BOOTTIME: allow one second, far below any unit mistake
    assert all(boot - 1_000_000_000 <= t <= now + 1_000_000_000 for _, t, _ in lines)


def test_real_marker_arrives_in_memlogd_through_socket_log(
    short_tmp: Path, memlogd: MemlogdProcess, background: list[Background]
) -> None:
    _require_device(write=True)
    marker = f"memlogd-test-{uuid.uuid4().hex}"
    bg = start(background, short_tmp, "--follow", "--socket-log", memlogd.log_path)

    def kmsg_msgs() -> list[str]:
        return [e["msg"] for e in dump(memlogd.query_path) if e["source"] == "kmsg"]

    wait_for(kmsg_msgs, what="the kernel log replayed into memlogd")
    _write_marker(marker)
    found = wait_for(
        lambda: [m for m in kmsg_msgs() if m.endswith(f": {marker}")], what="the marker"
    )
    assert bg.stop() == 0
    assert len(found) == 1
    assert LINE_RE.match(found[0]) is not None
    assert "Traceback" not in bg.stderr()


def test_real_device_second_run_with_state_prints_only_newer_records(short_tmp: Path) -> None:
    _require_device(write=True)
    state = str(short_tmp / "kmsg.state")
    first = kmsg("--no-follow", "--state-file", state)
    assert first.returncode == 0, first.stderr[-500:]
    first_seqs = [int(m.group(1)) for m in map(LINE_RE.match, first.stderr.splitlines()) if m]
    last = first_seqs[-1]
    assert json.loads(Path(state).read_text()) == {"boot_id": read_boot_id(), "seq": last}
    marker = f"memlogd-test-{uuid.uuid4().hex}"
    _write_marker(marker)
    second = kmsg("--no-follow", "--state-file", state)
    assert second.returncode == 0, second.stderr[-500:]
    lines = [line for line in second.stderr.splitlines() if not line.startswith("kmsg: ")]
    records = parse_lines("\n".join(lines))
    assert records, "the marker was not printed"
    assert all(seq > last for seq, _, _ in records)
    assert [t for _, _, t in records].count(marker) == 1
    assert json.loads(Path(state).read_text())["seq"] == records[-1][0]


# ------------------------------------------------------------------ where records go


TEXTS = [
    (10, "first line"),
    (11, "pci 0000:00:01.0: [8086:7000] type 00"),
    (12, "escaped \\x1b[1m and a \\x5c backslash"),
]


def test_stdout_flag_sends_text_records_to_stdout(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    result = kmsg("--path", dev, "--no-follow", "--stdout")
    assert (result.returncode, result.stderr) == (0, "")
    assert [(seq, text) for seq, _, text in parse_lines(result.stdout)] == TEXTS


def test_json_lost_records_line_goes_to_stdout_in_its_place(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", b"6,8,1,-;eight\n6,9,2,-;nine\n")
    state = short_tmp / "kmsg.state"
    state.write_text(json.dumps({"boot_id": read_boot_id(), "seq": 5}))
    result = kmsg("--path", dev, "--no-follow", "--state-file", str(state), "-o", "json")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == '{"lost":2,"seq":6}'
    assert [(o["seq"], o["text"]) for o in map(json.loads, lines[1:])] == [
        (8, "eight"),
        (9, "nine"),
    ]


def test_json_records_pipe_into_jq(short_tmp: Path) -> None:
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    dev = write_device(short_tmp / "kmsg", RECORDS)
    command = " ".join(
        map(shlex.quote, python_m("kmsg", "--no-follow", "-o", "json", "--path", dev))
    )
    result = subprocess.run(
        ["sh", "-c", command + " | jq -c '{seq, level, fields}'"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        '{"seq":10,"level":6,"fields":{}}\n'
        '{"seq":11,"level":7,"fields":{"SUBSYSTEM":"pci","DEVICE":"+pci:0000:00:01.0"}}\n'
        '{"seq":12,"level":6,"fields":{}}\n'
    )


def read_line(fd: int, timeout: float = RUN_TIMEOUT) -> bytes:
    """One line from a pipe, with a deadline."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no whole line within {timeout}s: {data!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            assert chunk, f"end of output after {data!r}"
            data += chunk
    return data


def test_kmsg_ends_quietly_when_the_reader_of_its_records_goes_away(short_tmp: Path) -> None:
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    err_path = short_tmp / "kmsg.stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            python_m("kmsg", "-path", str(fifo), "-o", "json"),
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        assert proc.stdout is not None
        with open(fifo, "wb", buffering=0) as w:  # kept open: kmsg keeps following
            w.write(b"6,1,1,-;only record\n")
            assert json.loads(read_line(proc.stdout.fileno()))["text"] == "only record"
            proc.stdout.close()  # `| head -1` has what it wanted
            assert proc.wait(RUN_TIMEOUT) == 0  # before any further record
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(RUN_TIMEOUT)
    assert err_path.read_text() == ""


# ------------------------------------------------------------------ the command line


def test_every_long_option_has_its_one_dash_form() -> None:
    assert one_dash_mismatches(kmsg_main) == []


def test_one_dash_forms_in_a_real_process(short_tmp: Path) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    state = short_tmp / "kmsg.state"
    result = kmsg(
        "-path", dev, "-no-follow", "-from-start", "-stdout", "-state-file", str(state),
        "-output=text", "-name", "kern", "-log-format", "json",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert [(seq, text) for seq, _, text in parse_lines(result.stdout)] == TEXTS
    assert json.loads(state.read_text()) == {"boot_id": read_boot_id(), "seq": 12}


def test_one_dash_follow_keeps_following(short_tmp: Path, background: list[Background]) -> None:
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    bg = start(background, short_tmp, "-follow", "-path", str(fifo), "-from-end", "-stdout")
    with open(fifo, "wb", buffering=0) as w:
        w.write(b"6,1,1,-;one\n")
        wait_for(lambda: bg.stdout().endswith(": one\n"), what="the first record")
        w.write(b"6,2,2,-;two\n")
        wait_for(lambda: bg.stdout().endswith(": two\n"), what="the second record")
        assert bg.proc.poll() is None  # still following
        assert bg.stop() == 0
    assert [(s, t) for s, _, t in parse_lines(bg.stdout())] == [(1, "one"), (2, "two")]
    assert bg.stderr() == ""


@pytest.mark.parametrize(
    ("word", "error"),
    [
        ("-fo", "No such option '-fo'. (Did you mean one of: '-follow', '-o'?)"),
        ("-follo", "No such option '-follo'. (Did you mean one of: '-follow', '-no-follow'?)"),
        ("-ojson", "No such option '-ojson'."),  # never -o json
        ("-stdou", "No such option '-stdou'. Did you mean '-stdout'?"),
    ],
)
def test_a_one_dash_word_that_names_no_option_is_a_usage_error(
    short_tmp: Path, word: str, error: str
) -> None:
    dev = write_device(short_tmp / "kmsg", RECORDS)
    result = kmsg("-path", dev, "-no-follow", word)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.endswith(f"\n\nError: {error}\n"), result.stderr


def examples(help_text: str, program: str) -> list[str]:
    """The lines of the help's "Examples:" paragraph: the end of the help, after
    the options (README: every -help ends with its examples)."""
    head, found, tail = help_text.rstrip("\n").rpartition("\n  Examples:\n")
    assert found and "\nOptions:\n" in head, f"the help does not end with examples: {tail}"
    lines = tail.splitlines()
    assert all(line.startswith(f"    {program} ") for line in lines), lines
    return [line.strip() for line in lines]


def test_help_ends_with_examples_that_parse() -> None:
    for flag in ("-h", "-help", "--help"):
        result = kmsg(flag)
        assert (result.returncode, result.stderr) == (0, ""), flag
        found = examples(result.stdout, "kmsg")
        assert 2 <= len(found) <= 3
        for example in found:
            words = shlex.split(re.split(r" [|#] ", example)[0])
            ctx = kmsg_main.make_context("kmsg", words[1:])  # no usage error
            ctx.close()


# ------------------------------------------------------------------ permissions

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_SYSLOG = 1, 2, 34


def unprivileged(*caps: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that runs a child without ``caps`` when we are root (the bounding
    set is dropped, so the program has none of them); None when we are not root.
    Skips the test where the capabilities cannot be dropped."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in caps:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    try:
        subprocess.run([sys.executable, "-c", ""], preexec_fn=drop, check=True, timeout=10)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot drop capabilities here: {exc}")
    return drop


def kmsg_unprivileged(*args: str, caps: tuple[int, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_m("kmsg", *args),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=unprivileged(*caps),
    )


def test_unreadable_path_is_permission_denied(short_tmp: Path) -> None:
    dev = Path(write_device(short_tmp / "kmsg", RECORDS))
    dev.chmod(0)
    result = kmsg_unprivileged(
        "-path", str(dev), "-no-follow", caps=(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"kmsg: cannot open {dev}: Permission denied\n"


def test_kernel_log_refused_by_dmesg_restrict_says_what_it_needs() -> None:
    if not os.path.exists(DEVICE):
        pytest.skip(f"no {DEVICE}")
    try:
        restrict = Path("/proc/sys/kernel/dmesg_restrict").read_text().strip()
    except OSError as exc:
        pytest.skip(f"kernel.dmesg_restrict cannot be read: {exc}")
    if restrict != "1":
        pytest.skip("kernel.dmesg_restrict is not set: every user may read the kernel log")
    result = kmsg_unprivileged("-no-follow", caps=(CAP_SYSLOG,))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"kmsg: cannot open {DEVICE}: Operation not permitted "
        "(kernel.dmesg_restrict is 1: reading the kernel log needs CAP_SYSLOG)\n"
    )


@pytest.mark.parametrize(
    ("restrict", "code", "device", "reason"),
    [
        ("1", errno.EPERM, True, "Operation not permitted (kernel.dmesg_restrict is 1: "),
        ("0", errno.EPERM, True, "Operation not permitted"),
        ("1", errno.EPERM, False, "Operation not permitted"),
        ("1", errno.EACCES, True, "Permission denied"),
    ],
)
def test_open_failure_reason(
    short_tmp: Path, restrict: str, code: int, device: bool, reason: str
) -> None:
    restrict_path = short_tmp / "dmesg_restrict"
    restrict_path.write_text(restrict + "\n")
    path = "/dev/null" if device else write_device(short_tmp / "file", b"")
    exc = OSError(code, os.strerror(code))
    got = open_failure_reason(path, exc, restrict_path=str(restrict_path))
    if reason.endswith(": "):
        assert got == reason + "reading the kernel log needs CAP_SYSLOG)"
    else:
        assert got == reason
