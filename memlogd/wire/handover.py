"""What the keeper and its worker tell each other. PURE: no I/O.

docs/memlogd.md, "The keeper".  They share a ``SOCK_SEQPACKET`` socket pair;
each message is one packet: a kind byte, then fixed-size little-endian
fields and length-prefixed strings.  Fds travel beside a packet in
``SCM_RIGHTS`` (in the order of the entries that name them).

keeper -> worker:
  :class:`Sources`  a datagram's fds (they ride along), with the keys the
                    keeper keeps its own copies under
  :class:`Refused`  a datagram the keeper could not take (no fd, truncated)
  :class:`Stop`     stop: for good (``handover`` False) or for an upgrade
worker -> keeper:
  :class:`Ready`    serving
  :class:`Release`  these sources ended or were refused: close your copies
  :class:`HandedOver`  (upgrade) the partial lines are in the memfd that
                    rides along; the next worker can take over

The state of each source's line splitter, handed from one worker to the
next at an upgrade, is encoded by :func:`encode_partials`.  What a worker
inherits at its fork, before any packet, is a :class:`WorkerStart`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from memlogd.errors import ProtocolError

MAX_PACKET = 64 * 1024  # bytes of a packet received at most (ours are far smaller)

_U16 = struct.Struct("<H")
_KEY = struct.Struct("<Q")
_SOURCES = struct.Struct("<iiH")  # pid, uid, name length
_REFUSED = struct.Struct("<iiIH")  # pid, uid, fds, name length
_PARTIAL = struct.Struct("<QBII")  # key, flags, truncated, partial length
_NONE = -1  # pid or uid not known


class Kind(IntEnum):
    SOURCES = 1
    REFUSED = 2
    STOP = 3
    READY = 4
    RELEASE = 5
    HANDED_OVER = 6


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A source as the keeper holds it: its fd's key, name and registrant."""

    key: int
    name: str
    pid: int | None = None
    uid: int | None = None


@dataclass(frozen=True, slots=True)
class Sources:
    """The fds of one datagram (in ``SCM_RIGHTS``), by the keys of the keeper's copies."""

    name: str
    pid: int | None
    uid: int | None
    keys: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    name: str
    pid: int | None
    uid: int | None
    fds: int
    problem: str


@dataclass(frozen=True, slots=True)
class Stop:
    handover: bool  # for an upgrade: the next worker takes over
    signal: int = 0  # the signal that made the keeper stop (0: none)


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Release:
    keys: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class HandedOver:
    pass


Message = Sources | Refused | Stop | Ready | Release | HandedOver


def _opt(value: int | None) -> int:
    return _NONE if value is None else value


def _unopt(value: int) -> int | None:
    return None if value == _NONE else value


def _text(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def encode(message: Message) -> bytes:
    """One packet (at most a few KiB: a name and the keys of at most 253 fds)."""
    if isinstance(message, Sources):
        name = _text(message.name)
        head = _SOURCES.pack(_opt(message.pid), _opt(message.uid), len(name))
        keys = b"".join(_KEY.pack(k) for k in message.keys)
        return bytes([Kind.SOURCES]) + head + name + keys
    if isinstance(message, Refused):
        name, problem = _text(message.name), _text(message.problem)
        head = _REFUSED.pack(_opt(message.pid), _opt(message.uid), message.fds, len(name))
        return bytes([Kind.REFUSED]) + head + name + problem
    if isinstance(message, Stop):
        return bytes([Kind.STOP, int(message.handover), message.signal])
    if isinstance(message, Release):
        return bytes([Kind.RELEASE]) + b"".join(_KEY.pack(k) for k in message.keys)
    if isinstance(message, Ready):
        return bytes([Kind.READY])
    return bytes([Kind.HANDED_OVER])


def decode(packet: bytes) -> Message:
    """The message in one packet; ProtocolError if it is not one."""
    try:
        return _decode(packet)
    except (struct.error, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed keeper message: {exc}") from None


def _decode(packet: bytes) -> Message:
    kind, body = Kind(packet[0]), packet[1:]
    if kind is Kind.SOURCES:
        pid, uid, length = _SOURCES.unpack_from(body)
        at = _SOURCES.size + length
        raw, keys = body[_SOURCES.size : at], body[at:]
        if len(raw) != length or len(keys) % _KEY.size or not keys:
            raise ValueError("a sources message is a name and keys")
        name = raw.decode("utf-8", "replace")
        return Sources(name, _unopt(pid), _unopt(uid), tuple(k for (k,) in _KEY.iter_unpack(keys)))
    if kind is Kind.REFUSED:
        pid, uid, fds, length = _REFUSED.unpack_from(body)
        raw = body[_REFUSED.size : _REFUSED.size + length]
        problem = body[_REFUSED.size + length :]
        if len(raw) != length:
            raise ValueError("name cut short")
        return Refused(
            raw.decode("utf-8", "replace"),
            _unopt(pid),
            _unopt(uid),
            fds,
            problem.decode("utf-8", "replace"),
        )
    if kind is Kind.STOP:
        if len(body) != 2:
            raise ValueError("a stop is two bytes")
        return Stop(bool(body[0]), body[1])
    if kind is Kind.RELEASE:
        if len(body) % _KEY.size:
            raise ValueError("keys are 8 bytes each")
        return Release(tuple(k for (k,) in _KEY.iter_unpack(body)))
    if body:
        raise ValueError(f"{kind.name} has no body")
    return Ready() if kind is Kind.READY else HandedOver()


# ---------------------------------------------------------------------- partial lines


@dataclass(frozen=True, slots=True)
class Partial:
    """A source's line splitter between two workers (memlogd.daemon.framing)."""

    key: int
    partial: bytes  # the start of a line whose end has not arrived
    discarding: bool  # inside the rest of a line that was cut
    maybe_crlf: bool
    truncated: int  # lines cut so far


def encode_partials(partials: Iterable[Partial]) -> bytes:
    out = []
    for p in partials:
        flags = int(p.discarding) | int(p.maybe_crlf) << 1
        out.append(_PARTIAL.pack(p.key, flags, p.truncated, len(p.partial)) + p.partial)
    return b"".join(out)


def decode_partials(data: bytes) -> dict[int, Partial]:
    out: dict[int, Partial] = {}
    at = 0
    try:
        while at < len(data):
            key, flags, truncated, length = _PARTIAL.unpack_from(data, at)
            at += _PARTIAL.size
            partial = data[at : at + length]
            if len(partial) != length:
                raise ValueError("partial line cut short")
            at += length
            out[key] = Partial(key, partial, bool(flags & 1), bool(flags & 2), truncated)
    except (struct.error, ValueError) as exc:
        raise ProtocolError(f"malformed partial lines: {exc}") from None
    return out


# ---------------------------------------------------------------------- at the fork


@dataclass(frozen=True, slots=True)
class WorkerStart:
    """What a worker gets from its keeper when it is forked (before any packet):
    the fds it inherits and what it knows of the keeper."""

    query_fd: int
    journal_fd: int
    control_fd: int  # the worker's end of the socket pair these packets travel on
    sources: tuple[tuple[SourceSpec, int], ...]  # with the worker's copy of each fd
    partials_fd: int | None  # the partial lines an upgraded worker handed over
    keeper_pid: int
    worker_starts: int  # this worker's number: 1 + the restarts before it
    previous: str | None  # how the worker before this one ended, when it crashed
    oom_score: str | None  # the OOM score the keeper had before it lowered its own
