"""Shared hypothesis strategies for the pure modules (protocol, framing, ring, fdmsg)."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from memlogd.wire.protocol import LogEntry, QueryRequest

# The times format_time can write: years 0001 .. 9999 (as Go's RFC3339Nano can).
MIN_TIME_NS = -62_135_596_800 * 1_000_000_000
MAX_TIME_NS = 253_402_300_799 * 1_000_000_000 + 999_999_999

# Pieces of byte streams that exercise line framing and UTF-8 cuts: line ends,
# CRs, multi-byte sequences of every length, and bytes that are never UTF-8.
STREAM_PIECES = (
    b"\n",
    b"\r",
    b"\r\n",
    b"a",
    b"xyz",
    b"\x00",
    b"\t",
    "é".encode(),
    "€".encode(),
    "𝄞".encode(),
    b"\xff",
    b"\x80",
    b"\xe2\x82",  # a truncated three-byte sequence
)


def times_ns() -> st.SearchStrategy[int]:
    """Any time format_time can write, with an interesting fraction now and then."""
    return st.one_of(
        st.integers(MIN_TIME_NS, MAX_TIME_NS),
        st.integers(0, 4_102_444_800).map(lambda s: s * 1_000_000_000),
        st.tuples(st.integers(0, 4_102_444_800), st.sampled_from([1, 10, 100_000_000])).map(
            lambda t: t[0] * 1_000_000_000 + t[1]
        ),
    )


def sources() -> st.SearchStrategy[str]:
    """Source names as memlogd keeps them (decoded text, never empty)."""
    return st.one_of(
        st.sampled_from(["docker", "docker.out", "kmsg", "memlogd", "a;b", "onboot.001-dhcpcd"]),
        st.text(min_size=1, max_size=30),
    )


def messages() -> st.SearchStrategy[str]:
    """Messages as memlogd keeps them: any text (control characters, NUL, U+FFFD ...)."""
    return st.one_of(
        st.text(max_size=60),
        st.text(st.characters(max_codepoint=0x7F), max_size=30),
        st.sampled_from(["", "level=debug", "\x00\x01\x1f\x7f", '"\\/', "\u2028\u2029", "\ufffd"]),
    )


def raw_lines() -> st.SearchStrategy[bytes]:
    """What a writer may put on one line: any bytes but a newline."""
    return st.one_of(
        st.binary(max_size=60),
        stream_bytes(),
        st.text(max_size=30).map(lambda t: t.encode("utf-8")),
    ).map(lambda b: b.replace(b"\n", b""))


def stream_bytes(max_pieces: int = 40) -> st.SearchStrategy[bytes]:
    """A byte stream rich in line ends, CRs and UTF-8 edge cases."""
    return st.one_of(
        st.lists(st.sampled_from(STREAM_PIECES), max_size=max_pieces).map(b"".join),
        st.binary(max_size=max_pieces * 2),
    )


def log_entries(seq: bool | None = None) -> st.SearchStrategy[LogEntry]:
    """Entries; ``seq`` True: always with a seq, False: never, None: either."""
    seqs: st.SearchStrategy[int | None]
    if seq is None:
        seqs = st.none() | st.integers(1, 2**63)
    elif seq:
        seqs = st.integers(1, 2**63)
    else:
        seqs = st.none()
    return st.builds(LogEntry, time_ns=times_ns(), source=sources(), msg=messages(), seq=seqs)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut into consecutive chunks (possibly empty ones) that join back to it."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def globs() -> st.SearchStrategy[str]:
    """Shell-style globs, heavy in the characters that mean something to fnmatch."""
    return st.text(st.sampled_from("ab-]![\\*?^&~|z."), max_size=14)


def query_requests() -> st.SearchStrategy[QueryRequest]:
    """Every extended request a client can send."""
    return st.builds(
        QueryRequest,
        dump=st.booleans(),
        follow=st.booleans(),
        sources=st.lists(st.one_of(globs(), st.text(max_size=10)), max_size=4).map(tuple),
        after_seq=st.none() | st.integers(0, 2**63),
        tail=st.none() | st.integers(0, 2**31),
        since_ns=st.none() | times_ns(),
        stats=st.booleans(),
        priority=st.none() | st.tuples(st.integers(0, 7), st.integers(0, 7)).map(sorted).map(tuple),
    )
