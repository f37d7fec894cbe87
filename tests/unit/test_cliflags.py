"""memlogd.cliflags: one-dash long options that are never split."""

from __future__ import annotations

import json
import string
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from memlogd.cliflags import (
    HELP_OPTION_NAMES,
    BareValueOption,
    GoCommand,
    GoOption,
    check_one_dash,
    go_command,
    go_option,
    one_dash_names,
)
from tests.oneflags import one_dash_mismatches

pytestmark = pytest.mark.unit


@go_command("toy")
@go_option("-s", "--source", "sources", multiple=True, metavar="GLOB", help="Sources.")
@go_option("-n", "--tail", type=click.IntRange(min=0), default=None, help="Last N.")
@click.option("-f", "follow_now", is_flag=True, help="Follow.")
@click.option("-F", "dump_follow", is_flag=True, help="Dump, then follow.")
@go_option("--stats", is_flag=True, help="Statistics.")
@go_option("--since", metavar="WHEN", help="From WHEN on.")
@go_option("-g", "--grep", help="Messages matching this.")
@go_option("-o", "--output", type=click.Choice(["short", "json"]), default="short")
@go_option("--follow/--no-follow", default=None, help="Follow (or not).")
@click.argument("rest", nargs=-1)
def toy(**params: Any) -> None:
    """A command shaped like logread."""
    click.echo(json.dumps(params, sort_keys=True))


class ExecCommand(GoCommand):
    allow_interspersed_args = False


@go_command("toy-exec", cls=ExecCommand)
@go_option("-socket", "--socket", default="/run/x.sock")
@go_option("-n", "--name", default=None)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def toy_exec(**params: Any) -> None:
    """A command shaped like memlogd-exec."""
    click.echo(json.dumps(params, sort_keys=True))


DEFAULTS: dict[str, Any] = {
    "sources": [],
    "tail": None,
    "follow_now": False,
    "dump_follow": False,
    "stats": False,
    "since": None,
    "grep": None,
    "output": "short",
    "follow": None,
    "rest": [],
}


def run(command: click.Command, *args: str) -> click.testing.Result:
    return CliRunner().invoke(command, list(args), prog_name=command.name)


def params(*args: str) -> dict[str, Any]:
    """What toy was called with; fails the test unless it ran."""
    result = run(toy, *args)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.output)
    return parsed


def with_defaults(**changes: Any) -> dict[str, Any]:
    return {**DEFAULTS, **changes}


