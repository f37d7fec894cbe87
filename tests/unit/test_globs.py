"""Source globs (memlogd.wire.globs): fnmatch's meaning, in linear time."""

from __future__ import annotations

import fnmatch
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.errors import ProtocolError
from memlogd.wire import protocol as proto
from memlogd.wire.globs import SourceMatcher, glob_regex
from tests.strategies import globs

pytestmark = pytest.mark.unit


@given(globs())
def test_glob_regex_is_fnmatch_translate(glob: str):
    assert glob_regex(glob) == fnmatch.translate(glob)


@given(
    st.lists(globs(), min_size=1, max_size=4), st.text(st.sampled_from("ab-]![\\^z."), max_size=8)
)
def test_matcher_is_fnmatchcase_of_any_glob(patterns: list[str], name: str):
    matches = SourceMatcher(patterns)
    expected = any(fnmatch.fnmatchcase(name, p) for p in patterns)
    assert matches(name) is expected
    assert matches(name) is expected  # the remembered answer


def test_matcher_examples():
    matches = SourceMatcher(["docker*", "kmsg"])
    assert [matches(s) for s in ("docker", "docker.out", "kmsg", "kmsg2")] == [
        True,
        True,
        True,
        False,
    ]
    assert SourceMatcher([])("anything")
    assert SourceMatcher([]).everything
    assert not SourceMatcher(["[z-a]"])("z")
    assert SourceMatcher(["[!z-a]"])("z")
    assert SourceMatcher(["a*b"])("a\nb")


ADVERSARIAL = ["[a", "[z-a-", "*a", "[!", "a*[", "[]-", "*?*?a"]


def _cost(glob: str) -> float:
    """CPU seconds of this process to translate, compile and match ``glob`` (the
    best of five: CPU time, not wall time, so that other processes on a busy
    machine do not count; the bound below leaves a factor of four)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        SourceMatcher([glob])("b" * 512)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_adversarial_globs_cost_grows_linearly(unit: str):
    """Inputs that made fnmatch.translate quadratic (about 40 s for 64 KiB).

    The bound does not depend on the machine's speed: sixteen times the glob
    may cost at most 64 times as much (linear work costs 16 times as much;
    quadratic work 256 times)."""
    small = unit * (2048 // len(unit))
    large = unit * (32768 // len(unit))
    ratio = _cost(large) / max(_cost(small), 1e-6)
    assert ratio < 64, f"{unit!r}: 16x the glob cost {ratio:.0f}x the time"


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_adversarial_globs_of_64_kib_are_refused_by_memlogd_and_linear_in_a_client(unit: str):
    glob = unit * ((proto.MAX_REQUEST_BYTES - 20) // len(unit))
    with pytest.raises(ProtocolError, match="holds a glob over 256 bytes"):  # SPEC 19
        proto.parse_request(json.dumps({"sources": [glob]}).encode())
    # a client's own glob (logread -s against upstream's memlogd): fnmatch itself
    # would take about a minute to say so
    assert SourceMatcher([glob])("b" * 512) is False
