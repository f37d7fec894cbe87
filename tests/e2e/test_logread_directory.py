"""``logread -D DIR`` against what a real logwrite (and memlogd's -persist-dir
role) wrote from a real memlogd (docs/logread.md, "Reading a log directory"):
the same output as ``logread`` live, boots across two memlogd instances, and
bad input in the directory."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from logread import dirfiles
from logread.dirfiles import open_log_dir
from memlogd.wire.logdir import safe_log_name
from memlogd.wire.timefmt import format_time, parse_time
from tests.conftest import StartMemlogd
from tests.e2e.test_kmsg import CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, unprivileged
from tests.e2e.test_logwrite import Logwrite
from tests.helpers import MemlogdProcess, dump, new_source, python_m, query_raw, wait_for

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0
SOURCES = ["web", "web.out", "a b;c", "x/y", "svc " * 70, "logd-ish\nname"]


def logread(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        python_m("logread", *args), capture_output=True, timeout=DEADLINE_S, check=False
    )


def fill(memlogd: MemlogdProcess, per_source: int) -> list[dict[str, Any]]:
    """Lines from every source in SOURCES, interleaved; the ring once they are in."""
    writers = [new_source(memlogd.log_path, name) for name in SOURCES]
    for i in range(per_source):
        for k, w in enumerate(writers):
            level = "error" if i % 5 == 0 else "info"
            w.sendall(f"level={level} line {i} of {k}; with spaces  and a tab\t.\n".encode())
    total = per_source * len(SOURCES)
    wait_for(
        lambda: sum(e["source"] in SOURCES for e in dump(memlogd.query_path)) == total,
        what="every line in the ring",
    )
    for w in writers:
        w.close()
    return dump(memlogd.query_path)


def instance_of(query_path: str) -> str:
    header = json.loads(query_raw(query_path, b'\x03{"stats": true}\n').splitlines()[0])
    return str(header["memlogd"]["instance"])


@pytest.fixture(name="nano_dir")
def fixture_nano_dir(memlogd: MemlogdProcess, short_tmp: Path) -> Path:
    """What logwrite --once -time-format rfc3339nano wrote of a full ring, with
    many rotations."""
    fill(memlogd, 40)
    logs = short_tmp / "logs"
    lw = Logwrite(
        short_tmp,
        memlogd.query_path,
        logs,
        "--once",
        "-time-format",
        "rfc3339nano",
        "-max-log-size",
        "600",
        "-max-log-files",
        "100",
    )
    assert lw.run() == 0, lw.stderr()
    assert (logs / "web.log.3").exists()
    return logs


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-s", "web*"],
        ["-u", "web"],
        ["-s", "svc*", "-s", "x/y"],
        ["-g", "line [12]7 ", "-i"],
        ["-n", "7"],
        ["-n", "3", "-g", "of 2"],
        ["-p", "err"],
        ["-p", "err", "-n", "4", "-u", "web"],
        ["-r"],
        ["-r", "-n", "5"],
        ["-o", "short-iso"],
        ["-o", "raw"],
        ["-o", "cat", "-u", "a b;c"],
        ["--list-sources"],
    ],
)
def test_nanosecond_files_print_what_logread_printed_live(
    memlogd: MemlogdProcess, nano_dir: Path, args: list[str]
) -> None:
    live = logread("-socket", memlogd.query_path, *args)
    files = logread("-D", str(nano_dir), *args)
    assert live.returncode == 0 and live.stdout, live.stderr
    assert (files.returncode, files.stderr) == (0, b"")
    assert files.stdout == live.stdout


def test_list_sources_as_json_without_evicted(memlogd: MemlogdProcess, nano_dir: Path) -> None:
    """The files do not say what the ring evicted: no ``evicted`` key from -D."""
    live = logread("-socket", memlogd.query_path, "--list-sources", "-o", "json")
    files = logread("-D", str(nano_dir), "--list-sources", "-o", "json")
    expected = [
        {k: v for k, v in json.loads(line).items() if k != "evicted"}
        for line in live.stdout.splitlines()
    ]
    assert [json.loads(line) for line in files.stdout.splitlines()] == expected
    assert files.returncode == 0 and b'"evicted"' not in files.stdout


def test_since_until_and_json_without_seq(memlogd: MemlogdProcess, nano_dir: Path) -> None:
    ring = [e for e in dump(memlogd.query_path)]
    since, until = ring[len(ring) // 3]["time"], ring[2 * len(ring) // 3]["time"]
    for args in (["--since", since], ["--until", until], ["--since", since, "--until", until]):
        live = logread("-socket", memlogd.query_path, *args)
        files = logread("-D", str(nano_dir), *args)
        assert files.stdout == live.stdout and files.returncode == 0, args
    live = logread("-socket", memlogd.query_path, "-o", "json")
    files = logread("-D", str(nano_dir), "-o", "json")
    without_seq = [
        {k: v for k, v in json.loads(line).items() if k != "seq"}
        for line in live.stdout.splitlines()
    ]
    assert [json.loads(line) for line in files.stdout.splitlines()] == without_seq
    assert b'"seq"' not in files.stdout
    pretty = logread("-D", str(nano_dir), "-o", "json-pretty", "-n", "1")
    assert json.loads(pretty.stdout) == without_seq[-1]


def test_nothing_matches(nano_dir: Path) -> None:
    done = logread("-D", str(nano_dir), "-s", "nothing")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"-- No entries --\n")
    done = logread("-D", str(nano_dir), "-s", "web.out-not", "--since", "2000-01-01")
    assert done.stderr == b"-- No entries --\n"


def test_since_and_until_skip_whole_files_unread(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: the files wholly outside --since/--until are closed unread."""
    logs = short_tmp / "logs"
    logs.mkdir()
    for name, seconds in (("s.log.1", (0, 1)), ("s.log.0", (2, 3)), ("s.log", (4, 5))):
        (logs / name).write_text("".join(f"2026-11-29T10:00:0{t}Z s at {t}\n" for t in seconds))
    read: list[str] = []
    real_read = dirfiles.LogDir.read

    def spy(self: dirfiles.LogDir, f: dirfiles.LogFile) -> str | None:
        read.append(f.name)
        return real_read(self, f)

    monkeypatch.setattr(dirfiles.LogDir, "read", spy)
    at = parse_time("2026-11-29T10:00:00Z")
    for since, until, expected in (
        (at + 4 * 10**9, None, ["s.log"]),
        (at + 3 * 10**9, None, ["s.log.0", "s.log"]),
        (None, at + 1 * 10**9, ["s.log.1"]),
        (at + 1 * 10**9, at + 2 * 10**9, ["s.log.1", "s.log.0"]),
    ):
        read.clear()
        with open_log_dir(str(logs)) as log_dir:
            for stem in log_dir.stems:
                for f in stem.files:
                    if log_dir.outside(f, since, until):
                        log_dir.skip(f)
                    else:
                        log_dir.read(f)
        assert read == expected, (since, until)
    done = logread("-D", str(logs), "--since", "2026-11-29T10:00:03Z", "-o", "cat")
    assert done.stdout == b"at 3\nat 4\nat 5\n"


