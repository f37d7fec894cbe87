"""logread.losses: 'N entries lost (seq A-B)', at most one line per second, bursts summed."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.losses import Loss, LossReport

pytestmark = pytest.mark.unit


def test_line() -> None:
    assert Loss(14, 2, 15).line() == "14 entries lost (seq 2-15)"


def test_a_burst_is_summed_and_due_a_second_after_the_last_line() -> None:
    report = LossReport()
    assert report.deadline() is None
    assert report.gap(2, 14, now=100.0) == Loss(14, 2, 15)  # the first: at once
    assert report.deadline() is None
    assert report.gap(20, 5, now=100.2) is None  # held
    assert report.gap(30, 1, now=100.7) is None
    assert report.deadline() == 101.0
    assert report.due(100.99) is None
    assert report.due(101.0) == Loss(6, 20, 30)  # summed: 6 entries, seq 20 to 30
    assert report.deadline() is None
    assert report.due(105.0) is None  # nothing held
    assert report.gap(40, 2, now=101.5) is None  # within a second of the last line
    assert report.flush() == Loss(2, 40, 41)  # at exit, whatever the time
    assert report.flush() is None
    assert report.gap(50, 1, now=102.5) == Loss(1, 50, 50)  # a second after: at once


def test_a_gap_after_a_quiet_second_takes_the_held_ones_along() -> None:
    report = LossReport()
    assert report.gap(1, 1, now=0.0) == Loss(1, 1, 1)
    assert report.gap(5, 2, now=0.5) is None
    # the timer was late: the next gap comes first, and carries the held one
    assert report.gap(9, 1, now=3.0) == Loss(3, 5, 9)


def test_empty_gaps_are_ignored_and_the_period_is_positive() -> None:
    report = LossReport()
    assert report.gap(5, 0, now=0.0) is None
    assert report.deadline() is None
    with pytest.raises(ValueError, match="positive"):
        LossReport(0)


gaps = st.lists(
    st.tuples(
        st.floats(0, 3, allow_nan=False),  # time since the previous gap
        st.integers(1, 10**6),  # seq
        st.integers(1, 10**4),  # count
    ),
    max_size=40,
)


@given(gaps, st.sampled_from([0.5, 1.0, 2.0]))
def test_lines_are_a_period_apart_and_lose_nothing(
    events: list[tuple[float, int, int]], period: float
) -> None:
    """Driven as logread drives it: a timer calls due() at each deadline."""
    report = LossReport(period)
    lines: list[tuple[float, Loss]] = []
    held: list[tuple[int, int]] = []  # the gaps not reported yet: (seq, count)
    now = 0.0

    def out(at: float, loss: Loss | None) -> None:
        nonlocal held
        if loss is None:
            return
        # one line: exactly the gaps held so far, summed
        assert held, "a line without a gap"
        assert loss.count == sum(count for _, count in held)
        assert loss.first == min(seq for seq, _ in held)
        assert loss.last == max(seq + count - 1 for seq, count in held)
        lines.append((at, loss))
        held = []

    for delay, seq, count in events:
        now += delay
        while (deadline := report.deadline()) is not None and deadline <= now:
            out(deadline, report.due(deadline))  # the timer fires
        held.append((seq, count))
        quiet = not lines or now >= lines[-1][0] + period
        loss = report.gap(seq, count, now)
        assert (loss is not None) == quiet  # at once after a quiet period, else held
        out(now, loss)
        deadline = report.deadline()
        assert deadline is None or deadline == lines[-1][0] + period
    # at most one line per period (the flush at exit aside)
    times = [at for at, _ in lines]
    assert all(b >= a + period for a, b in itertools.pairwise(times))
    out(now, report.flush())
    assert not held
    assert sum(loss.count for _, loss in lines) == sum(count for _, _, count in events)


def test_a_gap_of_several_runs_says_its_last_missing_seq() -> None:
    """The runs of holes of one answer chunk come as one gap (the fair ring):
    its count is their total and its range ends at the last missing seq."""
    report = LossReport(1.0)
    assert report.gap(2, 6, 0.0, last=10) == Loss(6, 2, 10)
    assert report.gap(20, 2, 0.5) is None  # held: within the second
    assert report.gap(30, 1, 0.6, last=30) is None
    assert report.due(1.0) == Loss(3, 20, 30)
