"""logship as a real subprocess between a real memlogd and a real rsyslog (docs/logship.md).

Every check is on what rsyslog wrote (``Rsyslog.records()``), parsed back with
``tests.rfc5424.parse_message`` and compared with what memlogd holds (a
mode-3 dump, with seq).  Duplicates are counted by ``(instance, seq)`` from
the structured data, as a receiver would drop them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from logship.cli import command
from logship.rfc5424 import DEFAULT_SD_ID, MAX_APP_NAME, escape_param_value, safe_name
from logship.shipper import ShipConfig, ShipResult, run_shipper
from logship.state import StateError, StateFile
from memlogd.wire.cursorfile import CursorError
from memlogd.wire.protocol import Cursor
from memlogd.wire.timefmt import format_time_micros, parse_time
from tests.conftest import StartMemlogd
from tests.helpers import MemlogdProcess, ignores, new_source, python_m, query_raw, wait_for
from tests.oneflags import one_dash_mismatches
from tests.rfc5424 import ParsedMessage, parse_message
from tests.rsyslog import Record, Rsyslog, skip_unless_available

pytestmark = pytest.mark.e2e

TIMEOUT = 15.0
WINDOW = 32  # the window of the tests that count duplicates


# ---------------------------------------------------------------------- helpers


class Logship:
    """``python -m logship`` with its diagnostics (JSON) in a file."""

    _count = 0

    def __init__(self, tmp: Path, query_path: str, url: str, *args: str) -> None:
        Logship._count += 1
        self.cmd = python_m(
            "logship", "-log-format", "json", "-socket", query_path, "-to", url, *args
        )
        self.stderr_path = tmp / f"logship-{Logship._count}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Logship:
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        return self

    def wait(self, timeout: float = TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def run(self, timeout: float = TIMEOUT) -> int:
        return self.start().wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    out.append(event)
        return out

    def wait_events(self, name: str, count: int = 1, timeout: float = TIMEOUT) -> None:
        wait_for(lambda: len(self.events(name)) >= count, timeout, f"{count} {name} event(s)")


StartLogship = Callable[..., Logship]


@pytest.fixture(name="logship")
def fixture_logship(tmp_path: Path) -> Iterator[StartLogship]:
    """``logship(query_path, url, *args)``: a started logship, killed at teardown."""
    started: list[Logship] = []

    def start(query_path: str, url: str, *args: str) -> Logship:
        proc = Logship(tmp_path, query_path, url, *args).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.running:
            proc.stop(signal.SIGKILL)


def ring(query_path: str) -> tuple[str, list[dict[str, Any]]]:
    """memlogd's instance and every entry it holds (with seq)."""
    lines = query_raw(query_path, b'\x03{"dump": true}\n').splitlines()
    header = json.loads(lines[0])["memlogd"]
    return header["instance"], [json.loads(line) for line in lines[1:]]


def write_lines(log_path: str, name: str | bytes, lines: list[str]) -> None:
    with new_source(log_path, name) as src:
        src.sendall("".join(line + "\n" for line in lines).encode())


def wait_ring(query_path: str, text: str) -> tuple[str, list[dict[str, Any]]]:
    """The ring once it holds an entry whose message is ``text``."""

    def holds() -> tuple[str, list[dict[str, Any]]] | None:
        got = ring(query_path)
        return got if any(e["msg"] == text for e in got[1]) else None

    found = wait_for(holds, what=f"memlogd to hold {text!r}")
    assert found is not None
    return found


def parsed(record: Record) -> ParsedMessage:
    return parse_message(record["rawmsg"].encode("utf-8", "surrogateescape"))


def entry_keys(records: list[Record]) -> Counter[tuple[str | None, int | None]]:
    """(instance, seq) of every entry message (gap messages left out), counted."""
    msgs = (parsed(r) for r in records)
    return Counter((m.instance, m.seq) for m in msgs if m.dropped is None)