# ---------------------------------------------------------------------- boots


def test_two_memlogd_instances_in_one_dir(start_memlogd: StartMemlogd, short_tmp: Path) -> None:
    logs = short_tmp / "logs"
    instances, rings = [], []
    for boot in range(2):
        memlogd = start_memlogd()
        instances.append(instance_of(memlogd.query_path))
        with new_source(memlogd.log_path, "svc") as w:
            for i in range(5):
                w.sendall(f"boot {boot} line {i}\n".encode())
        wait_for(lambda: len(dump(memlogd.query_path)) >= 6, what="the lines")  # noqa: B023
        for _ in range(2):  # a restarted logwrite on the same instance adds nothing
            # nanoseconds: boots started within one second are then told apart
            # (with whole seconds they cannot be: docs/logread.md)
            lw = Logwrite(
                short_tmp, memlogd.query_path, logs, "--once", "-time-format", "rfc3339nano"
            )
            assert lw.run() == 0, lw.stderr()
        rings.append(dump(memlogd.query_path))
        assert memlogd.stop() == 0
    lines = (logs / "instances").read_text().splitlines()
    assert [line.split(" ")[0] for line in lines] == instances
    firsts = [line.split(" ")[1] for line in lines]
    # the first line of the boot, as logwrite wrote its time
    assert firsts == [format_time(parse_time(r[0]["time"])) for r in rings]
    assert firsts[0] < firsts[1]

    done = logread("-D", str(logs), "--list-boots")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.decode().splitlines()
    assert re.fullmatch(r"IDX +INSTANCE +FIRST ENTRY +LAST ENTRY", rows[0])
    assert [row.split()[:3] for row in rows[1:]] == [
        ["-1", instances[0], firsts[0]],
        ["0", instances[1], firsts[1]],
    ]
    boots = logread("-D", str(logs), "--list-boots", "-o", "json")
    assert [json.loads(line)["offset"] for line in boots.stdout.splitlines()] == [-1, 0]

    def msgs(*args: str) -> list[str]:
        done = logread("-D", str(logs), "-o", "cat", "-s", "svc", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode().splitlines()

    first = [f"boot 0 line {i}" for i in range(5)]
    second = [f"boot 1 line {i}" for i in range(5)]
    for args in (["-b", "-1"], ["-b=-1"], ["--boot", "-1"], ["-boot", "-1"], ["-b", "1"]):
        assert msgs(*args) == first, args
    assert msgs("-b", instances[0]) == msgs("-b", "-1")
    for args in (["-b"], ["-b", "0"], ["--boot"], ["-b", instances[1]], ["-b", "2"]):
        assert msgs(*args) == second, args
    assert msgs("-b", "-n", "2") == second[-2:]
    counts = logread("-D", str(logs), "--list-sources", "-b", "-1", "-o", "json").stdout
    if firsts[0] != firsts[1]:
        assert {"source": "svc", "entries": 5} in [json.loads(x) for x in counts.splitlines()]
    assert msgs() == first + second
    missing = logread("-D", str(logs), "-b", "-2")
    assert missing.returncode == 1
    assert missing.stderr.decode() == f"logread: {logs}: no boot at offset -2 (2 recorded)\n"


def test_the_persist_role_writes_nanoseconds_and_its_instance(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    disk = short_tmp / "disk"
    disk.mkdir()
    memlogd = start_memlogd("-persist-dir", str(disk))
    instance = instance_of(memlogd.query_path)
    with new_source(memlogd.log_path, "svc") as w:
        w.sendall(b"hello\n")
    wait_for(lambda: b" svc hello\n" in _read(disk / "svc.log"), what="svc.log")
    wait_for(lambda: _read(disk / "instances").startswith(instance.encode()), what="instances")
    (line,) = _read(disk / "instances").decode().splitlines()
    first = line.split(" ")[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", first)
    live = logread("-socket", memlogd.query_path, "-s", "svc")
    files = logread("-D", str(disk), "-s", "svc", "-b")
    assert files.stdout == live.stdout and files.stdout.endswith(b";svc;hello\n")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


# ---------------------------------------------------------------------- bad input


def test_a_missing_dir_is_one_line_and_exit_1(short_tmp: Path) -> None:
    missing = short_tmp / "nowhere"
    done = logread("-D", str(missing))
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == (
        f"logread: cannot read log directory {missing}: No such file or directory\n"
    )
    (short_tmp / "file").write_text("x")
    done = logread("-D", str(short_tmp / "file"))
    assert done.returncode == 1
    assert done.stderr.decode().endswith(": Not a directory\n")
    done = logread("--list-boots", "-D", str(short_tmp))
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"logread: {short_tmp}: no boots recorded (DIR/instances is missing or empty)\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["-f"], "-f cannot be used with -D/--directory"),
        (["-F"], "-F cannot be used with -D/--directory"),
        (["--retry"], "--retry cannot be used with -D/--directory"),
        (["--stats"], "--stats cannot be used with -D/--directory"),
        (["--list-boots", "-n", "3"], "--list-boots cannot be combined"),
    ],
)
def test_usage_errors_with_a_directory(short_tmp: Path, args: list[str], error: str) -> None:
    done = logread("-D", str(short_tmp), *args)
    assert (done.returncode, done.stdout) == (2, b"")
    assert error in done.stderr.decode()
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["-b"], ["-b", "-1"], ["--list-boots"]])
def test_boots_need_a_directory(args: list[str]) -> None:
    done = logread(*args)
    assert done.returncode == 2
    assert "reads DIR/instances: give -D DIR too" in done.stderr.decode()


