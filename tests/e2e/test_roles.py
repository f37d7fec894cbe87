"""memlogd's in-process roles and its boot (docs/memlogd.md, "Roles", "Boot"):
the other programs' jobs in the worker, surviving its restarts, and readiness
as soon as the sockets are bound."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kmsg.record import text_seq
from tests.conftest import StartMemlogd
from tests.e2e.test_keeper import Load, kill_worker, progress, stats, wait_gone
from tests.helpers import new_source, python_m, query_raw, wait_value
from tests.rsyslog import Record, Rsyslog

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0
KMSG = "/dev/kmsg"


def lines_of(directory: Path, stem: str) -> list[str]:
    """Every line of a source's files, oldest rotated file first."""
    rotated = sorted(directory.glob(f"{stem}.log.*"), key=lambda p: -int(p.suffix[1:]))
    out: list[str] = []
    for path in [*rotated, directory / f"{stem}.log"]:
        if path.exists():
            out += path.read_text(errors="replace").splitlines()
    return out


def test_persist_starts_once_the_directory_appears(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    disk = short_tmp / "disk"
    memlogd = start_memlogd("-persist-dir", str(disk))
    with new_source(memlogd.log_path, "early") as w:
        w.sendall(b"before the disk\n")
    wait_value(
        lambda: [e["msg"] for e in dump_all(memlogd.query_path) if e["source"] == "early"],
        lambda m: m == ["before the disk"],
        DEADLINE_S,
        "the line in the ring",
    )
    assert not disk.exists()
    disk.mkdir()  # "the disk is mounted"
    got = wait_value(
        lambda: lines_of(disk, "early"), lambda m: len(m) == 1, DEADLINE_S, "early.log"
    )
    # nanoseconds by default (logread -D merges sources exactly)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z early before the disk", got[0]
    )
    assert "persist_waiting" in memlogd.stderr()


def persisted(directory: Path, source: str) -> list[str]:
    """The messages in a source's files."""
    return [line.split(" ", 2)[2] for line in lines_of(directory, source)]


def at_least(count: int, got: list[str]) -> bool:
    return len(got) >= count


def dump_all(query_path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in query_raw(query_path, b"\x00").splitlines()]