def wait_delivered(
    rsyslog: Rsyslog, instance: str, entries: list[dict[str, Any]], timeout: float = TIMEOUT
) -> dict[tuple[str, int], tuple[Record, ParsedMessage]]:
    """Wait until every entry is in rsyslog's file; each one's (first) record."""
    want = {(instance, e["seq"]) for e in entries}

    def arrived() -> dict[tuple[str, int], tuple[Record, ParsedMessage]] | None:
        got: dict[tuple[str, int], tuple[Record, ParsedMessage]] = {}
        for record in rsyslog.records():
            msg = parsed(record)
            key = (msg.instance or "", msg.seq or 0)
            if key in want and msg.dropped is None:
                got.setdefault(key, (record, msg))
        return got if len(got) == len(want) else None

    found = wait_for(arrived, timeout, f"{len(want)} entries of {instance} at rsyslog")
    assert found is not None
    return found


def extra_copies(records: list[Record]) -> int:
    return sum(count - 1 for count in entry_keys(records).values())


def new_rsyslog(directory: Path) -> Rsyslog:
    """An rsyslog not started yet: its ports are chosen, nothing listens on them."""
    exe = skip_unless_available()
    directory.mkdir()
    return Rsyslog(directory, exe=exe)


# ---------------------------------------------------------------------- (a) content


def test_relp_delivers_every_entry_with_its_fields(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path, logship: StartLogship
) -> None:
    texts = [
        "plain",
        "tab\there",
        "unicode é € 𝄞",
        "\ufeffa BOM first",
        "",
        'quotes " ] \\ [x] "',
        "  leading spaces",
        "x" * 1000,
    ]
    write_lines(memlogd.log_path, "svc.out", texts)
    write_lines(memlogd.log_path, "other", ["from other"])
    wait_ring(memlogd.query_path, "from other")
    state = tmp_path / "ship.state"
    ship = logship(
        memlogd.query_path, rsyslog.relp_url, "-state-file", str(state), "-hostname", "vm-test"
    )
    instance, entries = wait_ring(memlogd.query_path, "from other")
    got = wait_delivered(rsyslog, instance, entries)
    assert {e["msg"] for e in entries} >= set(texts)
    for entry in entries:
        record, msg = got[(instance, entry["seq"])]
        source = entry["source"]
        assert msg.params == (
            ("instance", instance),
            ("seq", str(entry["seq"])),
            ("source", source),
        )
        assert (msg.pri, msg.sd_id, msg.procid, msg.msgid) == (14, DEFAULT_SD_ID, "-", "-")
        assert msg.app_name == record["app_name"] == safe_name(source, MAX_APP_NAME)
        assert msg.hostname == record["hostname"] == "vm-test"
        micros = parse_time(entry["time"]) // 1000 * 1000
        assert msg.time_ns == micros
        assert record["timestamp"] == format_time_micros(micros)
        assert re.match(r"<14>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z vm-test ", record["rawmsg"])
        assert record["msg"] == msg.msg == entry["msg"].lstrip("\ufeff")
        assert record["input"] == "imrelp"
    assert extra_copies(rsyslog.records()) == 0

    write_lines(memlogd.log_path, "svc.out", ["later"])  # while following
    instance, entries = wait_ring(memlogd.query_path, "later")
    wait_delivered(rsyslog, instance, entries)
    assert ship.stop() == 0  # SIGTERM
    saved = json.loads(state.read_text())
    assert saved["instance"] == instance
    assert saved["seq"] >= max(e["seq"] for e in entries)
    assert ship.events("receiver_connected")
    assert not ship.events("receiver_unavailable")


LEVELLED = [
    ("<3>disk failed", "11", "3"),
    ('{"level":"warn","msg":"slow"}', "12", "4"),
    ('time="2026-12-07T10:00:00Z" level=debug msg="x"', "15", "7"),
    ("E1207 10:00:00.123456       1 main.go:42] replica lost", "11", "3"),
    ("CRITICAL:app:out of memory", "10", "2"),
    ("<0>", "8", "0"),
    ("<5>notice", "13", "5"),
    ("GET /error.html 200", "14", "6"),  # no keyword search: info
    ("no level at all", "14", "6"),
]


@pytest.mark.parametrize("scheme", ["relp", "tcp"])
def test_the_severity_is_the_lines_level(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path, scheme: str
) -> None:
    """PRI = 8 + the level each line says it has (facility user, SPEC 15), as
    rsyslog sees it: its %pri% and %syslogseverity%."""
    write_lines(memlogd.log_path, "svc", [text for text, _, _ in LEVELLED])
    instance, entries = wait_ring(memlogd.query_path, LEVELLED[-1][0])
    url = rsyslog.relp_url if scheme == "relp" else rsyslog.tcp_url
    assert Logship(tmp_path, memlogd.query_path, url, "-once").run() == 0
    got = wait_delivered(rsyslog, instance, entries)
    seen = {entry["msg"]: got[(instance, entry["seq"])][0] for entry in entries}
    for text, pri, severity in LEVELLED:
        record = seen[text]
        assert (record["pri"], record["severity"]) == (pri, severity), text
        assert record["rawmsg"].startswith(f"<{pri}>1 ")