def test_hostile_and_broken_files_are_skipped_or_shown_never_a_traceback(short_tmp: Path) -> None:
    logs = short_tmp / "logs"
    logs.mkdir()
    secret = short_tmp / "secret"
    secret.write_text("2026-11-29T10:00:00Z secret do not show\n")
    (logs / "evil.log").symlink_to(secret)
    os.mkfifo(logs / "fifo.log")  # opened, it would hang a reader
    (logs / "dir.log").mkdir()
    (logs / "web.log.1").write_text(
        "2026-11-29T10:00:00Z web one\n"
        "an older format, no time\n"
        "2026-11-29T10:00:01Z someone-else wrote this\n"
    )
    (logs / "web.log.0.gz").write_bytes(gzip.compress(b"2026-11-29T10:00:02Z web two\n"))
    (logs / "web.log").write_text("2026-11-29T10:00:03Z web three\n2026-11-29T10:00:04Z web cu")
    (logs / "db.log.0.gz").write_bytes(b"not gzip at all")
    (logs / "db.log").write_text("2026-11-29T10:00:00.5Z db zero\n")
    done = logread("-D", str(logs))
    assert done.returncode == 0
    assert done.stdout.decode() == (
        "2026-11-29T10:00:00Z;web;one\n"
        "2026-11-29T10:00:00Z;web;an older format, no time\n"
        "2026-11-29T10:00:00.5Z;db;zero\n"
        "2026-11-29T10:00:01Z;web;someone-else wrote this\n"
        "2026-11-29T10:00:02Z;web;two\n"
        "2026-11-29T10:00:03Z;web;three\n"
        "2026-11-29T10:00:04Z;web;cu\n"
    )
    assert sorted(done.stderr.decode().splitlines()) == sorted(
        [
            f"logread: skipped {logs}/db.log.0.gz: not a valid gzip file "
            "(Not a gzipped file (b'no'))",
            f"logread: skipped {logs}/dir.log: a directory",
            f"logread: skipped {logs}/evil.log: a symbolic link",
            f"logread: skipped {logs}/fifo.log: a FIFO",
            "logread: 2 lines not in logwrite's format (shown as they are, with their file's "
            "source)",
            f"logread: {logs}/web.log: its last line has no end (cut while it was written); "
            "shown as it is",
        ]
    )