def test_a_worker_restart_duplicates_nothing_in_the_files(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    disk = short_tmp / "disk"
    disk.mkdir()
    memlogd = start_memlogd(
        "-max-lines", "200000", "-persist-dir", str(disk), "-persist-max-log-size", "20000"
    )
    load = Load(memlogd, 10, 1500)
    try:
        for k in range(3):
            progress(memlogd, (k + 1) * 3000)
            wait_gone(kill_worker(memlogd))
        results = load.wait()
    finally:
        load.kill()
    assert [code for code, _ in results] == [0] * len(results)
    wait_value(
        lambda: stats(memlogd.query_path)["open_fds"], lambda n: n == 0, DEADLINE_S, "sources"
    )
    ring = {(e["source"], e["msg"]) for e in dump_all(memlogd.query_path) if e["source"][0] == "w"}
    for name in load.names:
        source = name if int(name[1:]) % 2 == 0 else f"{name}.out"
        held = sorted(msg for s, msg in ring if s == source)
        files = wait_value(
            partial(persisted, disk, source), partial(at_least, len(held)), DEADLINE_S, source
        )
        assert len(files) == len(set(files)), f"{source}: a line twice in the files"
        assert sorted(files) == held, source  # and every line the ring holds
    assert stats(memlogd.query_path)["worker_starts"] == 4


@pytest.mark.skipif(not os.access(KMSG, os.R_OK), reason=f"{KMSG} is not readable here")
def test_kmsg_role_puts_the_kernel_log_in_the_ring_once(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    memlogd = start_memlogd("-kmsg", "-state-dir", str(short_tmp / "state"))

    def kernel() -> list[str]:
        return [e["msg"] for e in dump_all(memlogd.query_path) if e["source"] == "kmsg"]

    first = wait_value(kernel, bool, DEADLINE_S, "kernel lines")
    assert re.match(r"<[0-7]>\(\d+\) - \d{4}-", first[0])  # the record's level in front
    wait_gone(kill_worker(memlogd))
    marker = f"memlogd-test-{os.getpid()}-{id(memlogd)}"
    try:
        with open(KMSG, "w") as dev:
            dev.write(f"{marker}\n")
    except OSError as exc:
        pytest.skip(f"cannot write a marker to {KMSG}: {exc.strerror}")
    lines = wait_value(
        kernel, lambda m: any(marker in line for line in m), DEADLINE_S, "the marker"
    )
    seqs = [seq for seq in map(text_seq, lines) if seq is not None]
    assert len(seqs) == len(set(seqs)), "a kernel record twice after the worker restart"
    assert seqs == sorted(seqs)
    kmsg = stats(memlogd.query_path)["sources"]["kmsg"]
    assert kmsg["open"] == 1 and kmsg["entries"] >= len(lines) and kmsg["received"] > 0
    role = roles_stats(memlogd.query_path)["kmsg"]  # the last record (SPEC 18)
    assert role["device"] == KMSG and role["records"] > 0
    assert re.match(r"<[0-7]>\(\d+\) - \d{4}-", role["last_record"])


@pytest.mark.parametrize("upstream", [False, True], ids=["ours", "upstream-format"])
def test_kmsg_role_resumes_after_its_last_line_in_either_format(
    start_memlogd: StartMemlogd, short_tmp: Path, upstream: bool
) -> None:
    """The role's resume point is the ring's last kmsg line: upstream's
    ``(SEQ) - TIME: TEXT`` is read back as well as ours ``<L>(SEQ) - ...``."""
    device = short_tmp / "kmsg.records"  # a file of records in the device's place
    device.write_bytes(b"")
    memlogd = start_memlogd(
        "-kmsg", "-kmsg-path", str(device), "-state-dir", str(short_tmp / "state")
    )
    last = (
        "(3) - 2026-12-07T10:00:00Z: third" if upstream else "<6>(3) - 2026-12-07T10:00:00Z: third"
    )
    with new_source(memlogd.log_path, "kmsg") as src:  # as an earlier worker's role wrote it
        src.sendall(last.encode() + b"\n")

    def kernel() -> list[str]:
        return [e["msg"] for e in dump_all(memlogd.query_path) if e["source"] == "kmsg"]

    wait_value(kernel, lambda m: m == [last], DEADLINE_S, "the line in the ring")
    wait_gone(kill_worker(memlogd))  # the next worker's role resumes after seq 3
    wait_value(lambda: stats(memlogd.query_path)["worker_starts"], lambda n: n == 2, DEADLINE_S)
    device.write_bytes(
        b"".join(
            b"%d,%d,%d,-;record %d\n" % (p, i, i, i)
            for i, p in [(1, 6), (2, 6), (3, 6), (4, 3), (5, 6)]
        )
    )
    got = wait_value(kernel, lambda m: len(m) >= 3, DEADLINE_S, "records 4 and 5")
    assert [(text_seq(m), m.rsplit(": ", 1)[-1]) for m in got] == [
        (3, "third"),
        (4, "record 4"),
        (5, "record 5"),
    ]
    assert got[1].startswith("<3>(4) - ") and got[2].startswith("<6>(5) - ")


def test_ready_fd_is_written_before_the_heavy_imports_and_nothing_is_lost(
    short_tmp: Path,
) -> None:
    """A datagram and a query sent right after --ready-fd are served (they wait
    in the kernel's queues while the worker starts)."""
    log_path, query_path = str(short_tmp / "l.sock"), str(short_tmp / "q.sock")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [
            *python_m("memlogd", "-socket-log", log_path, "-socket-query", query_path),
            *("--ready-fd", str(w), "-no-console"),
        ],
        pass_fds=[w],
        stderr=subprocess.PIPE,
    )
    os.close(w)
    try:
        assert select.select([r], [], [], DEADLINE_S)[0] and os.read(r, 1) == b"\n"
        ours, theirs = socket.socketpair()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(log_path)
            from memlogd.wire.fdmsg import fd_ancdata

            sock.sendmsg([b"first"], fd_ancdata([theirs.fileno()]))
        theirs.close()
        ours.sendall(b"right after ready\n")
        ours.close()
        answer = query_raw(query_path, b"\x00", timeout=DEADLINE_S)  # waits in the backlog
        msgs = [(e["source"], e["msg"]) for e in map(json.loads, answer.splitlines())]
        if ("first", "right after ready") not in msgs:  # the read may come just after
            msgs = wait_value(
                lambda: [(e["source"], e["msg"]) for e in dump_all(query_path)],
                lambda m: ("first", "right after ready") in m,
                DEADLINE_S,
                "the line",
            )
        assert msgs[0][1].startswith("memlogd started")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=DEADLINE_S)
        os.close(r)
    assert proc.returncode == 0, err