def usage_error(command: click.Command, *args: str) -> str:
    result = run(command, *args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


# ---------------------------------------------------------------------- one dash


@pytest.mark.parametrize(
    ("args", "changes"),
    [
        ((), {}),
        (("-stats",), {"stats": True}),
        (("--stats",), {"stats": True}),
        (("-n10",), {"tail": 10}),
        (("-n", "10"), {"tail": 10}),
        (("-tail=5",), {"tail": 5}),
        (("-tail", "5"), {"tail": 5}),
        (("--tail=5",), {"tail": 5}),
        (("-n=5",), {"tail": 5}),  # as Go reads it; click alone would say "=5"
        (("-since", "10m"), {"since": "10m"}),
        (("-since=10m",), {"since": "10m"}),
        (("-g", "-error"), {"grep": "-error"}),
        (("-grep", "-stat"), {"grep": "-stat"}),
        (("--grep=-x",), {"grep": "-x"}),
        (("-grep=-x",), {"grep": "-x"}),
        (("-g=-x",), {"grep": "-x"}),
        (("-g=",), {"grep": ""}),
        (("-g", "--"), {"grep": "--"}),
        (("-g", "a=b"), {"grep": "a=b"}),
        (("-g=a=b",), {"grep": "a=b"}),
        (("-s", "a", "-source", "b", "--source", "c", "-source=d"), {"sources": list("abcd")}),
        (("-f", "-F"), {"follow_now": True, "dump_follow": True}),
        (("-follow",), {"follow": True}),
        (("-no-follow",), {"follow": False}),
        (("--no-follow",), {"follow": False}),
        (("-follow", "-no-follow"), {"follow": False}),
        (("-o", "json"), {"output": "json"}),
        (("-output=json",), {"output": "json"}),
        (("--", "-stats"), {"rest": ["-stats"]}),
        (("x", "-stats", "y"), {"stats": True, "rest": ["x", "y"]}),
        (("-", "-stats"), {"stats": True, "rest": ["-"]}),
        (("-stats", "--", "-stat", "-fF"), {"stats": True, "rest": ["-stat", "-fF"]}),
    ],
)
def test_accepted(args: tuple[str, ...], changes: dict[str, Any]) -> None:
    assert params(*args) == with_defaults(**changes)


@pytest.mark.parametrize(
    "args",
    [
        ("-stat",),
        ("-sta",),
        ("-sx",),
        ("-sinc",),
        ("-sinc", "10m"),
        ("-tai=5",),
        ("-fF",),
        ("-Ff",),
        ("-ff",),
        ("-stat=1",),
        ("-n1x",),
        ("-nx",),
        ("-n-1",),
        ("x", "-stat"),
        ("-g", "x", "-stat"),
        ("-stats=1",),  # a flag takes no value
        ("-f=1",),
        ("--stat",),
        ("-x",),
        ("-tail",),  # a value is required
    ],
)
def test_usage_errors(args: tuple[str, ...]) -> None:
    usage_error(toy, *args)


def test_unknown_one_dash_word_reads_as_clicks_own_error() -> None:
    output = usage_error(toy, "-stat")
    assert "No such option" in output
    assert "-stat" in output
    assert "'-stats'" in output  # click's "Did you mean"
    assert "Usage: toy" in output


def test_combined_flags_name_the_whole_word() -> None:
    output = usage_error(toy, "-fF")
    assert "-fF" in output


def test_short_flag_with_a_value_is_refused_as_click_refuses_a_long_one() -> None:
    assert "does not take a value" in usage_error(toy, "-f=1")
    assert "does not take a value" in usage_error(toy, "-stats=1")


@pytest.mark.parametrize("flag", ["-help", "--help", "-h"])
def test_help(flag: str) -> None:
    result = run(toy, flag)
    assert result.exit_code == 0
    assert "A command shaped like logread." in result.output
    assert "-s, -source, --source GLOB" in result.output
    assert "-h, -help, --help" in result.output


def test_help_option_names_default_and_follow_the_rule() -> None:
    assert HELP_OPTION_NAMES == ("-h", "-help", "--help")
    ctx = toy.make_context("toy", [])
    assert toy.get_help_option_names(ctx) == ["-h", "-help", "--help"]

    @go_command("given", context_settings={"help_option_names": ["--help"]})
    def given_names() -> None:
        pass

    ctx = given_names.make_context("given", [])
    assert given_names.get_help_option_names(ctx) == ["-help", "--help"]
    assert run(given_names, "-help").exit_code == 0
    assert run(given_names, "-h").exit_code == 2


def test_shared_context_settings_are_not_changed() -> None:
    settings: dict[str, Any] = {}
    GoCommand("a", context_settings=settings)
    assert settings == {}


# ---------------------------------------------------------------------- memlogd-exec's shape


def test_exec_stops_at_the_command() -> None:
    result = run(toy_exec, "-n", "x", "sh", "-c", "echo")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "command": ["sh", "-c", "echo"],
        "name": "x",
        "socket": "/run/x.sock",
    }


def test_exec_passes_one_dash_words_of_the_command_unchecked() -> None:
    result = run(toy_exec, "-name=x", "-socket", "/s", "prog", "-stat", "-fF", "--nope")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["command"] == ["prog", "-stat", "-fF", "--nope"]


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_exec_help(flag: str) -> None:
    result = run(toy_exec, flag, "sh")
    assert result.exit_code == 0
    assert "A command shaped like memlogd-exec." in result.output


