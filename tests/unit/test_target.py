"""logship.target: the ``--to URL`` option."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logship.target import SCHEMES, Target, TargetError, parse_target
from memlogd.errors import ProtocolError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("relp://localhost:2514", Target("relp", "localhost", 2514)),
        ("tcp://logs.example.org:514", Target("tcp", "logs.example.org", 514)),
        ("relp://127.0.0.1:1", Target("relp", "127.0.0.1", 1)),
        ("tcp://10.0.0.1:65535", Target("tcp", "10.0.0.1", 65535)),
        ("relp://[::1]:2514", Target("relp", "::1", 2514)),
        ("relp://[2001:db8::1]:20514", Target("relp", "2001:db8::1", 20514)),
        ("relp://[fe80::1%eth0]:514", Target("relp", "fe80::1%eth0", 514)),
        ("relp://[::ffff:1.2.3.4]:514", Target("relp", "::ffff:1.2.3.4", 514)),
        ("RELP://Host-1.example.:514", Target("relp", "Host-1.example.", 514)),
        ("Tcp://rsyslog_1:0514", Target("tcp", "rsyslog_1", 514)),
        ("relp://h:2514/", Target("relp", "h", 2514)),
    ],
)
def test_valid_urls(url: str, target: Target):
    assert parse_target(url) == target


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (Target("relp", "localhost", 2514), "relp://localhost:2514"),
        (Target("tcp", "::1", 514), "tcp://[::1]:514"),
        (Target("relp", "10.0.0.1", 1), "relp://10.0.0.1:1"),
    ],
)
def test_str_is_the_url(target: Target, text: str):
    assert str(target) == text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "expected relp://HOST:PORT or tcp://HOST:PORT"),
        ("localhost:514", "expected relp://HOST:PORT or tcp://HOST:PORT"),
        ("relp:/h:514", "expected relp://HOST:PORT or tcp://HOST:PORT"),
        ("udp://h:514", "unknown scheme 'udp'"),
        ("http://h:80", "unknown scheme 'http'"),
        ("://h:514", "unknown scheme ''"),
        ("relps://h:514", "unknown scheme 'relps'"),
        ("relp://", "missing host and port"),
        ("relp://h", "missing port"),
        ("relp://h:", "missing port"),
        ("relp://:514", "missing host"),
        ("relp://[::1]", "missing port"),
        ("relp://[::1]:", "missing port"),
        ("relp://h:0", "port 0 is outside 1-65535"),
        ("relp://h:65536", "port 65536 is outside 1-65535"),
        ("relp://h:" + "9" * 5000, "is outside 1-65535"),
        ("relp://h:-1", "port '-1' is not a number"),
        ("relp://h:+1", "port '+1' is not a number"),
        ("relp://h:5x", "port '5x' is not a number"),
        ("relp://h:٥١٤", "port '٥١٤' is not a number"),
        ("relp://::1:514", "IPv6 address must be in brackets"),
        ("relp://[::1:514", "'[' without ']'"),
        ("relp://[nope]:514", "'nope' is not an IPv6 address"),
        ("relp://[1.2.3.4]:514", "'1.2.3.4' is not an IPv6 address"),
        ("relp://[::1]x:514", "unexpected 'x:514' after ']'"),
        ("relp://1.2.3.256:514", "'1.2.3.256' is not an IPv4 address"),
        ("relp://1.2.3:514", "'1.2.3' is not an IPv4 address"),
        ("relp://h/path:514", "unexpected '/'"),
        ("relp://h:514/x", "unexpected '/'"),
        ("relp://user@h:514", "unexpected '@'"),
        ("relp://h:514?x=1", "unexpected '?'"),
        ("relp://h:514#f", "unexpected '#'"),
        ("relp://h :514", "unexpected ' '"),
        (" relp://h:514", "unknown scheme ' relp'"),
        ("relp://h:514\n", "unexpected '\\n'"),
        ("relp://-h:514", "'-h' is not a valid host name"),
        ("relp://h..x:514", "'h..x' is not a valid host name"),
        ("relp://héllo:514", "'héllo' is not a valid host name"),
        ("relp://" + "a" * 64 + ":514", "is not a valid host name"),
        ("relp://" + ("a" * 60 + ".") * 5 + ":514", "is not a valid host name"),
    ],
)
def test_invalid_urls(url: str, message: str):
    with pytest.raises(TargetError) as info:
        parse_target(url)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_target_error_is_a_protocol_and_value_error():
    assert issubclass(TargetError, ProtocolError)
    assert issubclass(TargetError, ValueError)


labels = st.from_regex(r"[A-Za-z_]([A-Za-z0-9_-]{0,20}[A-Za-z0-9_])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(st.sampled_from(SCHEMES), hosts, st.integers(1, 65535))
def test_round_trip(scheme: str, host: str, port: int):
    target = Target(scheme, host, port)  # type: ignore[arg-type]
    assert parse_target(str(target)) == target


@given(st.sampled_from(["relp", "tcp", "x"]), st.text(max_size=40))
def test_fuzz_only_target_error(scheme: str, rest: str):
    url = f"{scheme}://{rest}"
    try:
        target = parse_target(url)
    except TargetError as exc:
        assert "\n" not in str(exc)
        return
    assert target.scheme in SCHEMES
    assert 1 <= target.port <= 65535
    assert target.host
    if ":" in target.host:
        ipaddress.IPv6Address(target.host)


@given(st.text(max_size=40))
def test_fuzz_any_text(url: str):
    try:
        parse_target(url)
    except TargetError as exc:
        assert "\n" not in str(exc)
