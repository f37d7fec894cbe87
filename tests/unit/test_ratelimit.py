"""memlogd.ratelimit: the one rate limiter, against a model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.ratelimit import RateLimiter

pytestmark = pytest.mark.unit

PERIOD = 10.0


@given(
    st.integers(1, 4),
    st.lists(st.tuples(st.sampled_from("ab"), st.floats(0, 5)), max_size=60),
)
def test_burst_per_kind_per_period_and_the_rest_counted(
    burst: int, events: list[tuple[str, float]]
) -> None:
    limiter = RateLimiter(PERIOD, burst=burst)
    now = 0.0
    start: dict[str, float] = {}  # the model: each kind's period and what it let through
    passed: dict[str, int] = {}
    held: dict[str, int] = {}
    for kind, step in events:
        now += step
        got = limiter.allow(kind, now)
        if kind not in start or now - start[kind] >= PERIOD:
            start[kind], passed[kind] = now, 1
            assert got == held.pop(kind, 0)
        elif passed[kind] < burst:
            passed[kind] += 1
            assert got == held.pop(kind, 0)
        else:
            assert got is None
            held[kind] = held.get(kind, 0) + 1
    later = now + PERIOD + 1  # (now + PERIOD - now may round below PERIOD)
    assert sorted(limiter.due(later)) == sorted(held.items())
    assert limiter.due(later) == []


def test_a_report_starts_a_period() -> None:
    limiter = RateLimiter(PERIOD)
    assert limiter.allow("x", 0.0) == 0
    assert limiter.allow("x", 1.0) is None
    assert limiter.due(5.0) == []
    assert limiter.due(10.0) == [("x", 1)]
    assert limiter.allow("x", 12.0) is None  # the report counted as the period's event
    assert limiter.allow("x", 20.0) == 1


def test_idle_kinds_are_forgotten() -> None:
    limiter = RateLimiter(PERIOD, burst=2)
    for i in range(100):
        limiter.allow(f"k{i}", 0.0)
    limiter.forget_idle(PERIOD)
    assert limiter.allow("k1", PERIOD) == 0
    assert limiter.allow("k1", PERIOD) == 0
    assert limiter.allow("k1", PERIOD) is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(1.0, burst=0)
