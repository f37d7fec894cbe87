"""The fair ring end to end (SPEC 14, docs/memlogd.md "Which entries go"): a
flood evicts its own oldest lines and never the quiet sources', with the whole
stack in one memlogd, through worker restarts and upgrades; readers with a
cursor are told of every hole."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartMemlogd
from tests.e2e.test_keeper import kill_worker, stats, upgraded, wait_gone
from tests.e2e.test_logwrite import Logwrite
from tests.e2e.test_logwrite import messages as logwrite_messages
from tests.e2e.test_roles import lines_of
from tests.helpers import MemlogdProcess, new_source, python_m, query_raw, wait_value
from tests.rsyslog import Rsyslog

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0
KMSG = "/dev/kmsg"


def answer(
    query_path: str, after_seq: int | None = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An extended dump (from ``after_seq``): its header and its lines."""
    req = {} if after_seq is None else {"after_seq": after_seq}
    raw = query_raw(query_path, b"\x03" + json.dumps(req).encode() + b"\n", DEADLINE_S)
    lines = [json.loads(line) for line in raw.splitlines()]
    return lines[0]["memlogd"], lines[1:]


def covers_every_seq_once(header: dict[str, Any], lines: list[dict[str, Any]], start: int) -> None:
    """Entries and dropped records cover ``start .. next_seq-1`` exactly, in order."""
    seq = start
    for obj in lines:
        assert obj["seq"] == seq, obj
        seq += obj.get("dropped", 1)
    assert seq == header["next_seq"]


def msgs(lines: list[dict[str, Any]], source: str) -> list[str]:
    return [e["msg"] for e in lines if e.get("source") == source]


def flood(memlogd: MemlogdProcess, name: str, count: int, width: int = 60) -> list[str]:
    """``count`` lines from source ``name``, once memlogd has appended them all."""
    before = stats(memlogd.query_path)["sources"].get(name, {}).get("received", 0)
    lines = [f"{name} {i:06d} " + "x" * width for i in range(count)]
    with new_source(memlogd.log_path, name) as w:
        w.sendall("".join(line + "\n" for line in lines).encode())
    wait_value(
        lambda: stats(memlogd.query_path)["sources"].get(name, {}).get("received", 0),
        lambda n: n >= before + count,
        DEADLINE_S,
        f"{count} lines of {name}",
    )
    return lines


def quiet(memlogd: MemlogdProcess, name: str, lines: list[str]) -> None:
    with new_source(memlogd.log_path, name) as w:
        w.sendall("".join(line + "\n" for line in lines).encode())
    wait_value(
        lambda: msgs(answer(memlogd.query_path, None)[1], name),
        lambda got: got[-len(lines) :] == lines,
        DEADLINE_S,
        f"the lines of {name}",
    )


@pytest.mark.skipif(not os.access(KMSG, os.R_OK), reason=f"{KMSG} is not readable here")
def test_a_flood_leaves_the_kernel_and_boot_lines_with_the_whole_stack(
    start_memlogd: StartMemlogd, short_tmp: Path, rsyslog: Rsyslog
) -> None:
    """The issue's case: -persist-dir -kmsg -ship-to, the default 5000 lines, one
    service writes 20000: every kernel line and every on-boot line stays, the
    flood holds the rest, and the roles (followers) lose nothing."""
    disk = short_tmp / "disk"
    disk.mkdir()
    memlogd = start_memlogd(
        "-persist-dir", str(disk), "-kmsg", "-ship-to", rsyslog.relp_url,
        "-ship-source", "onboot", "-state-dir", str(short_tmp / "state"),
    )  # fmt: skip
    boot = [f"onboot step {i}: mounted /dev/vd{i}" for i in range(5)]
    quiet(memlogd, "onboot", boot)
    kernel = wait_value(
        lambda: msgs(answer(memlogd.query_path, None)[1], "kmsg"), bool, DEADLINE_S, "kmsg"
    )
    written = flood(memlogd, "spammer", 20000)

    header, lines = answer(memlogd.query_path)
    covers_every_seq_once(header, lines, 1)
    assert msgs(lines, "onboot") == boot
    assert set(kernel) <= set(msgs(lines, "kmsg"))  # not one kernel line evicted
    held = msgs(lines, "spammer")
    assert held == written[len(written) - len(held) :]  # the flood's newest
    values = stats(memlogd.query_path)
    assert values["entries"] == 5000 and values["evict"] == "fair"
    sources = values["sources"]
    assert sources["spammer"]["evicted"] == 20000 - len(held) > 0
    assert sources["onboot"]["evicted"] == sources["kmsg"]["evicted"] == 0
    assert values["overwritten"] == sum(s["evicted"] for s in sources.values())
    assert values["reader_dropped"] == 0  # the roles kept up

    listed = subprocess.run(
        python_m("logread", "-socket", memlogd.query_path, "--list-sources"),
        capture_output=True,
        check=True,
        timeout=DEADLINE_S,
    ).stdout.decode()
    row = next(line for line in listed.splitlines() if line.startswith("spammer "))
    assert row.split()[1:] == [str(len(held)), "evicted", str(20000 - len(held))]
    persisted = wait_value(
        lambda: lines_of(disk, "spammer"),
        lambda got: len(got) >= 20000,
        DEADLINE_S,
        "the flood on disk",
    )
    assert [line.split(" ", 2)[2] for line in persisted] == written  # logwrite lost nothing
    assert not any("lost" in p.name for p in disk.iterdir())
    shipped = wait_value(
        rsyslog.records,
        lambda records: {r["msg"] for r in records} >= set(boot),
        DEADLINE_S,
        "the boot lines at rsyslog",
    )
    assert sorted(r["msg"] for r in shipped) == sorted(boot)


