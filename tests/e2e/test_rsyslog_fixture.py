"""The rsyslog fixture itself: a hand-written RFC 5424 message in an RFC 6587
octet-counted frame over plain TCP arrives with every field exact; kill -9 and restart keep the
ports. No RELP here: the project's RELP client is tested against this fixture elsewhere."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.rsyslog import (  # noqa: F401 (fixtures)
    Record,
    Rsyslog,
    StartRsyslog,
    fixture_rsyslog,
    fixture_start_rsyslog,
    render_config,
    skip_unless_available,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0

# SD-PARAM value escapes as RFC 5424 says (\" \\ \]), then a space, non-ASCII, a tab and a newline.
SD = '[memlogd@32473 instance="i-1" seq="7" source="q\\"b\\\\s\\]e sp é☃\ttab\nnl"]'
# MSG: a UTF-8 BOM, then quotes, backslashes, brackets, a tab, non-ASCII and a control character.
MSG = '\ufeffhéllo "wörld" \\ ] [x] \tend\x01'
LINE = f"<14>1 2024-05-06T07:08:09.123456Z vm-1 my.app 42 ID7 {SD} {MSG}"


def send_octet_counted(port: int, *messages: bytes) -> None:
    """RFC 6587 octet counting: ``LEN SP MSG``, no trailer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(b"%d %s" % (len(msg), msg) for msg in messages))


def test_octet_counted_message_arrives_exactly(rsyslog: Rsyslog) -> None:
    send_octet_counted(rsyslog.tcp_port, LINE.encode())
    [record] = rsyslog.wait_records(1, TIMEOUT)
    assert record == Record(
        pri="14",
        severity="6",
        protocol_version="1",
        timestamp="2024-05-06T07:08:09.123456Z",
        hostname="vm-1",
        app_name="my.app",
        procid="42",
        msgid="ID7",
        structured_data=SD,  # escapes kept as sent, tab and newline verbatim
        msg=MSG,  # the BOM is kept, control characters arrive verbatim
        rawmsg=LINE,
        input="imtcp",
        fromhost_ip="127.0.0.1",
    )


def test_several_frames_on_one_connection_keep_order_and_edges(rsyslog: Rsyslog) -> None:
    bodies = [b"  two leading spaces", b"trailing LF\n", b"nul[\x00]", b"bad \xff utf-8", b""]
    head = b"<14>1 2024-05-06T07:08:09Z h a - - - "
    send_octet_counted(rsyslog.tcp_port, *(head + body for body in bodies))
    records = rsyslog.wait_records(len(bodies), TIMEOUT)
    got = [r["msg"].encode("utf-8", "surrogateescape") for r in records]
    assert got == [b"  two leading spaces", b"trailing LF\n", b"nul[#000]", b"bad \xff utf-8", b""]


def test_kill_and_restart_keep_the_ports(rsyslog: Rsyslog) -> None:
    ports = (rsyslog.relp_port, rsyslog.tcp_port)
    send_octet_counted(rsyslog.tcp_port, b"<14>1 2024-05-06T07:08:09Z h a - - - first")
    rsyslog.wait_records(1, TIMEOUT)

    rsyslog.kill()
    assert not rsyslog.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rsyslog.tcp_port), timeout=TIMEOUT).close()

    rsyslog.restart(TIMEOUT)
    assert (rsyslog.relp_port, rsyslog.tcp_port) == ports
    send_octet_counted(rsyslog.tcp_port, b"<14>1 2024-05-06T07:08:09Z h a - - - second")
    records = rsyslog.wait_records(2, TIMEOUT)
    assert [r["msg"] for r in records] == ["first", "second"]
    assert rsyslog.stop(TIMEOUT) == 0
    assert "exiting on signal 15" in rsyslog.internal_log()


def test_max_message_size_is_configurable(start_rsyslog: StartRsyslog) -> None:
    small = start_rsyslog(max_message_size=2048)
    assert 'maxMessageSize="2048"' in small.config_path.read_text()
    head = b"<14>1 2024-05-06T07:08:09Z h a - - - "
    send_octet_counted(small.tcp_port, head + b"y" * 1500, head + b"z" * 3000)
    records = small.wait_records(2, TIMEOUT)
    assert records[0]["msg"] == "y" * 1500
    assert len(records[1]["rawmsg"]) == 2048  # cut (the rest of the frame follows as junk)


def test_config_queue_is_the_rulesets_and_direct(rsyslog: Rsyslog) -> None:
    text = rsyslog.config_path.read_text()
    assert 'ruleset(name="memlogd_test_in" queue.type="Direct")' in text
    assert text.count('ruleset="memlogd_test_in"') == 2
    modules = [line for line in text.splitlines() if line.startswith("module(")]
    assert modules == ['module(load="imrelp")', 'module(load="imtcp")']  # no imuxsock, imklog
    assert "include(" not in text and "$IncludeConfig" not in text
    assert text == render_config(rsyslog.directory, rsyslog.relp_port, rsyslog.tcp_port)


def test_start_moves_to_other_ports_when_its_ports_are_taken(tmp_path: Path) -> None:
    exe = skip_unless_available()
    instance = Rsyslog(tmp_path, exe=exe)
    taken = (instance.relp_port, instance.tcp_port)
    squatters = [socket.create_server(("127.0.0.1", port)) for port in taken]
    try:
        with instance:
            assert {instance.relp_port, instance.tcp_port}.isdisjoint(taken)
            send_octet_counted(instance.tcp_port, b"<14>1 2024-05-06T07:08:09Z h a - - - moved")
            assert [r["msg"] for r in instance.wait_records(1, TIMEOUT)] == ["moved"]
        assert not instance.running
    finally:
        for sock in squatters:
            sock.close()