# ---------------------------------------------------------------------- (b), (c) crashes


def test_rsyslog_killed_mid_stream_loses_nothing(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path, logship: StartLogship
) -> None:
    state = str(tmp_path / "ship.state")
    ship = logship(
        memlogd.query_path, rsyslog.relp_url, "-window", str(WINDOW), "-state-file", state
    )
    write_lines(memlogd.log_path, "load", [f"first {i:05d} " + "y" * 80 for i in range(1500)])
    wait_for(lambda: len(rsyslog.records()) >= 300, what="300 records")
    rsyslog.kill()  # SIGKILL, mid-stream
    write_lines(memlogd.log_path, "load", [f"down {i:05d}" for i in range(1000)])
    ship.wait_events("receiver_unavailable")
    rsyslog.restart()
    write_lines(memlogd.log_path, "load", [f"after {i:05d}" for i in range(500)])
    instance, entries = wait_ring(memlogd.query_path, "after 00499")
    wait_delivered(rsyslog, instance, entries, timeout=30)
    assert extra_copies(rsyslog.records()) <= WINDOW
    ship.wait_events("receiver_available")
    assert ship.running
    assert len(ship.events("receiver_unavailable")) == 1
    assert ship.stop() == 0


def test_logship_killed_resumes_from_its_state_file(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path, logship: StartLogship
) -> None:
    state = str(tmp_path / "ship.state")
    args = ("-window", str(WINDOW), "-state-file", state)
    ship = logship(memlogd.query_path, rsyslog.relp_url, *args)
    write_lines(memlogd.log_path, "load", [f"first {i:05d} " + "y" * 80 for i in range(2000)])
    wait_for(lambda: len(rsyslog.records()) >= 500, what="500 records")
    ship.stop(signal.SIGKILL)
    write_lines(memlogd.log_path, "load", [f"meanwhile {i:05d}" for i in range(500)])
    again = logship(memlogd.query_path, rsyslog.relp_url, *args)
    instance, entries = wait_ring(memlogd.query_path, "meanwhile 00499")
    wait_delivered(rsyslog, instance, entries)
    assert extra_copies(rsyslog.records()) <= WINDOW
    assert again.events("started")[0]["resume_after"].startswith(instance + ":")
    assert again.stop() == 0


# ---------------------------------------------------------------------- (d) memlogd's instance


def test_a_new_memlogd_instance_is_forwarded_from_its_first_entry(
    start_memlogd: StartMemlogd, rsyslog: Rsyslog, tmp_path: Path, logship: StartLogship
) -> None:
    first = start_memlogd()
    ship = logship(first.query_path, rsyslog.relp_url, "-state-file", str(tmp_path / "st"))
    write_lines(first.log_path, "svc", ["old 1", "old 2"])
    old, old_entries = wait_ring(first.query_path, "old 2")
    wait_delivered(rsyslog, old, old_entries)
    assert first.stop() == 0
    ship.wait_events("memlogd_unreachable")  # warned once, still running
    second = start_memlogd()
    write_lines(second.log_path, "svc", ["new 1", "new 2"])
    new, new_entries = wait_ring(second.query_path, "new 2")
    assert new != old and new_entries[0]["seq"] == 1
    wait_delivered(rsyslog, new, new_entries)
    assert ship.events("memlogd_restarted")[0]["instance"] == new
    assert len(ship.events("memlogd_unreachable")) == 1
    assert all(parsed(r).dropped is None for r in rsyslog.records())  # nothing was lost
    assert extra_copies(rsyslog.records()) == 0
    assert ship.stop() == 0


def gap_messages(rsyslog: Rsyslog) -> list[tuple[Record, ParsedMessage]]:
    return [(r, m) for r in rsyslog.records() if (m := parsed(r)).dropped is not None]


