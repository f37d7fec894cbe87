"""logread.hints: the hint after '-- No entries --' when only GLOB.out exists."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.hints import stdout_hint

pytestmark = pytest.mark.unit


def test_one_glob() -> None:
    assert stdout_hint(["web"], ["kmsg", "web.out", "memlogd"]) == (
        "-s web matches no source, but web.out exists (a service's stdout): "
        "use -u web for both streams, or -s 'web*'"
    )


def test_several_globs_in_one_line_quoted_for_a_shell() -> None:
    assert stdout_hint(["web", "my app", "kmsg", "web"], ["web.out", "my app.out", "kmsg"]) == (
        "-s web, -s 'my app' match no source, but web.out, 'my app.out' exist "
        "(a service's stdout): use -u web -u 'my app' for both streams, "
        "or -s 'web*' -s 'my app*'"
    )


@pytest.mark.parametrize(
    ("globs", "sources"),
    [
        ([], ["web.out"]),  # no -s
        (["web"], ["web", "web.out"]),  # the glob matched
        (["web"], ["kmsg"]),  # nor does web.out exist
        (["w?b"], ["web"]),
        (["web*"], ["web.out"]),  # matches web.out itself
        (["web"], []),
    ],
)
def test_no_hint(globs: list[str], sources: list[str]) -> None:
    assert stdout_hint(globs, sources) is None


names = st.text("ab.out*?", max_size=6)


@given(st.lists(names, max_size=3), st.lists(names, max_size=4))
def test_a_hint_exactly_when_only_glob_out_matches(globs: list[str], sources: list[str]) -> None:
    def matches(glob: str) -> bool:
        return any(fnmatch.fnmatchcase(name, glob) for name in sources)

    missed = [g for g in globs if not matches(g) and matches(g + ".out")]
    hint = stdout_hint(globs, sources)
    assert (hint is None) == (not missed)
    if hint is not None:
        assert hint.count("-u ") == len(dict.fromkeys(missed))
