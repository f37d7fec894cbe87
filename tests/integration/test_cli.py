"""memlogd's and memlogd-exec's command lines: the fast parser and click agree,
every long flag has its one-dash form, usage errors exit 2."""

from __future__ import annotations

import re
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from memlogd.cli import build_command
from memlogd.errors import ConfigError
from memlogd.exec import main as exec_main
from memlogd.flags import FLAGS, FlagError, daemon_config, parse, role_config
from memlogd.keeper.daemonize import child_argv
from tests.oneflags import one_dash_mismatches

pytestmark = pytest.mark.integration

UPSTREAM_FLAGS = [
    "socket-log",
    "socket-query",
    "fd-log",
    "fd-query",
    "max-lines",
    "max-line-len",
    "daemonize",
]
OUR_FLAGS = [
    "max-bytes",
    "max-sources",
    "max-clients",
    "socket-mode",
    "no-console",
    "ready-fd",
    "pid-file",
    "no-keeper",
    "log-format",
    "persist-dir",
    "persist-max-log-files",
    "persist-max-log-size",
    "persist-time-format",
    "persist-skip-source",
    "kmsg",
    "kmsg-path",
    "ship-to",
    "ship-window",
    "ship-hostname",
    "ship-sd-id",
    "ship-source",
    "state-dir",
]


def test_help_lists_every_flag_in_both_forms() -> None:
    result = CliRunner().invoke(build_command(), ["-help"])
    assert result.exit_code == 0
    for name in UPSTREAM_FLAGS + OUR_FLAGS:
        # the exact tokens, so that "--max-lines" does not stand for "-max-lines"
        assert re.search(rf"(?<![-\w])-{name}\b", result.output), f"-{name}"
        assert re.search(rf"(?<![-\w])--{name}\b", result.output), f"--{name}"
    assert "keeper-state" not in result.output and "unlink-inherited" not in result.output
    assert result.output.rstrip().endswith("losing nothing")  # examples end the help


def test_every_long_flag_means_the_same_with_one_dash() -> None:
    assert one_dash_mismatches(build_command()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-max-lines", "0"], "-max-lines must be at least 1"),
        (["-max-line-len", "-5"], "-max-line-len must be at least 1"),
        (["-max-bytes", "10"], "-max-bytes must be 0 or at least -max-line-len"),
        (["-max-clients", "0"], "-max-clients must be at least 1"),
        (["-socket-mode", "999"], "'999' is not an octal mode such as 0600"),
        (["-max-lines", "many"], "'many' is not a valid integer"),
        (["-bogus"], "No such option"),
        (["-max-line"], "No such option"),
        (["extra"], "Got unexpected extra argument"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(build_command(), args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    with pytest.raises((FlagError, ConfigError)):
        daemon_config(parse(args))  # the fast path refuses it too


def _word(flag: Any) -> st.SearchStrategy[list[str]]:
    dashes = st.sampled_from(["-", "--"])
    if flag.kind == "bool":
        return dashes.map(lambda d: [d + flag.name])
    if flag.kind == "choice":
        value = st.sampled_from([*flag.choices, "xml"])
    elif flag.kind in ("int", "octal"):
        value = st.sampled_from(["0", "7", "0600", "5000", "-3", "x", "1_0", " 8"])
    else:
        value = st.sampled_from(["/tmp/a", "", "-x", "a=b"])
    return st.tuples(dashes, value, st.booleans()).map(
        lambda t: [f"{t[0]}{flag.name}={t[1]}"] if t[2] else [t[0] + flag.name, t[1]]
    )


argvs = st.lists(
    st.one_of(
        *(_word(flag) for flag in FLAGS if not flag.hidden),
        st.sampled_from([["-bogus"], ["--"], ["x"], ["-max-line", "3"], ["-h"]]),
    ),
    max_size=5,
).map(lambda words: [w for group in words for w in group])


@given(argvs)
def test_the_fast_parser_means_what_click_means(argv: list[str]) -> None:
    """memlogd reads its flags without click (boot time); click, built from the
    same declarations, is the reference: same values, or both refuse."""
    command = build_command()
    try:
        ctx = command.make_context("memlogd", list(argv))
        reference: dict[str, Any] | None = dict(ctx.params)
        daemon_config(dict(ctx.params))  # what the command's callback checks
        role_config(dict(ctx.params))
    except (click.UsageError, click.exceptions.Exit, ConfigError):
        reference = None
    values: dict[str, Any] | None
    try:
        values = parse(argv)
        daemon_config(values)
        role_config(values)
    except (FlagError, ConfigError):
        values = None
    if reference is None or values is None:
        assert reference is None and values is None, (reference, values)
        return
    assert values == reference


def test_exec_needs_a_command() -> None:
    result = CliRunner().invoke(exec_main, ["-n", "x"])
    assert result.exit_code == 2
    assert "Missing argument 'COMMAND...'" in result.output


def test_daemonize_child_command_line_drops_daemonize() -> None:
    argv = child_argv(["-daemonize", "-max-lines", "10", "--daemonize=true", "-socket-log", "/l"])
    assert argv[3:] == [
        "-max-lines",
        "10",
        "-socket-log",
        "/l",
        "-fd-log",
        "3",
        "-fd-query",
        "4",
        "--ready-fd",
        "5",
        "--unlink-inherited",
    ]


@pytest.mark.parametrize(
    "module", ["memlogd", "logread", "logwrite", "kmsg", "logship", "memlogd.exec"]
)
def test_every_programs_help_ends_with_its_examples(module: str) -> None:
    """README: every -help ends with examples (SPEC 18: logwrite's and kmsg's began
    with them)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", module, "-help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.rstrip("\n")
    tail = text[text.rindex("\n  Examples:\n") :].splitlines()[2:]
    assert tail and all(line.startswith("    ") for line in tail), tail
    assert text.count("Examples:") == 1 and text.index("Options:") < text.index("Examples:")