def test_roles_flags_are_checked_before_ready(short_tmp: Path) -> None:
    result = subprocess.run(
        python_m("memlogd", "-socket-log", str(short_tmp / "l"), "-ship-to", "http://x:1"),
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode == 2
    assert b"-ship-to" in result.stderr and b"Traceback" not in result.stderr
    assert not (short_tmp / "l").exists()  # nothing was bound


def shipped(rsyslog: Rsyslog, lines: list[str]) -> list[Record]:
    """rsyslog's records once every one of ``lines`` is among them."""
    return wait_value(
        rsyslog.records,
        lambda records: {r["msg"] for r in records} >= set(lines),
        DEADLINE_S,
        f"{len(lines)} lines at rsyslog",
    )


def test_ship_role_delivers_to_a_real_rsyslog_across_worker_restarts(
    start_memlogd: StartMemlogd, short_tmp: Path, rsyslog: Rsyslog
) -> None:
    """-ship-to: every line at rsyslog, from the ring the workers share; a killed
    worker's shipper resumes from its state file, repeating at most a window."""
    window = 32
    memlogd = start_memlogd(
        "-ship-to", rsyslog.relp_url, "-ship-window", str(window),
        "-ship-hostname", "vm-roles", "-ship-source", "app*",
        "-state-dir", str(short_tmp / "state"),
    )  # fmt: skip
    sent: list[str] = []
    for k in range(3):
        batch = [f"round {k} line {i}" for i in range(400)]
        with new_source(memlogd.log_path, f"app{k}") as w:
            w.sendall("".join(line + "\n" for line in batch).encode())
        with new_source(memlogd.log_path, "other") as w:
            w.sendall(b"not shipped\n")
        sent += batch
        shipped(rsyslog, sent)
        wait_gone(kill_worker(memlogd))
    with new_source(memlogd.log_path, "app9") as w:
        w.sendall(b"after the last restart\n")
    sent.append("after the last restart")
    records = shipped(rsyslog, sent)
    msgs = [r["msg"] for r in records]
    assert set(msgs) == set(sent)  # every line; none of source "other"
    assert len(msgs) - len(set(msgs)) <= 3 * window  # a window at most per killed worker
    assert {r["hostname"] for r in records} == {"vm-roles"}
    assert {r["app_name"] for r in records} == {"app0", "app1", "app2", "app9"}
    assert (short_tmp / "state" / "logship.state").exists()
    assert stats(memlogd.query_path)["worker_starts"] == 4
    last = last_seq(memlogd.query_path, "app9")
    ship = wait_value(  # (SPEC 18) this worker's shipper: delivered up to the last line
        lambda: roles_stats(memlogd.query_path)["ship"],
        lambda s: s["acked_seq"] == last,
        DEADLINE_S,
        "the ship role's acknowledged seq",
    )
    assert ship["connected"] is True and ship["outage_s"] is None
    assert 0 <= ship["sent_again"] <= window


# ---------------------------------------------------------------------- roles in stats


def roles_stats(query_path: str) -> dict[str, Any]:
    roles: dict[str, Any] = stats(query_path)["roles"]
    return roles


def last_seq(query_path: str, source: str) -> int:
    """The seq of the last entry of ``source`` in the ring (extended dump)."""
    lines = query_raw(query_path, b'\x03{"dump":true}\n').splitlines()[1:]
    seqs: list[int] = [e["seq"] for e in map(json.loads, lines) if e["source"] == source]
    return max(seqs)


def test_stats_show_each_roles_state(start_memlogd: StartMemlogd, short_tmp: Path) -> None:
    """SPEC 18: persist waiting for its directory, then writing (lines, lag); ship
    in an outage (nobody listens at its port); in `logread --stats` and -o json."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nobody listens here once closed
    disk = short_tmp / "disk"
    memlogd = start_memlogd(
        "-persist-dir", str(disk), "-ship-to", f"relp://127.0.0.1:{port}",
        "-state-dir", str(short_tmp / "state"),
    )  # fmt: skip
    q = memlogd.query_path
    roles = wait_value(
        lambda: roles_stats(q),
        lambda r: r["ship"].get("outage_s") is not None,
        DEADLINE_S,
        "the ship role in an outage",
    )
    assert roles["persist"] == {
        "state": "waiting",
        "dir": str(disk),
        "lines_written": 0,
        "lag_seq": None,
    }
    ship = roles["ship"]
    assert ship["to"] == f"relp://127.0.0.1:{port}"
    assert (ship["connected"], ship["acked_seq"], ship["sent_again"]) == (False, None, 0)
    assert isinstance(ship["outage_s"], float) and ship["outage_s"] >= 0
    disk.mkdir()
    with new_source(memlogd.log_path, "svc") as w:
        w.sendall(b"one\ntwo\n")
    persist = wait_value(
        lambda: roles_stats(q)["persist"],
        lambda p: p["state"] == "writing" and p["lag_seq"] == 0,
        DEADLINE_S,
        "persist caught up",
    )
    assert persist["lines_written"] >= 2  # (memlogd's own lines too)
    table = subprocess.run(
        python_m("logread", "-socket", q, "--stats"), capture_output=True, text=True, timeout=30
    )
    assert table.returncode == 0
    text = table.stdout
    assert text[text.index("\nroles\n") :].startswith(
        "\nroles\n  persist\n"
        "    state          writing\n"
        f"    dir            {disk}\n"
        f"    lines_written  {persist['lines_written']}\n"
        "    lag_seq        0\n"
        "  ship\n"
        f"    to          relp://127.0.0.1:{port}\n"
        "    connected   False\n"
        "    acked_seq   -\n"
    )
    as_json = subprocess.run(
        python_m("logread", "-socket", q, "--stats", "-o", "json"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(as_json.stdout)["roles"]["persist"]["dir"] == str(disk)


# ---------------------------------------------------------------------- hostile files (SPEC 19)


def test_a_fifo_at_the_cursor_does_not_freeze_the_worker(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    """A FIFO at DIR/logwrite.cursor (and its temporary) froze the whole worker."""
    disk = short_tmp / "disk"
    disk.mkdir()
    os.mkfifo(disk / "logwrite.cursor")
    os.mkfifo(disk / "logwrite.cursor.tmp")
    memlogd = start_memlogd("-persist-dir", str(disk))
    with new_source(memlogd.log_path, "svc") as w:
        w.sendall(b"still served\n")
    wait_value(lambda: persisted(disk, "svc"), lambda m: m == ["still served"], DEADLINE_S, "svc")
    assert stats(memlogd.query_path)["worker_starts"] == 1
    assert "cursor_ignored" in memlogd.stderr() and "it is a FIFO" in memlogd.stderr()
    assert (disk / "logwrite.cursor").is_file()


@pytest.mark.parametrize("kind", ["symlink", "other-owner"])
def test_a_state_dir_that_is_a_symlink_or_another_users_is_refused(
    start_memlogd: StartMemlogd, short_tmp: Path, kind: str, local_user: Any
) -> None:
    real = short_tmp / "real"
    real.mkdir()
    state_dir = short_tmp / "state"
    if kind == "symlink":
        state_dir.symlink_to(real)
        reason = "it is a symbolic link"
    else:
        state_dir.mkdir()
        os.chown(state_dir, local_user.pw_uid, local_user.pw_gid)
        reason = f"it is owned by uid {local_user.pw_uid}, not 0"
    dev = short_tmp / "kmsg"
    dev.write_bytes(b"6,1,1,-;one\n")
    memlogd = start_memlogd("-kmsg", "-kmsg-path", str(dev), "-state-dir", str(state_dir))
    wait_value(lambda: "role_failed" in memlogd.stderr(), bool, DEADLINE_S, "the role's refusal")
    assert f"cannot use state directory {state_dir}: {reason}" in memlogd.stderr()
    assert os.listdir(real) == [] and os.listdir(state_dir) == []
    assert not any(e["source"] == "kmsg" for e in dump_all(memlogd.query_path))
