"""logread.cli's command line, parsed and checked in-process: the one-dash rule,
usage errors, and what each combination asks memlogd (docs/logread.md).  Nothing
is connected here; tests/e2e/test_logread*.py run the real program."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from logread.cli import Flags, build_options, command
from logread.program import Options, priority_here
from memlogd.wire import protocol as proto
from tests.oneflags import one_dash_mismatches

pytestmark = pytest.mark.unit

NOW = 1_764_000_000_123_456_789  # 2025-11-24T16:00:00.123456789Z
MIN = 60 * 10**9
ROOT = Path(__file__).resolve().parents[2]


def options(tty: bool = False, no_color: bool = False, **flags: Any) -> Options:
    return build_options(Flags(**flags), now_ns=NOW, tty=tty, no_color=no_color)


def parse(*args: str) -> dict[str, Any]:
    ctx = command.make_context("logread", list(args))
    return dict(ctx.params)


def test_every_long_option_works_with_one_dash() -> None:
    assert one_dash_mismatches(command) == []


@pytest.mark.parametrize(
    ("args", "key", "value"),
    [
        (["-stats"], "stats", True),
        (["-since", "10m"], "since", "10m"),
        (["-tail=5"], "tail", 5),
        (["-lines", "5"], "tail", 5),
        (["--lines=5"], "tail", 5),
        (["-n10"], "tail", 10),
        (["-list-sources"], "list_sources", True),
        (["-unit", "web"], "units", ("web",)),
        (["-g", "-error"], "grep", "-error"),
        (["-output=cat"], "output", "cat"),
        (["-p", "err"], "priority", "err"),
        (["-priority=3..5"], "priority", "3..5"),
        (["--follow"], "follow", True),  # journalctl's spelling of -f (SPEC 18)
        (["-follow"], "follow", True),
    ],
)
def test_one_dash_forms(args: list[str], key: str, value: object) -> None:
    assert parse(*args)[key] == value


@pytest.mark.parametrize("args", [["-stat"], ["-sx"], ["-fF"], ["-tai=5"], ["-since10m"]])
def test_one_dash_words_naming_no_option_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(click.UsageError):
        parse(*args)


@pytest.mark.parametrize(
    ("word", "suggested"),
    [("--folow", "'--color', '--follow'"), ("--retyr", "'--directory', '--retry'")],
)
def test_an_unknown_option_suggests_each_close_one_once(word: str, suggested: str) -> None:
    with pytest.raises(click.NoSuchOption) as info:
        parse(word)
    assert info.value.format_message() == (
        f"No such option '{word}'. (Did you mean one of: {suggested}?)"
    )


def test_help_ends_with_examples() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logread", "-help"],
        capture_output=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == b""
    lines = result.stdout.decode().rstrip("\n").split("\n")
    assert lines[-7:] == [
        "  Examples:",
        "    logread -F -u web                 # service web (stderr and stdout), then follow",
        "    logread -p err -n 20              # the last 20 errors (and worse)",
        "    logread -n 50 -g 'error|fail' -i  # the last 50 lines that mention an error",
        "    logread --since '10 min ago' -o json | jq .msg",
        "    logread -D /var/log -b -1 -n 100  # the last 100 lines of the boot before this one",
        "    logread -o json | python3 -m json.tool --json-lines   # JSON lines, indented",
    ]
    assert "json = JSON lines (one object per line" in " ".join(result.stdout.decode().split())
    for flag in ["-u, -unit, --unit NAME", "--until WHEN", "-r, -reverse", "--list-sources"]:
        assert flag in result.stdout.decode()


# ---------------------------------------------------------------------- what is asked


def test_a_plain_dump_is_upstreams_mode_0() -> None:
    opts = options()
    assert not opts.extended
    assert opts.request == proto.QueryRequest(dump=True, follow=False)
    assert (opts.action, opts.output, opts.two_phase, opts.local_tail) == (
        "entries",
        "short",
        False,
        None,
    )


@pytest.mark.parametrize(
    ("flags", "dump", "follow"),
    [({"follow": True}, False, True), ({"dump_follow": True}, True, True)],
)
def test_following_asks_the_extended_query(flags: dict[str, Any], dump: bool, follow: bool) -> None:
    opts = options(**flags)
    assert opts.extended
    assert opts.request == proto.QueryRequest(dump=dump, follow=follow)


def test_local_selections_keep_a_plain_dump_in_mode_0() -> None:
    """-g, --until, -r, -n with them, short-iso and cat: all done by logread."""
    opts = options(grep="x", until="1h", reverse=True, tail=5, output="short-iso")
    assert not opts.extended
    assert opts.request == proto.QueryRequest(dump=True, follow=False)
    assert opts.local_tail == 5
    assert opts.until_ns == NOW - 60 * MIN
    assert opts.grep == re.compile("x")


def test_units_and_sources_are_one_set_of_globs() -> None:
    opts = options(sources=("kmsg", "web"), units=("web", "db"))
    assert opts.request.sources == ("kmsg", "web", "web.out", "db", "db.out")
    assert opts.source_globs == ("kmsg", "web")
    assert opts.extended


def test_tail_goes_to_memlogd_unless_logread_selects() -> None:
    assert options(tail=5).request.tail == 5
    assert options(tail=5).local_tail is None
    both = options(tail=5, grep="x")
    assert (both.request.tail, both.local_tail) == (None, 5)


def test_tail_with_grep_while_following_is_two_phase() -> None:
    opts = options(follow=True, tail=3, grep="err", ignore_case=True)
    assert opts.two_phase
    assert opts.request == proto.QueryRequest(dump=True, follow=True)
    assert opts.grep == re.compile("err", re.IGNORECASE)
    assert not options(dump_follow=True, grep="x").two_phase  # no tail: one answer
    assert not options(follow=True, tail=3).two_phase  # memlogd keeps the tail


def test_since_and_until_are_journalctl_times() -> None:
    opts = options(since="5 min ago", until="now")
    assert (opts.request.since_ns, opts.until_ns) == (NOW - 5 * MIN, NOW)
    assert options(since="2025-11-24 10:00").request.since_ns == 1_763_978_400 * 10**9


@pytest.mark.parametrize(
    ("flags", "escape", "color"),
    [
        ({}, False, False),  # piped
        ({"tty": True}, True, True),
        ({"tty": True, "all": True}, False, True),
        ({"tty": True, "no_color": True}, True, False),
        ({"tty": True, "color": "never"}, True, False),
        ({"color": "always"}, False, True),
        ({"color": "always", "output": "short-iso"}, False, True),
        ({"color": "always", "output": "json"}, False, False),
        ({"tty": True, "output": "cat"}, True, False),
    ],
)
def test_terminal_escaping_and_colour(flags: dict[str, Any], escape: bool, color: bool) -> None:
    opts = options(**flags)
    assert (opts.escape, opts.color) == (escape, color)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"priority": "errors"}, "'errors' is not a priority: use 0-7 or a name"),
        ({"priority": ""}, "'' is not a priority"),
        ({"priority": "8"}, "'8' is not a priority"),
        ({"priority": "err..9"}, "'9' is not a priority"),
        ({"stats": True, "priority": "err"}, "--stats cannot be combined with -f"),
        ({"reverse": True, "follow": True}, "-r/--reverse shows a dump newest first"),
        ({"reverse": True, "dump_follow": True}, "-r/--reverse shows a dump newest first"),
        ({"stats": True, "follow": True}, "--stats cannot be combined with -f"),
        ({"stats": True, "units": ("x",)}, "--stats cannot be combined with -f"),
        ({"list_sources": True, "grep": "x"}, "--list-sources cannot be combined with -f"),
        ({"list_sources": True, "stats": True}, "--stats and --list-sources"),
        ({"ignore_case": True}, "-i/--ignore-case applies to -g/--grep"),
        ({"since": "now", "until": "1h"}, "--since is later than --until"),
        ({"grep": "(unclosed"}, "'(unclosed' is not a regular expression: missing ), "),
        ({"since": "5 minutes"}, "'5 minutes' is not a time"),
        ({"until": "soon"}, "'soon' is not a time"),
    ],
)
def test_usage_errors(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(click.UsageError) as info:
        options(**flags)
    assert message in info.value.format_message()


def test_stats_and_sources_actions() -> None:
    assert options(stats=True).action == "stats"
    assert options(list_sources=True, output="json").action == "sources"


# ---------------------------------------------------------------------- purity

PROBE = (
    "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[2:])))"
)


@pytest.mark.parametrize(
    "module", ["logread.render", "logread.selection", "logread.losses", "logread.hints"]
)
def test_logreads_pure_modules_import_no_io_framework(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module, "trio", "structlog", "click"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("err", (0, 3)),
        ("3", (0, 3)),
        ("ERROR", (0, 3)),
        ("warning", (0, 4)),
        ("debug", (0, 7)),
        ("emerg", (0, 0)),
        ("2..5", (2, 5)),
        ("notice..err", (3, 5)),
        ("info..info", (6, 6)),
    ],
)
def test_priority_is_asked_of_memlogd(value: str, wanted: tuple[int, int]) -> None:
    opts = options(priority=value)
    assert opts.request.priority == wanted
    assert opts.extended  # the extended query: memlogd selects before the tail
    assert opts.local_priority is None


def test_priority_with_tail_is_memlogds_tail() -> None:
    opts = options(priority="err", tail=20, follow=True)
    assert (opts.request.tail, opts.request.priority, opts.local_tail) == (20, (0, 3), None)
    assert not opts.two_phase


@pytest.mark.parametrize(
    ("flags", "local_tail", "two_phase"),
    [
        ({"tail": 20}, 20, False),
        ({"tail": 20, "follow": True}, 20, True),
        ({"tail": 5, "grep": "x", "dump_follow": True}, 5, True),
        ({"follow": True}, None, False),
        ({}, None, False),
    ],
)
def test_priority_here_for_a_memlogd_that_refused_it(
    flags: dict[str, Any], local_tail: int | None, two_phase: bool
) -> None:
    """An older memlogd refused the key: logread selects by priority, so it keeps
    the tail itself too (after selecting), as with -g."""
    opts = priority_here(options(priority="warning", **flags))
    assert opts.request.priority is None and opts.request.tail is None
    assert opts.local_priority == (0, 4)
    assert (opts.local_tail, opts.two_phase) == (local_tail, two_phase)
