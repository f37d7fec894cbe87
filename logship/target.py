"""Where logship sends the log: the ``--to URL`` option. PURE: no I/O.

docs/logship.md, "--to": ``relp://HOST:PORT`` (RELP, acknowledged) or
``tcp://HOST:PORT`` (RFC 5424 over TCP, octet-counted, best effort).  HOST is
a DNS name, an IPv4 address or an IPv6 address in brackets
(``relp://[::1]:2514``); the port is required.  Anything else is a
:class:`TargetError`, a usage error for the command line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from memlogd.errors import ProtocolError

Scheme = Literal["relp", "tcp"]
SCHEMES: tuple[Scheme, ...] = ("relp", "tcp")
_USAGE = "expected relp://HOST:PORT or tcp://HOST:PORT"

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_NUMERIC_RE = re.compile(r"[0-9.]+\Z")
_FORBIDDEN = frozenset("/?#@ \t\r\n\v\f")


class TargetError(ProtocolError, ValueError):
    """A ``--to`` URL logship cannot use; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Target:
    """A receiver: ``scheme`` is ``"relp"`` or ``"tcp"``; an IPv6 ``host`` has no brackets."""

    scheme: Scheme
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_target(url: str) -> Target:
    """``relp://HOST:PORT`` or ``tcp://HOST:PORT`` -> :class:`Target`."""
    scheme_text, sep, rest = url.partition("://")
    if not sep:
        raise TargetError(f"{url!r}: {_USAGE}")
    scheme = scheme_text.lower()
    if scheme not in SCHEMES:
        raise TargetError(f"{url!r}: unknown scheme {scheme_text!r} ({_USAGE})")
    if rest.endswith("/"):
        rest = rest[:-1]
    bad = sorted(_FORBIDDEN.intersection(rest))
    if bad:
        raise TargetError(f"{url!r}: unexpected {bad[0]!r}; {_USAGE}")
    host, port_text = _split_host_port(url, rest)
    return Target(scheme, host, _parse_port(url, port_text))


def _split_host_port(url: str, rest: str) -> tuple[str, str]:
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise TargetError(f"{url!r}: '[' without ']' around the IPv6 address")
        host, after = rest[1:close], rest[close + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"{url!r}: {host!r} is not an IPv6 address") from None
        if not after:
            raise TargetError(f"{url!r}: missing port ({_USAGE})")
        if not after.startswith(":"):
            raise TargetError(f"{url!r}: unexpected {after!r} after ']'")
        return host, after[1:]
    host, colon, port_text = rest.rpartition(":")
    if not colon:
        if not rest:
            raise TargetError(f"{url!r}: missing host and port ({_USAGE})")
        raise TargetError(f"{url!r}: missing port ({_USAGE})")
    if ":" in host:
        raise TargetError(f"{url!r}: an IPv6 address must be in brackets, e.g. relp://[::1]:2514")
    if not host:
        raise TargetError(f"{url!r}: missing host ({_USAGE})")
    if _NUMERIC_RE.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise TargetError(f"{url!r}: {host!r} is not an IPv4 address") from None
    elif len(host) > 253 or _HOSTNAME_RE.match(host) is None:
        raise TargetError(f"{url!r}: {host!r} is not a valid host name")
    return host, port_text


def _parse_port(url: str, text: str) -> int:
    if not text:
        raise TargetError(f"{url!r}: missing port ({_USAGE})")
    if not (text.isascii() and text.isdigit()):
        raise TargetError(f"{url!r}: port {text!r} is not a number")
    port = int(text) if len(text) <= 5 else 0
    if not 1 <= port <= 65535:
        raise TargetError(f"{url!r}: port {text} is outside 1-65535")
    return port