def test_two_equal_floods_share_the_ring(start_memlogd: StartMemlogd) -> None:
    memlogd = start_memlogd("-max-lines", "1000")
    a: list[str] = []
    b: list[str] = []
    for _ in range(10):
        a += flood(memlogd, "a", 500)
        b += flood(memlogd, "b", 500)
    header, lines = answer(memlogd.query_path)
    covers_every_seq_once(header, lines, 1)
    held_a, held_b = msgs(lines, "a"), msgs(lines, "b")
    assert held_a == a[-len(held_a) :] and held_b == b[-len(held_b) :]
    own = len(msgs(lines, "memlogd"))
    assert len(held_a) + len(held_b) + own == 1000
    assert abs(len(held_a) - len(held_b)) <= 500  # a batch apart at most
    assert min(len(held_a), len(held_b)) >= (1000 - own - 500) // 2


def test_evict_oldest_keeps_upstreams_order(start_memlogd: StartMemlogd) -> None:
    memlogd = start_memlogd("-max-lines", "1000", "-evict", "oldest")
    quiet(memlogd, "onboot", ["step 1", "step 2"])
    written = flood(memlogd, "spammer", 3000)
    header, lines = answer(memlogd.query_path)
    assert msgs(lines, "onboot") == []  # the flood took them
    assert msgs(lines, "spammer") == written[-1000:]
    assert lines[0] == {"seq": 1, "dropped": header["first_seq"] - 1}
    assert stats(memlogd.query_path)["evict"] == "oldest"


def test_a_follower_that_lags_through_a_flood_is_told_exactly_what_it_missed(
    start_memlogd: StartMemlogd,
) -> None:
    memlogd = start_memlogd("-max-lines", "1000")
    follower = socket.socket(socket.AF_UNIX)
    follower.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    follower.connect(memlogd.query_path)
    follower.sendall(b'\x03{"dump":false,"follow":true}\n')
    follower.settimeout(DEADLINE_S)
    data = b""
    while b"\n" not in data:
        data += follower.recv(4096)
    start = json.loads(data.split(b"\n", 1)[0])["memlogd"]["next_seq"]
    data = data.split(b"\n", 1)[1]
    quiet(memlogd, "onboot", ["before 1", "before 2"])
    # far more than the socket buffers hold, while the follower reads nothing
    written = flood(memlogd, "spammer", 20000, width=300)
    quiet(memlogd, "onboot", ["after 1"])
    end = stats(memlogd.query_path)["next_seq"]

    got: list[dict[str, Any]] = []
    while not got or got[-1]["seq"] + got[-1].get("dropped", 1) < end:
        chunk = follower.recv(1 << 20)
        assert chunk, "the follower's connection ended"
        data += chunk
        *complete, data = data.split(b"\n")
        got += [json.loads(line) for line in complete]
    follower.close()
    seq = start
    for obj in got:
        assert obj["seq"] == seq
        seq += obj.get("dropped", 1)
    dropped = sum(obj.get("dropped", 0) for obj in got)
    assert dropped > 0, "the follower was expected to lose part of the flood"
    assert msgs(got, "onboot") == ["before 1", "before 2", "after 1"]  # never evicted
    flooded = msgs(got, "spammer")
    assert [w for w in written if w in set(flooded)] == flooded  # in order, once each
    assert len(flooded) + dropped == len(written)  # only the flood lost lines: told of each
    values = stats(memlogd.query_path)
    assert values["reader_dropped"] == dropped


