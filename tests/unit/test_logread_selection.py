"""logread.selection: -u as globs; -g, --until, a tail kept by logread and -r, batch by batch."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.selection import Selector, select, unit_globs
from memlogd.wire import protocol as proto

pytestmark = pytest.mark.unit


def entry(time_ns: int, msg: str, seq: int = 0) -> proto.LogEntry:
    return proto.LogEntry(time_ns, "svc", msg, seq or None)


RING = [
    entry(10, "start", 1),
    entry(20, "error: disk", 2),
    entry(20, "ok", 3),
    entry(30, "ERROR: net", 4),
    entry(40, "error again", 5),
    entry(50, "late error", 6),
]
ERROR = re.compile("error")


def msgs(entries: list[proto.LogEntry]) -> list[str]:
    return [e.msg for e in entries]


# ---------------------------------------------------------------------- -u


@pytest.mark.parametrize(
    ("units", "globs"),
    [
        ((), ()),
        (("web",), ("web", "web.out")),
        (("web", "db"), ("web", "web.out", "db", "db.out")),
        (("web", "web"), ("web", "web.out")),
        (("web*",), ("web*", "web*.out")),
        (("nginx.service",), ("nginx.service", "nginx.service.out", "nginx", "nginx.out")),
        ((".service",), (".service", ".service.out")),
    ],
)
def test_unit_globs(units: tuple[str, ...], globs: tuple[str, ...]) -> None:
    assert unit_globs(units) == globs


# ---------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["start", "error: disk", "ok", "ERROR: net", "error again", "late error"]),
        ({"grep": ERROR}, ["error: disk", "error again", "late error"]),
        (
            {"grep": re.compile("error", re.IGNORECASE)},
            ["error: disk", "ERROR: net", "error again", "late error"],
        ),
        ({"grep": re.compile("^error")}, ["error: disk", "error again"]),
        ({"until_ns": 20}, ["start", "error: disk", "ok"]),
        ({"until_ns": 9}, []),
        ({"tail": 2}, ["error again", "late error"]),
        ({"tail": 0}, []),
        ({"tail": 100}, ["start", "error: disk", "ok", "ERROR: net", "error again", "late error"]),
        # more than there is, but less than twice as many: all (a negative slice start
        # would give the last 6 - 7 = -1, i.e. one entry)
        ({"tail": 7}, ["start", "error: disk", "ok", "ERROR: net", "error again", "late error"]),
        ({"grep": ERROR, "tail": 4}, ["error: disk", "error again", "late error"]),
        ({"grep": ERROR, "tail": 2}, ["error again", "late error"]),  # the last 2 shown
        ({"grep": ERROR, "until_ns": 45, "tail": 1}, ["error again"]),
        ({"reverse": True, "tail": 3}, ["late error", "error again", "ERROR: net"]),
        ({"reverse": True, "grep": ERROR, "until_ns": 40}, ["error again", "error: disk"]),
    ],
)
def test_select(kwargs: dict[str, object], expected: list[str]) -> None:
    assert msgs(select(RING, **kwargs)) == expected  # type: ignore[arg-type]


def test_until_ends_at_the_first_later_entry() -> None:
    """As journalctl: an entry later than --until ends the output, even if older
    ones follow (the clock was set back)."""
    ring = [entry(10, "a"), entry(30, "b"), entry(20, "c")]
    assert msgs(select(ring, until_ns=25)) == ["a"]
    selector = Selector(until_ns=25)
    assert msgs(list(selector.feed(ring[:1]))) == ["a"]
    assert not selector.done
    assert list(selector.feed(ring[1:])) == [] and selector.done
    assert list(selector.feed([entry(1, "d")])) == []


def test_selector_streams_when_nothing_is_kept() -> None:
    selector = Selector()
    assert selector.everything
    batch = RING[:3]
    assert selector.feed(batch) is batch  # no copy on the hot path
    assert selector.shown == 3
    assert selector.finish() == []


def test_selector_holds_a_tail_until_the_end() -> None:
    selector = Selector(grep=ERROR, tail=2)
    assert not selector.everything
    assert list(selector.feed(RING[:4])) == []
    assert list(selector.feed(RING[4:])) == []
    assert selector.shown == 0
    assert msgs(selector.finish()) == ["error again", "late error"]
    assert selector.shown == 2
    assert selector.finish() == []


def test_priority_is_selected_before_the_tail() -> None:
    ring = [
        entry(i, msg) for i, msg in enumerate(["<3>a", "b", "<3>c", "level=warn d", "e", "<7>f"], 1)
    ]
    assert msgs(select(ring, priority=(0, 3), tail=1)) == ["<3>c"]
    assert msgs(select(ring, priority=(0, 4), tail=2)) == ["<3>c", "level=warn d"]
    assert msgs(select(ring, priority=(6, 6))) == ["b", "e"]  # no level: info
    selector = Selector(priority=(0, 3), tail=1)
    assert list(selector.feed(ring[:3])) == [] and list(selector.feed(ring[3:])) == []
    assert msgs(selector.finish()) == ["<3>c"]
    assert not Selector(priority=(0, 7)).everything


def test_negative_tail_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Selector(tail=-1)


# ---------------------------------------------------------------------- properties

WORDS = ["a", "b", "ab", "err", "ERR", "", "<3>err", "<4>a", "level=debug b"]
entries = st.lists(st.builds(entry, st.integers(0, 50), st.sampled_from(WORDS)), max_size=30).map(
    lambda ring: [e._replace(seq=i) for i, e in enumerate(ring, 1)]
)  # seq as in a ring
patterns = st.one_of(
    st.none(), st.sampled_from([re.compile("a"), re.compile("^err$", re.I), re.compile("")])
)
maybe = st.one_of(st.none(), st.integers(0, 50))


@given(
    ring=entries,
    grep=patterns,
    until_ns=maybe,
    tail=st.one_of(st.none(), st.integers(0, 35)),
    reverse=st.booleans(),
    cuts=st.lists(st.integers(0, 30), max_size=6),
    priority=st.none() | st.sampled_from([(0, 3), (4, 6), (0, 7), (7, 7)]),
)
def test_selector_in_any_batches_is_the_model(
    ring: list[proto.LogEntry],
    grep: re.Pattern[str] | None,
    until_ns: int | None,
    tail: int | None,
    reverse: bool,
    cuts: list[int],
    priority: tuple[int, int] | None,
) -> None:
    selector = Selector(grep=grep, until_ns=until_ns, tail=tail, reverse=reverse, priority=priority)
    bounds = [0, *sorted(c for c in cuts if c <= len(ring)), len(ring)]
    shown: list[proto.LogEntry] = []
    for lo, hi in itertools.pairwise(bounds):
        now = list(selector.feed(ring[lo:hi]))
        if tail is not None or reverse:
            assert now == []  # nothing before the end of the dump
        shown += now
    shown += selector.finish()
    expected = select(
        ring, grep=grep, until_ns=until_ns, tail=tail, reverse=reverse, priority=priority
    )
    assert shown == expected
    assert selector.shown == len(expected)
    assert selector.done == any(until_ns is not None and e.time_ns > until_ns for e in ring)


@given(ring=entries, grep=patterns, until_ns=maybe, tail=st.one_of(st.none(), st.integers(0, 35)))
def test_select_is_the_last_n_of_what_is_shown(
    ring: list[proto.LogEntry],
    grep: re.Pattern[str] | None,
    until_ns: int | None,
    tail: int | None,
) -> None:
    everything = select(ring, grep=grep, until_ns=until_ns)
    # what is shown: matches the regex, is not later than --until, keeps ring order
    for e in everything:
        assert grep is None or grep.search(e.msg)
        assert until_ns is None or e.time_ns <= until_ns
    assert [e.seq for e in everything] == sorted(e.seq for e in everything if e.seq)
    last = select(ring, grep=grep, until_ns=until_ns, tail=tail)
    if tail is None:
        assert last == everything
    else:
        assert len(last) == min(tail, len(everything))
        assert last == everything[len(everything) - len(last) :]
    assert select(ring, grep=grep, until_ns=until_ns, tail=tail, reverse=True) == last[::-1]