def test_exec_checks_its_own_options() -> None:
    assert "-nam" in usage_error(toy_exec, "-nam", "x", "sh")
    usage_error(toy_exec, "-sock", "/s", "sh")


# ---------------------------------------------------------------------- check_one_dash


def toy_context(**settings: Any) -> click.Context:
    """A context as make_context makes it (click caches the help option of the first)."""
    return click.Context(toy, info_name="toy", **{**toy.context_settings, **settings})


def test_check_returns_the_words_for_click() -> None:
    ctx = toy_context()
    words = ["-stats", "-n=5", "-g=-x", "-g=", "-tail=3", "x", "--", "-n=5"]
    assert check_one_dash(toy, ctx, words) == [
        "-stats",
        "-n5",
        "-g-x",
        "-g",
        "",
        "-tail=3",
        "x",
        "--",
        "-n=5",
    ]


def test_check_raises_clicks_exceptions() -> None:
    with pytest.raises(click.NoSuchOption) as info:
        check_one_dash(toy, toy_context(), ["-stat"])
    assert info.value.option_name == "-stat"
    assert info.value.exit_code == 2
    with pytest.raises(click.BadOptionUsage):
        check_one_dash(toy, toy_context(), ["-F=yes"])


def test_check_leaves_unknown_long_and_short_options_to_click() -> None:
    assert check_one_dash(toy, toy_context(), ["--stat", "-stat"]) == ["--stat", "-stat"]
    assert check_one_dash(toy, toy_context(), ["-x", "-stat"]) == ["-x", "-stat"]
    assert "No such option" in usage_error(toy, "--stat")


def test_ignore_unknown_options_passes_unknown_words_on_and_goes_on_checking() -> None:
    ctx = toy.make_context(
        "toy", ["--nope", "-x", "-stats"], ignore_unknown_options=True, allow_extra_args=True
    )
    assert ctx.params["stats"] is True
    assert ctx.params["rest"] == ("--nope", "-x")
    with pytest.raises(click.NoSuchOption):  # still never split
        toy.make_context("toy", ["--nope", "-stat"], ignore_unknown_options=True)


def test_resilient_parsing_does_not_raise() -> None:
    ctx = toy.make_context("toy", ["-stat"], resilient_parsing=True)
    assert ctx.params["stats"] is False


def test_token_normalize_func_is_honoured() -> None:
    ctx = toy.make_context("toy", ["-STATS", "-TAIL=4"], token_normalize_func=str.lower)
    assert ctx.params["stats"] is True
    assert ctx.params["tail"] == 4
    with pytest.raises(click.NoSuchOption):
        toy.make_context("toy", ["-STAT"], token_normalize_func=str.lower)


def test_optional_value_option() -> None:
    """An option whose value may be left out: a following option-like word is not it."""

    @go_command("opt")
    @go_option("--level", is_flag=False, flag_value="info", default="warning")
    @go_option("-s", "--source", "sources", multiple=True)
    def opt(**params: Any) -> None:
        click.echo(json.dumps(params, sort_keys=True))

    assert json.loads(run(opt, "-level", "-source", "a").output) == {
        "level": "info",
        "sources": ["a"],
    }
    assert json.loads(run(opt, "-level", "debug").output)["level"] == "debug"
    usage_error(opt, "-level", "-sourc")  # click would read -s ourc


