"""memlogd's and memlogd-exec's command lines through click's CliRunner: usage errors exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from memlogd.cli import main as memlogd_main
from memlogd.daemonize import child_argv
from memlogd.exec import main as exec_main

pytestmark = pytest.mark.integration

UPSTREAM_FLAGS = [
    "-socket-log",
    "-socket-query",
    "-fd-log",
    "-fd-query",
    "-max-lines",
    "-max-line-len",
    "-daemonize",
]
OUR_FLAGS = [
    "-max-bytes",
    "-max-sources",
    "-max-clients",
    "-socket-mode",
    "--no-console",
    "--ready-fd",
]


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(memlogd_main, ["-help"])
    assert result.exit_code == 0
    for flag in UPSTREAM_FLAGS + OUR_FLAGS:
        assert flag in result.output


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
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(memlogd_main, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


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
