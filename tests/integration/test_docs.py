"""Every option of every program is documented in its page under docs/ (README,
"The programs"): a flag added without a word in the docs fails here."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from kmsg.cli import main as kmsg_command
from logread.cli import command as logread_command
from logship.cli import command as logship_command
from logwrite.cli import main as logwrite_command
from memlogd.cli import build_command as memlogd_command
from memlogd.exec import main as exec_command

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"

PROGRAMS = [
    ("memlogd", memlogd_command(), "memlogd.md"),
    ("memlogd-exec", exec_command, "memlogd.md"),
    ("logread", logread_command, "logread.md"),
    ("logwrite", logwrite_command, "logwrite.md"),
    ("kmsg", kmsg_command, "kmsg.md"),
    ("logship", logship_command, "logship.md"),
]


def _long_names(command: click.Command) -> list[str]:
    """Each visible option's long name, without dashes (``max-lines``)."""
    names = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        longs = [o.lstrip("-") for o in param.opts if o.startswith("--")]
        longs += [o.lstrip("-") for o in param.opts if len(o) > 2 and not o.startswith("--")]
        if longs and longs[0] != "help":
            names.append(longs[0])
    return names


@pytest.mark.parametrize(("program", "command", "page"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_every_option_is_in_the_programs_page(
    program: str, command: click.Command, page: str
) -> None:
    text = (DOCS / page).read_text()
    names = _long_names(command)
    assert names, f"{program}: no options found (the probe is broken)"
    missing = [n for n in names if f"-{n}" not in text]
    assert missing == [], f"{program}: not in docs/{page}: {missing}"