def test_bare_value_option_takes_negative_numbers_and_fills_in_its_bare_value() -> None:
    """journalctl's ``-b [OFFSET]``: ``-b`` alone is ``-b 0``; ``-b -1`` is -1."""

    @go_command("boots")
    @go_option("-b", "--boot", cls=BareValueOption, bare_value="0", default=None)
    @go_option("-n", "--tail", type=int, default=None)
    @go_option("-f", "follow", is_flag=True)
    def boots(**params: Any) -> None:
        click.echo(json.dumps(params, sort_keys=True))

    def parsed(*args: str) -> dict[str, Any]:
        result = run(boots, *args)
        assert result.exit_code == 0, result.output
        value: dict[str, Any] = json.loads(result.output)
        return value

    for args in (["-b", "-1"], ["-b=-1"], ["--boot", "-1"], ["--boot=-1"], ["-boot", "-1"]):
        assert parsed(*args)["boot"] == "-1", args
    for args in (["-b"], ["--boot"], ["-b", "-n", "3"], ["-b", "-f"]):
        assert parsed(*args)["boot"] == "0", args
    assert parsed("-b", "-n", "3")["tail"] == 3
    assert parsed("-b", "-f")["follow"] is True
    assert parsed("-b", "2", "-n3") == {"boot": "2", "follow": False, "tail": 3}
    assert parsed("-b", "abc-1")["boot"] == "abc-1"
    assert parsed()["boot"] is None
    usage_error(boots, "-b", "-x")  # an option-like word that is no number: still an option


# ---------------------------------------------------------------------- declaring options


def test_one_dash_names() -> None:
    assert one_dash_names(["-s", "--source"]) == ["-s", "-source", "--source"]
    assert one_dash_names(["-socket", "--socket"]) == ["-socket", "--socket"]
    assert one_dash_names(["--x", "-y"]) == ["--x", "-y"]  # -x would be a short option
    assert one_dash_names(["--help"]) == ["-help", "--help"]
    assert one_dash_names([]) == []


def test_go_option_adds_one_dash_forms_and_keeps_the_name() -> None:
    option = GoOption(["-s", "--source"])
    assert option.name == "source"
    assert option.opts == ["-s", "-source", "--source"]
    flag = GoOption(["--follow/--no-follow"])
    assert flag.name == "follow"
    assert flag.opts == ["-follow", "--follow"]
    assert flag.secondary_opts == ["-no-follow", "--no-follow"]


def test_go_option_and_go_command_refuse_other_classes() -> None:
    with pytest.raises(TypeError):
        go_option("--x", cls=click.Option)
    with pytest.raises(TypeError):
        go_command("x", cls=click.Command)


# ---------------------------------------------------------------------- the test helper


def test_helper_finds_nothing_wrong_with_the_toys() -> None:
    assert one_dash_mismatches(toy) == []
    assert one_dash_mismatches(toy_exec) == []