def keeps_the_fair_ring(memlogd: MemlogdProcess, boot: list[str], event: str, starts: int) -> None:
    """After a worker restart or an upgrade: the same entries with the same seqs
    (but those the new worker's own line evicted), the same counts, holes told."""
    header, before = answer(memlogd.query_path)
    counts = stats(memlogd.query_path)
    old = counts["pid"]
    if event == "kill":
        wait_gone(kill_worker(memlogd))
    else:
        assert memlogd.proc is not None
        os.kill(memlogd.proc.pid, signal.SIGUSR2)
    values = wait_value(
        lambda: stats(memlogd.query_path),
        partial(upgraded, old, starts),
        DEADLINE_S,
        "the next worker",
    )
    after_header, after = answer(memlogd.query_path)
    assert after_header["instance"] == header["instance"]
    covers_every_seq_once(after_header, after, 1)
    assert msgs(after, "onboot") == boot
    held_before = {e["seq"]: e for e in before if "msg" in e}
    held_after = {e["seq"]: e for e in after if "msg" in e and e["seq"] < header["next_seq"]}
    assert [e for seq, e in held_after.items() if held_before[seq] != e] == []
    gone = [held_before[s]["source"] for s in held_before.keys() - held_after.keys()]
    assert set(gone) <= {"spammer"}  # room for the new worker's line: the flood's
    evicted = {n: s["evicted"] for n, s in values["sources"].items()}
    for name, source in counts["sources"].items():
        assert evicted.get(name, 0) == source["evicted"] + Counter(gone)[name], name
    assert values["overwritten"] == counts["overwritten"] + len(gone)


def test_a_worker_restart_and_an_upgrade_keep_the_fair_ring(start_memlogd: StartMemlogd) -> None:
    memlogd = start_memlogd("-max-lines", "1000")
    boot = [f"onboot {i}" for i in range(5)]
    quiet(memlogd, "onboot", boot)
    flood(memlogd, "spammer", 5000)
    keeps_the_fair_ring(memlogd, boot, "kill", 2)
    flood(memlogd, "spammer", 3000)
    keeps_the_fair_ring(memlogd, boot, "upgrade", 3)


def test_logwrite_writes_one_lost_line_per_answer_chunk_not_per_hole(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    """Between logwrite's runs the flood's oldest lines go, a hole between each
    two quiet lines: memlogd tells of each run, logwrite writes one lost line
    for the chunk, and every quiet line."""
    memlogd = start_memlogd("-max-lines", "200")
    logs = short_tmp / "logs"
    quiet(memlogd, "onboot", ["start"])
    assert Logwrite(short_tmp, memlogd.query_path, logs, "--once").run() == 0
    cursor = json.loads((logs / "logwrite.cursor").read_text())["seq"]
    for i in range(30):
        quiet(memlogd, "onboot", [f"step {i}"])
        flood(memlogd, "spammer", 20)
    header, lines = answer(memlogd.query_path, cursor)
    runs = [obj for obj in lines if "dropped" in obj]
    assert len(runs) > 5  # a hole between quiet lines
    assert Logwrite(short_tmp, memlogd.query_path, logs, "--once").run() == 0
    total = sum(run["dropped"] for run in runs)
    last = runs[-1]["seq"] + runs[-1]["dropped"] - 1
    assert logwrite_messages(logs / "logwrite.log") == [
        f"lost {total} entries (seq {runs[0]['seq']}-{last})"
    ]
    assert logwrite_messages(logs / "onboot.log") == ["start"] + [f"step {i}" for i in range(30)]
    assert header["next_seq"] - 1 == json.loads((logs / "logwrite.cursor").read_text())["seq"]