def test_entries_overwritten_since_the_state_become_a_gap_message(
    start_memlogd: StartMemlogd, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    memlogd = start_memlogd("-max-lines", "50", "-evict", "oldest")  # one run of seqs lost
    state = str(tmp_path / "ship.state")
    once = ("-once", "-state-file", state)
    write_lines(memlogd.log_path, "svc", [f"a {i}" for i in range(10)])
    instance, _ = wait_ring(memlogd.query_path, "a 9")
    assert Logship(tmp_path, memlogd.query_path, rsyslog.relp_url, *once).run() == 0
    saved = json.loads(Path(state).read_text())["seq"]
    write_lines(memlogd.log_path, "svc", [f"b {i}" for i in range(200)])
    _, entries = wait_ring(memlogd.query_path, "b 199")
    first_seq = entries[0]["seq"]
    assert first_seq > saved + 1  # the ring moved on past the state
    assert Logship(tmp_path, memlogd.query_path, rsyslog.relp_url, *once).run() == 0
    wait_delivered(rsyslog, instance, entries)
    [(record, gap)] = gap_messages(rsyslog)
    lost = first_seq - saved - 1
    assert (gap.instance, gap.seq, gap.dropped) == (instance, saved + 1, lost)
    assert (record["pri"], record["severity"]) == ("12", "4")  # user.warning
    assert record["app_name"] == "logship" and gap.source == "logship"
    assert record["msg"] == f"lost {lost} entries (seq {saved + 1}-{first_seq - 1})"
    assert extra_copies(rsyslog.records()) == 0


def test_a_new_instance_whose_ring_moved_on_starts_with_a_gap(
    start_memlogd: StartMemlogd, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    state = str(tmp_path / "ship.state")
    first = start_memlogd()
    write_lines(first.log_path, "svc", ["before"])
    wait_ring(first.query_path, "before")
    assert (
        Logship(tmp_path, first.query_path, rsyslog.relp_url, "-once", "-state-file", state).run()
        == 0
    )
    assert first.stop() == 0
    second = start_memlogd("-max-lines", "50", "-evict", "oldest")  # its first entries go
    write_lines(second.log_path, "svc", [f"new {i}" for i in range(200)])
    new, entries = wait_ring(second.query_path, "new 199")
    first_seq = entries[0]["seq"]
    ship = Logship(tmp_path, second.query_path, rsyslog.relp_url, "-once", "-state-file", state)
    assert ship.run() == 0
    wait_delivered(rsyslog, new, entries)
    [(_, gap)] = gap_messages(rsyslog)
    assert (gap.instance, gap.seq, gap.dropped) == (new, 1, first_seq - 1)
    assert json.loads(Path(state).read_text())["instance"] == new


# ---------------------------------------------------------------------- (e) bad receivers

FAKE_RECEIVER = r"""
import socket, struct, sys
mode, port = sys.argv[1], int(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(64)
print("ready", flush=True)
held = []
while True:
    conn, _ = server.accept()
    if mode == "reset":  # accept, then close at once with a RST
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    elif mode == "mute":  # answers open like librelp, then reads and never acknowledges
        conn.recv(65536)
        offers = b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0\ncommands=syslog"
        conn.sendall(b"1 rsp %d %s\n" % (len(offers), offers))
        held.append(conn)
    else:  # silent: accept, read nothing, answer nothing
        held.append(conn)
"""


@contextlib.contextmanager
def fake_receiver(mode: str, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_RECEIVER, mode, str(port)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


@pytest.mark.parametrize("mode", ["refuse", "reset", "silent"])
def test_a_bad_receiver_is_retried_until_a_real_one_answers(
    mode: str, memlogd: MemlogdProcess, tmp_path: Path, logship: StartLogship
) -> None:
    rsyslog = new_rsyslog(tmp_path / "rsyslog")
    write_lines(memlogd.log_path, "svc", [f"line {i}" for i in range(20)])
    instance, entries = wait_ring(memlogd.query_path, "line 19")
    args = ("-log-level", "debug", "-ack-timeout", "0.3")  # hidden flags, for tests
    try:
        with contextlib.ExitStack() as stack:
            if mode != "refuse":
                stack.enter_context(fake_receiver(mode, rsyslog.relp_port))
            ship = logship(memlogd.query_path, rsyslog.relp_url, *args)
            ship.wait_events("receiver_retry", 3)  # backoff: 0.1, 0.2, 0.4 s ...
            assert ship.running
            [warning] = ship.events("receiver_unavailable")  # one per outage
            assert warning["level"] == "warning"
            reason = {
                "refuse": "connection refused",
                "reset": "",
                "silent": "no answer to open within 0.3 s",
            }[mode]
            assert reason in warning["reason"]
        rsyslog.start()  # at that very port
        _, entries = wait_ring(memlogd.query_path, "line 19")
        wait_delivered(rsyslog, instance, entries)
        ship.wait_events("receiver_available")
        assert len(ship.events("receiver_unavailable")) == 1
        assert ship.stop() == 0
    finally:
        rsyslog.stop()
        rsyslog.kill()


def test_sigint_waits_for_outstanding_acknowledgements_then_exits_130(
    memlogd: MemlogdProcess, tmp_path: Path, logship: StartLogship
) -> None:
    rsyslog = new_rsyslog(tmp_path / "rsyslog")  # only for its free port
    state = tmp_path / "ship.state"
    write_lines(memlogd.log_path, "svc", [f"line {i}" for i in range(20)])
    wait_ring(memlogd.query_path, "line 19")
    with fake_receiver("mute", rsyslog.relp_port):
        ship = logship(memlogd.query_path, rsyslog.relp_url, "-state-file", str(state))
        ship.wait_events("receiver_connected")  # open answered, messages outstanding
        ship.send_signal(signal.SIGINT)
        ship.wait_events("stopping")
        assert ship.running  # waiting for the acknowledgements (up to 5 s)
        assert ship.wait(TIMEOUT) == 130  # interrupted, entries left undelivered (SPEC 18)
    [stopped] = ship.events("stopped")
    assert stopped["delivered"] == 0 and stopped["undelivered"] >= 20
    assert stopped["complete"] is False
    assert ship.stderr().splitlines()[-1] == (
        f"logship: {stopped['undelivered']} entries not delivered to {rsyslog.relp_url} "
        "(stopped by SIGINT)"
    )
    assert not state.exists()  # nothing delivered: no state to save


LONG_RING = 20_000  # entries: at -window 1 (a round trip each) rsyslog takes seconds


@pytest.fixture(name="long_ring")
def fixture_long_ring(start_memlogd: StartMemlogd) -> MemlogdProcess:
    """A memlogd holding LONG_RING entries of source svc."""
    memlogd = start_memlogd("-max-lines", str(LONG_RING + 1000))
    write_lines(memlogd.log_path, "svc", [f"long {i}" for i in range(LONG_RING)])
    wait_ring(memlogd.query_path, f"long {LONG_RING - 1}")
    return memlogd


@pytest.mark.parametrize(
    ("sig", "status", "once"),
    [
        (signal.SIGINT, 130, False),
        (signal.SIGTERM, 143, False),
        (signal.SIGINT, 130, True),
        (signal.SIGTERM, 143, True),
    ],
)
def test_interrupted_with_entries_left_exits_128_plus_the_signal(
    long_ring: MemlogdProcess,
    rsyslog: Rsyslog,
    logship: StartLogship,
    sig: signal.Signals,
    status: int,
    once: bool,
) -> None:
    """SPEC 18: a stop that leaves entries undelivered is not success, with
    ``-once`` or without, and the closing summary says so in words and numbers."""
    args = ["-window", "1", *(["-once"] if once else [])]
    ship = logship(long_ring.query_path, rsyslog.relp_url, *args)
    ship.wait_events("receiver_connected")
    ship.send_signal(sig)
    code = ship.wait(TIMEOUT)
    [stopped] = ship.events("stopped")
    assert stopped["undelivered"] > 0 and stopped["complete"] is False
    assert code == status
    delivered = len(entry_keys(rsyslog.records()))
    assert stopped["delivered"] == delivered < LONG_RING
    count = stopped["undelivered"] if not once else f"at least {stopped['undelivered']}"
    assert ship.stderr().splitlines()[-1] == (
        f"logship: {count} entries not delivered to {rsyslog.relp_url} (stopped by {sig.name})"
    )


def test_sighup_never_ends_logship_also_during_its_start(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, logship: StartLogship
) -> None:
    """SPEC 19: logship died of SIGHUP (an admin's habit); it holds no file to reopen."""
    ship = logship(memlogd.query_path, rsyslog.tcp_url)
    assert ship.proc is not None
    pid = ship.proc.pid

    wait_for(lambda: ignores(pid, signal.SIGHUP), what="its first instructions")

    def hup_then_look() -> list[dict[str, Any]]:
        os.kill(pid, signal.SIGHUP)  # again and again, through its start-up
        return ship.events("receiver_connected")

    wait_for(hup_then_look, TIMEOUT, "logship connected, under SIGHUPs")
    write_lines(memlogd.log_path, "svc", ["after the hangups"])
    instance, entries = wait_ring(memlogd.query_path, "after the hangups")
    os.kill(pid, signal.SIGHUP)
    wait_delivered(rsyslog, instance, entries)
    assert ship.running
    assert ship.stop() == 0


def test_tcp_sends_the_last_window_again_after_a_reconnect(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, logship: StartLogship
) -> None:
    ship = logship(memlogd.query_path, rsyslog.tcp_url, "-window", "8")
    write_lines(memlogd.log_path, "svc", [f"before {i}" for i in range(50)])
    instance, entries = wait_ring(memlogd.query_path, "before 49")
    wait_delivered(rsyslog, instance, entries)
    rsyslog.restart()  # SIGTERM: the connection ends cleanly
    write_lines(memlogd.log_path, "svc", [f"after {i}" for i in range(50)])
    instance, entries = wait_ring(memlogd.query_path, "after 49")
    wait_delivered(rsyslog, instance, entries)
    counts = entry_keys(rsyslog.records())
    again = [key for key, count in counts.items() if count > 1]
    assert 0 < len(again) <= 8  # the last window before the reconnect, sent again
    assert ship.stop() == 0


# ---------------------------------------------------------------------- (f) hostile names

HOSTILE_NAMES = [
    b'we"ird',
    b"br[ack]et",
    b"back\\slash",
    b"with space",
    b'all "]\\ [of] them\\"',
    b"]",
    b"\\",
    b"x" * 10240,  # memlogd keeps 512 bytes
    b"bad\xff\xfeutf8\xe2\x82",
    "é€𝄞 ok".encode(),
]


def test_hostile_source_names_arrive_intact(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    for i, name in enumerate(HOSTILE_NAMES):
        write_lines(memlogd.log_path, name, [f"hostile {i}"])
    instance, entries = wait_ring(memlogd.query_path, f"hostile {len(HOSTILE_NAMES) - 1}")
    ship = Logship(tmp_path, memlogd.query_path, rsyslog.relp_url, "-once")
    assert ship.run() == 0
    got = wait_delivered(rsyslog, instance, entries)
    names = set()
    for entry in entries:
        record, msg = got[(instance, entry["seq"])]
        source = entry["source"]  # as memlogd holds it
        names.add(source)
        assert msg.source == source
        assert record["app_name"] == safe_name(source, MAX_APP_NAME)
        escaped = escape_param_value(source).decode()
        assert record["structured_data"] == (
            f'[{DEFAULT_SD_ID} instance="{instance}" seq="{entry["seq"]}" source="{escaped}"]'
        )
    long = [n for n in names if n.startswith("xxx")]
    assert [len(n.encode()) for n in long] == [512]
    assert "bad\ufffd\ufffdutf8\ufffd" in names
    assert 'all "]\\ [of] them\\"' in names


# ---------------------------------------------------------------------- (g) --once


def test_tcp_once_delivers_everything(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    write_lines(memlogd.log_path, "svc", [f"tcp {i}" for i in range(500)])
    instance, entries = wait_ring(memlogd.query_path, "tcp 499")
    ship = Logship(tmp_path, memlogd.query_path, rsyslog.tcp_url, "-once", "-window", "16")
    assert ship.run() == 0
    got = wait_delivered(rsyslog, instance, entries)
    assert extra_copies(rsyslog.records()) == 0
    record, msg = got[(instance, entries[-1]["seq"])]
    assert record["input"] == "imtcp" and msg.msg == "tcp 499"
    assert msg.hostname == safe_name(socket.gethostname(), 255)  # the default


@pytest.mark.parametrize("window", [1, 8, 128])
def test_relp_once_bound_by_its_window_delivers_everything_once(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path, window: int
) -> None:
    """More entries than the window: the sender waits for room, and the
    responses are read paced (docs/logship.md, "Pacing"), never stalled."""
    write_lines(memlogd.log_path, "svc", [f"relp {i}" for i in range(3000)])
    instance, entries = wait_ring(memlogd.query_path, "relp 2999")
    ship = Logship(tmp_path, memlogd.query_path, rsyslog.relp_url, "-once", "-window", str(window))
    assert ship.run() == 0
    got = wait_delivered(rsyslog, instance, entries)
    assert extra_copies(rsyslog.records()) == 0
    assert [got[(instance, e["seq"])][1].msg for e in entries] == [e["msg"] for e in entries]
    assert ship.events("stopped")[0]["delivered"] >= len(entries)


def test_relp_once_without_a_receiver_exits_1_with_the_count(
    memlogd: MemlogdProcess, tmp_path: Path
) -> None:
    rsyslog = new_rsyslog(tmp_path / "rsyslog")  # never started: nothing listens
    write_lines(memlogd.log_path, "svc", [f"lost {i}" for i in range(30)])
    _, entries = wait_ring(memlogd.query_path, "lost 29")
    ship = Logship(tmp_path, memlogd.query_path, rsyslog.relp_url, "-once", "-timeout", "1")
    assert ship.run() == 1
    last = ship.stderr().splitlines()[-1]
    m = re.fullmatch(
        rf"logship: (\d+) entries not delivered to {re.escape(rsyslog.relp_url)} "
        r"within 1 s: connection refused",
        last,
    )
    assert m is not None, last
    assert int(m[1]) >= len(entries)  # memlogd may have added its own lines since


# ---------------------------------------------------------------------- (h) the command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-to", "http://logs:514"], "unknown scheme 'http'"),
        (["-to", "relp://logs"], "missing port"),
        (["-to", "logs:514"], "expected relp://HOST:PORT or tcp://HOST:PORT"),
        (["-to", "relp://logs:99999"], "outside 1-65535"),
        ([], "Missing option '-to' / '--to'"),
        (["-to", "relp://logs:1", "-sd-id", "nope"], "NAME@ENTERPRISE-NUMBER"),
        (["-to", "relp://logs:1", "-window", "0"], "-window"),
        (["-to", "relp://logs:1", "-onc"], "No such option"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2, result.output
    assert "Error: " in result.output and message in result.output


def test_a_real_usage_error_exits_2() -> None:
    proc = subprocess.run(
        python_m("logship", "--to", "ftp://logs:21"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "Error: Invalid value for '-to' / '--to': 'ftp://logs:21': unknown scheme" in proc.stderr


def test_one_dash_forms_and_help() -> None:
    assert one_dash_mismatches(command) == []
    result = CliRunner().invoke(command, ["-help"])
    assert result.exit_code == 0
    tail = result.output.strip().splitlines()[-4:]
    assert tail[0].strip() == "Examples:"
    assert all(line.strip().startswith("logship -to ") for line in tail[1:])
    assert "--ack-timeout" not in result.output  # hidden


UPSTREAM = r"""
import os, socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.recv(1)  # the mode byte: upstream knows no mode 3, and closes
    conn.close()
"""


def test_upstream_memlogd_is_refused_clearly(short_tmp: Path) -> None:
    path = str(short_tmp / "upstream.sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        ship = subprocess.run(
            python_m("logship", "-socket", path, "-to", "relp://127.0.0.1:1"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
    assert ship.returncode == 1
    last = ship.stderr.strip().splitlines()[-1]
    assert last.startswith("logship: ") and "needs this project's memlogd" in last


# ---------------------------------------------------------------------- in process


async def test_run_shipper_in_process_with_a_connector(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    """What memlogd's -ship-to role does: a connector instead of a path,
    task_status gives the Shipper, stop() is graceful, the state is saved."""
    write_lines(memlogd.log_path, "svc", [f"in process {i}" for i in range(100)])
    instance, entries = wait_ring(memlogd.query_path, "in process 99")

    async def connect() -> trio.abc.Stream:
        return await trio.open_unix_socket(memlogd.query_path)

    state = tmp_path / "ship.state"
    config = ShipConfig(rsyslog.relp_url, state_file=str(state), hostname="inproc", window=8)
    results: list[ShipResult] = []

    async def run(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        results.append(await run_shipper(config, connect, task_status=task_status))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            shipper = await nursery.start(run)
            while shipper.cursor is None or shipper.cursor.seq < entries[-1]["seq"]:
                await trio.sleep(0.01)
            shipper.stop()
    [result] = results
    assert result.complete and result.undelivered == 0
    assert result.delivered >= len(entries)
    assert result.cursor is not None and result.cursor.instance == instance
    assert json.loads(state.read_text()) == {"instance": instance, "seq": result.cursor.seq}
    got = wait_delivered(rsyslog, instance, entries)
    assert {m.hostname for _, m in got.values()} == {"inproc"}


# ---------------------------------------------------------------------- the state file


def test_state_file_round_trip_and_fsync_at_most_once_a_period(tmp_path: Path) -> None:
    now = [100.0]
    path = tmp_path / "st"
    state = StateFile(str(path), clock=lambda: now[0])
    assert state.load() is None
    state.save(Cursor("i", 1))  # the first save is fsynced
    assert (state.syncs, state.dirty) == (1, False)
    now[0] += 0.5
    state.save(Cursor("i", 2))  # within the period: renamed into place, not fsynced
    assert (state.syncs, state.dirty, state.sync_due()) == (1, True, False)
    state.sync()
    assert state.syncs == 1
    now[0] += 0.5
    assert state.sync_due()
    state.sync()
    assert (state.syncs, state.dirty) == (2, False)
    now[0] += 0.1
    state.close(Cursor("i", 3))  # at exit: always fsynced
    assert (state.syncs, state.dirty) == (3, False)
    assert sorted(os.listdir(tmp_path)) == ["st"]  # no temporary file left
    assert json.loads(path.read_text()) == {"instance": "i", "seq": 3}
    assert StateFile(str(path)).load() == Cursor("i", 3)


def test_state_file_problems(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=f"cannot use state file {tmp_path}/no/st: no directory"):
        StateFile(str(tmp_path / "no" / "st")).load()
    (tmp_path / "dir").mkdir()
    with pytest.raises(StateError, match="it is a directory"):
        StateFile(str(tmp_path / "dir")).load()
    bad = tmp_path / "bad"
    bad.write_text("{not json")
    with pytest.raises(CursorError):
        StateFile(str(bad)).load()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "other-owner", "writable"])
def test_a_hostile_state_file_is_refused_at_once(
    tmp_path: Path, kind: str, local_user: Any
) -> None:
    """SPEC 19: a FIFO at the state file blocked logship's start for ever."""
    path = tmp_path / "st"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text('{"instance": "i", "seq": 1}\n')
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(elsewhere)
    else:
        path.write_text('{"instance": "i", "seq": 1}\n')
        if kind == "other-owner":
            os.chown(path, local_user.pw_uid, -1)
        else:
            path.chmod(0o666)
    reason = {
        "fifo": "it is a FIFO",
        "symlink": "it is a symbolic link",
        "other-owner": f"it is owned by uid {local_user.pw_uid}, not 0",
        "writable": "it is writable by others (mode 0666)",
    }[kind]
    with pytest.raises(StateError) as raised:
        StateFile(str(path)).load()
    assert str(raised.value) == f"cannot use state file {path}: {reason}"


def test_a_fifo_at_the_temporary_state_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "st"
    os.mkfifo(str(path) + ".tmp")
    state = StateFile(str(path))
    assert state.load() is None  # the probe made a temporary file: never blocked
    state.save(Cursor("i", 3), sync=True)
    assert json.loads(path.read_text()) == {"instance": "i", "seq": 3}
    assert sorted(os.listdir(tmp_path)) == ["st"]


def test_a_state_beyond_the_rings_next_seq_is_not_obeyed(
    memlogd: MemlogdProcess, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    """SPEC 19: ``-once`` said complete=True having delivered nothing."""
    write_lines(memlogd.log_path, "svc", [f"beyond {i}" for i in range(5)])
    instance, entries = wait_ring(memlogd.query_path, "beyond 4")
    state = tmp_path / "st"
    state.write_text(json.dumps({"instance": instance, "seq": entries[-1]["seq"] + 100}))
    once = ("-once", "-state-file", str(state))
    assert Logship(tmp_path, memlogd.query_path, rsyslog.tcp_url, *once).run() == 0
    wait_delivered(rsyslog, instance, entries)
    assert json.loads(state.read_text()) == {"instance": instance, "seq": entries[-1]["seq"]}