@click.command("plain", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--source", "sources", multiple=True)
@click.option("-n", "--tail", type=int)
@click.option("-f", "follow", is_flag=True)
@click.option("-F", "dump_follow", is_flag=True)
@click.option("--stats", is_flag=True)
@click.option("--since")
def plain(**_params: Any) -> None:
    """Plain click: -stats is -s tats."""


def test_helper_finds_what_plain_click_gets_wrong() -> None:
    problems = one_dash_mismatches(plain)
    text = "\n".join(problems)
    assert "'-stats'" in text  # read as -s tats
    assert "'-since" in text  # read as -s ince
    assert "'-tail 1' is a usage error" in text  # where --tail 1 works
    assert "'-stat'" in text  # -s tat, accepted
    assert "'-sinc'" in text
    assert "'-sx'" in text
    assert "'-fF'" in text
    assert "'-help' is not declared" in text


def test_helper_finds_a_go_option_on_a_plain_command() -> None:
    @click.command("half")
    @go_option("-s", "--source", "sources", multiple=True)
    @go_option("--stats", is_flag=True)
    def half(**_params: Any) -> None:
        pass

    text = "\n".join(one_dash_mismatches(half))
    assert "'-stat'" in text  # -s tat
    assert "'-help' is not declared" in text
    assert "'-stats'" not in text  # -stats itself works


def test_helper_finds_an_option_declared_without_its_one_dash_form() -> None:
    @go_command("forgot")
    @go_option("-s", "--source", "sources", multiple=True)
    @click.option("--stats", is_flag=True)
    def forgot(**_params: Any) -> None:
        pass

    problems = one_dash_mismatches(forgot)
    assert len(problems) == 1, problems
    assert problems[0].startswith("'-stats' is a usage error")


def test_helper_uses_valid_values() -> None:
    def octal(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
        try:
            return int(value, 8)
        except ValueError:
            raise click.BadParameter("not octal") from None

    @go_command("typed")
    @go_option("--mode", default="0600", callback=octal)
    @go_option("--level", type=click.Choice(["info", "debug"]), default="info")
    @go_option("--ratio", type=click.FloatRange(0.5, 2.0))
    @go_option("--pair", type=(int, str))
    @go_option("--count", "-c", count=True)
    @go_option("--socket", required=True)
    @click.argument("target", type=click.Choice(["a", "b"]))
    def typed(**_params: Any) -> None:
        pass

    assert one_dash_mismatches(typed) == []


# ---------------------------------------------------------------------- properties

TOY_VALUE_NAMES = ["source", "since", "grep"]
TOY_FLAG_NAMES = {"stats": "stats", "follow": "follow", "no-follow": "follow"}
values = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@given(st.sampled_from(TOY_VALUE_NAMES), values, st.booleans())
def test_any_long_name_works_with_one_dash(name: str, value: str, equals: bool) -> None:
    one = [f"-{name}={value}"] if equals else [f"-{name}", value]
    two = [f"--{name}={value}"] if equals else [f"--{name}", value]
    got = toy.make_context("toy", one).params
    assert got == toy.make_context("toy", two).params
    key = "sources" if name == "source" else name
    assert got[key] == ((value,) if name == "source" else value)


@given(st.sampled_from(sorted(TOY_FLAG_NAMES)))
def test_any_flag_name_works_with_one_dash(name: str) -> None:
    got = toy.make_context("toy", [f"-{name}"]).params
    assert got == toy.make_context("toy", [f"--{name}"]).params
    assert got[TOY_FLAG_NAMES[name]] is (not name.startswith("no-"))


@given(st.integers(min_value=0, max_value=10**30), st.sampled_from(["-n", "-tail", "--tail"]))
def test_tail_numbers(n: int, name: str) -> None:
    glued = [f"{name}{n}"] if name == "-n" else [f"{name}={n}"]
    assert toy.make_context("toy", glued).params["tail"] == n
    assert toy.make_context("toy", [name, str(n)]).params["tail"] == n


DECLARED = {
    name for param in toy.get_params(toy_context()) for name in (*param.opts, *param.secondary_opts)
}
one_dash_words = st.text(string.ascii_letters + string.digits + "-_", min_size=2, max_size=12).map(
    lambda rest: "-" + rest
)


@given(one_dash_words, st.sampled_from(["", "=v", "=-x", "=5"]))
def test_any_undeclared_one_dash_word_is_a_usage_error(word: str, suffix: str) -> None:
    is_short_number = word[:2] in ("-n", "-s", "-g", "-o") and word[2:].isdigit() and not suffix
    if word in DECLARED or is_short_number or word.startswith("--"):
        return
    with pytest.raises(click.UsageError) as info:
        toy.make_context("toy", [word + suffix])
    assert info.value.exit_code == 2
    assert isinstance(info.value, click.NoSuchOption)
    assert info.value.option_name == word


option_words = st.sampled_from(
    [("-stats",), ("-f",), ("-F",), ("-follow",), ("x",), ("-g", "-stat"), ("-n", "1"), ("-n2",)]
)


@given(st.lists(option_words, max_size=8))
def test_words_after_double_dash_are_never_checked(before: list[tuple[str, ...]]) -> None:
    after = ["-stat", "-fF", "-sx", "--nope"]
    words = [*(word for group in before for word in group), "--", *after]
    checked = check_one_dash(toy, toy_context(), words)
    assert checked[-len(after) :] == after