def test_a_gz_cut_midway_shows_its_lines_up_to_the_cut_and_says_so(short_tmp: Path) -> None:
    """Read a piece at a time, a broken rotation is found where it breaks: the
    lines before are shown once, the rest is skipped with a warning."""
    logs = short_tmp / "logs"
    logs.mkdir()
    lines = [f"2026-11-29T10:00:00.{k:06d}Z web line {k:06d} {'x' * 60}\n" for k in range(20_000)]
    whole = gzip.compress("".join(lines).encode(), compresslevel=1)
    (logs / "web.log.0.gz").write_bytes(whole[: len(whole) * 3 // 4])
    (logs / "web.log").write_text("2026-11-29T10:00:01Z web after\n")
    done = logread("-D", str(logs), "-o", "cat")
    assert done.returncode == 0
    shown = done.stdout.decode().splitlines()
    assert 0 < len(shown) - 1 < len(lines)
    assert shown == [line[32:-1] for line in lines[: len(shown) - 1]] + ["after"]
    assert done.stderr.decode() == (
        f"logread: skipped the rest of {logs}/web.log.0.gz: not a valid gzip file "
        "(Compressed file ended before the end-of-stream marker was reached)\n"
    )


def test_a_file_rotated_while_opening_loses_nothing(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logwrite rotates between logread's listing and its opening of the files:
    the names no longer name the files listed, so everything is opened again."""
    logs = short_tmp / "logs"
    logs.mkdir()
    (logs / "s.log.0").write_text("2026-11-29T10:00:00Z s one\n")
    (logs / "s.log").write_text("2026-11-29T10:00:01Z s two\n")
    real_open = dirfiles._open_file
    rotated: list[str] = []

    def rotate_then_open(log_dir: dirfiles.LogDir, name: str) -> dirfiles.LogFile | None:
        if not rotated:  # as logwrite's rotation does it, after the first file opened
            got = real_open(log_dir, name)
            os.rename(logs / "s.log.0", logs / "s.log.1")
            os.rename(logs / "s.log", logs / "s.log.0")
            (logs / "s.log").write_text("2026-11-29T10:00:02Z s three\n")
            rotated.append(name)
            return got
        return real_open(log_dir, name)

    monkeypatch.setattr(dirfiles, "_open_file", rotate_then_open)
    texts = []
    with open_log_dir(str(logs)) as log_dir:
        for stem in log_dir.stems:
            texts += [log_dir.read(f) for f in stem.files]
    assert rotated == ["s.log.0"]
    assert texts == [
        "2026-11-29T10:00:00Z s one\n",
        "2026-11-29T10:00:01Z s two\n",
        "2026-11-29T10:00:02Z s three\n",
    ]


def test_a_cut_source_name_is_read_back_whole(short_tmp: Path) -> None:
    logs = short_tmp / "logs"
    logs.mkdir()
    name = "a very long service name " * 12
    stem = safe_log_name(name)
    assert stem != name
    (logs / f"{stem}.log").write_text(f"2026-11-29T10:00:00Z {name} hi there\n")
    done = logread("-D", str(logs), "-o", "json")
    assert json.loads(done.stdout) == {
        "time": "2026-11-29T10:00:00Z",
        "source": name,
        "msg": "hi there",
        "priority": 6,
    }
    assert logread("-D", str(logs), "-s", "a very*").stdout.endswith(b";hi there\n")
    assert logread("-D", str(logs), "-s", "b*").stdout == b""


def test_an_unreadable_file_is_skipped_and_an_unreadable_dir_is_one_line(
    short_tmp: Path,
) -> None:
    drop = unprivileged(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
    logs = short_tmp / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("2026-11-29T10:00:00Z a readable\n")
    (logs / "b.log").write_text("2026-11-29T10:00:01Z b secret\n")
    (logs / "b.log").chmod(0)

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            python_m("logread", *args),
            capture_output=True,
            timeout=DEADLINE_S,
            check=False,
            preexec_fn=drop,
        )

    done = run("-D", str(logs))
    assert (done.returncode, done.stdout) == (0, b"2026-11-29T10:00:00Z;a;readable\n")
    assert done.stderr.decode() == f"logread: skipped {logs}/b.log: Permission denied\n"
    logs.chmod(0)
    try:
        done = run("-D", str(logs))
    finally:
        logs.chmod(0o755)
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == (
        f"logread: cannot read log directory {logs}: Permission denied\n"
    )
