"""One-dash long options, as Go's ``flag`` package has them (README, "The programs").

Every long option also works with one dash (``-stats``, ``-since 10m``,
``-tail=5``, ``-help``), and a one-dash word that names no option is a usage
error (exit 2).  Plain click would read such a word as short options: ``-stat``
as ``-s tat``, ``-fF`` as ``-f -F``.  The one exception kept is a short option
that takes a value directly followed by digits (``-n10``).

* :class:`GoOption` / :func:`go_option`: an option declared with ``--long`` also
  gets ``-long`` (and ``--no-x`` gets ``-no-x``), without listing it by hand.
* :class:`GoCommand` / :func:`go_command`: checks the command line before click
  parses it (:func:`check_one_dash`), and adds ``-help`` (and ``-h``) to the
  help option.

Hook: :meth:`click.Command.parse_args` (public, documented as the step of
``make_context`` that parses) is overridden to vet the arguments first, then
hand them, unchanged except for ``-x=VALUE`` (below), to click.  The walk
needs, per option, whether it takes a value and how many words: read from the
public :class:`click.Option` attributes ``opts``, ``secondary_opts``,
``is_flag``, ``count`` and ``nargs``.  One private attribute is read, with a
default: ``Option._flag_needs_value`` (an option whose value may be left out;
click then reads the next word as an option when it looks like one).  Errors
are click's own public exceptions (:class:`click.NoSuchOption`,
:class:`click.BadOptionUsage`), so they print as click's usage errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import click

__all__ = [
    "HELP_OPTION_NAMES",
    "BareValueOption",
    "GoCommand",
    "GoOption",
    "check_one_dash",
    "go_command",
    "go_option",
    "one_dash_names",
]

#: The help option's names in every program (``-help`` as in upstream's Go flags).
HELP_OPTION_NAMES: Final = ("-h", "-help", "--help")

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")


def one_dash_names(names: Iterable[str]) -> list[str]:
    """``names`` with ``-long`` inserted before each ``--long`` that lacks it.

    ``["-s", "--source"]`` -> ``["-s", "-source", "--source"]``.  A ``--x`` of one
    letter gets no ``-x`` (that would be a short option)."""
    given = list(names)
    out: list[str] = []
    for name in given:
        one = "-" + name[2:]
        if name.startswith("--") and len(name) > 3 and one not in given and one not in out:
            out.append(one)
        out.append(name)
    return out


class GoOption(click.Option):
    """A :class:`click.Option` whose ``--long`` names (primary and secondary, as in
    ``--follow/--no-follow``) also exist as ``-long``.  The parameter's name is
    inferred from the declared names, as click does, before the forms are added."""

    def __init__(self, param_decls: Sequence[str] | None = None, **attrs: Any) -> None:
        super().__init__(param_decls, **attrs)
        self.opts = one_dash_names(self.opts)
        self.secondary_opts = one_dash_names(self.secondary_opts)


class BareValueOption(GoOption):
    """A :class:`GoOption` whose value may be left out, meaning ``bare_value``
    (journalctl's ``-b [OFFSET]``), and that takes a negative number as its
    value (``-b -1``, ``--boot -1``), which click's optional values cannot: the
    value is filled in by :func:`check_one_dash`, so click sees an ordinary
    option with a value."""

    def __init__(
        self, param_decls: Sequence[str] | None = None, *, bare_value: str, **attrs: Any
    ) -> None:
        super().__init__(param_decls, **attrs)
        self.bare_value = bare_value


def go_option(*param_decls: str, **attrs: Any) -> Callable[[FC], FC]:
    """:func:`click.option` with :class:`GoOption`: ``@go_option("-s", "--source")``
    accepts ``-s``, ``-source`` and ``--source``."""
    cls = attrs.pop("cls", GoOption)
    if not (isinstance(cls, type) and issubclass(cls, GoOption)):
        raise TypeError(f"go_option needs a GoOption subclass as cls, not {cls!r}")
    return click.option(*param_decls, cls=cls, **attrs)


class GoCommand(click.Command):
    """A :class:`click.Command` with Go's one-dash options (docs/logread.md, "Options").

    * Before click parses, :func:`check_one_dash` refuses (usage error, exit 2) a
      one-dash word longer than two characters that is no declared option name
      (``-stat``, ``-sx``, combined flags ``-fF``), except a short option that takes
      a value directly followed by digits (``-n10``).
    * ``help_option_names`` defaults to ``-h``, ``-help``, ``--help``; any ``--long``
      help name given in ``context_settings`` also gets its ``-long`` form.

    Set ``allow_interspersed_args = False`` (on a subclass, an instance, or in
    ``context_settings``) for a command that runs another command: the check, like
    click, then stops at the first positional argument."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context_settings = dict(self.context_settings)  # never a shared dict
        self.context_settings.setdefault("help_option_names", list(HELP_OPTION_NAMES))

    def get_help_option_names(self, ctx: click.Context) -> list[str]:
        taken = {name for param in self.params for name in (*param.opts, *param.secondary_opts)}
        names = one_dash_names(super().get_help_option_names(ctx))
        return [name for name in names if name not in taken]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            args = check_one_dash(self, ctx, args)
        except click.UsageError:
            if not ctx.resilient_parsing:  # shell completion: let click guess
                raise
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:  # each option suggested once (not -x and --x)
            names = set(exc.possibilities or ())
            once = [n for n in exc.possibilities or () if not (n[1] != "-" and "-" + n in names)]
            raise click.NoSuchOption(
                exc.option_name, exc.message, possibilities=once, ctx=exc.ctx
            ) from None


def query_socket_option() -> Callable[[FC], FC]:
    """``-socket PATH``: memlogd's query socket, for every client program."""
    from memlogd.wire.paths import DEFAULT_QUERY_SOCKET

    return go_option(
        "--socket",
        default=DEFAULT_QUERY_SOCKET,
        show_default=True,
        metavar="PATH",
        help="memlogd's query socket.",
    )


def source_option(help: str) -> Callable[[FC], FC]:
    """``-s/--source GLOB`` (repeatable, into ``sources``): the request's source
    filter (memlogd.wire.filters), for every client program that selects sources."""
    return go_option("-s", "--source", "sources", multiple=True, metavar="GLOB", help=help)


def go_command(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], GoCommand]:
    """:func:`click.command` with ``cls=GoCommand`` (or a subclass of it)."""
    cls = attrs.pop("cls", GoCommand)
    if not (isinstance(cls, type) and issubclass(cls, GoCommand)):
        raise TypeError(f"go_command needs a GoCommand subclass as cls, not {cls!r}")

    def decorator(f: Callable[..., Any]) -> GoCommand:
        command = click.command(name, cls=cls, **attrs)(f)
        assert isinstance(command, GoCommand)
        return command

    return decorator


# ---------------------------------------------------------------------- the check


@dataclass(frozen=True)
class _Spec:
    """What the parser does after an option's name."""

    nargs: int  # words of value it takes (0: a flag or a count)
    optional: bool  # the value may be left out (then a word like an option is not it)
    bare: str | None = None  # a BareValueOption's value when it is left out


def _split_prefix(name: str) -> tuple[str, str]:
    """As click splits an option name: ``--x`` -> ``("--", "x")``, ``-x`` -> ``("-", "x")``."""
    first = name[:1]
    if first.isalnum():
        return "", name
    if name[1:2] == first:
        return name[:2], name[2:]
    return first, name[1:]


def normalize_name(name: str, ctx: click.Context) -> str:
    """An option name as click compares it (through ``ctx.token_normalize_func``)."""
    if ctx.token_normalize_func is None:
        return name
    prefix, rest = _split_prefix(name)
    return prefix + ctx.token_normalize_func(rest)


def _option_specs(command: click.Command, ctx: click.Context) -> dict[str, _Spec]:
    specs: dict[str, _Spec] = {}
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue
        takes_value = not param.is_flag and not param.count
        bare = param.bare_value if isinstance(param, BareValueOption) else None
        spec = _Spec(
            nargs=param.nargs if takes_value else 0,
            optional=takes_value
            and (bare is not None or bool(getattr(param, "_flag_needs_value", False))),
            bare=bare,
        )
        for name in (*param.opts, *param.secondary_opts):
            specs[normalize_name(name, ctx)] = spec
    return specs


def _prefixes(names: Iterable[str]) -> set[str]:
    """The word starts click's parser treats as options (as click computes them)."""
    prefixes = {"-", "--"}
    for name in names:
        prefix, rest = _split_prefix(name)
        if prefix:
            prefixes.add(prefix[0])
            if len(prefix) > 1 or len(rest) > 1:
                prefixes.add(prefix)
    return prefixes


def _suggestions(specs: Mapping[str, _Spec]) -> list[str]:
    """Names for "Did you mean": each ``--x`` only when there is no ``-x``."""
    return [n for n in specs if not (n.startswith("--") and "-" + n[2:] in specs)]


def _negative_value(word: str, specs: Mapping[str, _Spec], ctx: click.Context) -> bool:
    """``-1``, ``-12``: a negative number, which no option is named like."""
    return _NEGATIVE.fullmatch(word) is not None and normalize_name(word[:2], ctx) not in specs


def check_one_dash(command: click.Command, ctx: click.Context, args: Sequence[str]) -> list[str]:
    """Vet ``args`` for ``command`` before click parses them; returns them for click.

    Raises :class:`click.NoSuchOption` for a one-dash word longer than two characters
    (before any ``=``) that is no declared option name, unless it is a declared short
    option that takes a value directly followed by digits (``-n10``); and
    :class:`click.BadOptionUsage` for ``-f=VALUE`` where ``-f`` is a short flag.
    A :class:`BareValueOption` left without its value (at the end, or before an
    option) is given its ``bare_value``; a negative number after it is its value
    (``-b -1``), unless an option is named like it.
    Words that are an option's value (``-g -error``) are skipped, as is everything
    after ``--``, and everything from the first positional argument on when the
    context does not allow interspersed arguments.  Unknown two-character and
    ``--long`` words are left for click to report (or to pass on, with
    ``ignore_unknown_options``).

    The one rewrite: ``-x=VALUE`` for a short option ``-x`` that takes a value is
    passed on as ``-xVALUE`` (or ``-x VALUE``), which means ``VALUE`` as in Go's
    flags; click alone would take ``=VALUE`` as the value."""
    specs = _option_specs(command, ctx)
    prefixes = _prefixes(specs)
    out: list[str] = []
    words = list(args)
    i = 0

    def looks_like_option(word: str) -> bool:
        return word[:1] in prefixes and len(word) > 1

    def take_values(count: int) -> None:
        nonlocal i
        count = max(0, min(count, len(words) - i))
        out.extend(words[i : i + count])
        i += count

    while i < len(words):
        word = words[i]
        i += 1
        if word == "--" or not looks_like_option(word):
            if word == "--" or not ctx.allow_interspersed_args:
                out.append(word)
                take_values(len(words))  # the rest, unchecked
                break
            out.append(word)
            continue
        name, eq, value = word.partition("=")
        spec = specs.get(normalize_name(name, ctx))
        single = word[:2] not in prefixes  # click tries short options on such a word
        if spec is not None:
            if eq and single and len(name) == 2:  # -x=VALUE, -x a short option
                if not spec.nargs:
                    raise click.BadOptionUsage(
                        name, f"Option {name!r} does not take a value.", ctx=ctx
                    )
                glued = name + value
                if value and normalize_name(glued, ctx) not in specs:
                    out.append(glued)
                else:
                    out.extend((name, value))
                take_values(spec.nargs - 1)
                continue
            out.append(word)
            if eq:
                take_values(spec.nargs - 1)  # --x=VALUE is the first of nargs values
            elif spec.optional and spec.nargs == 1:
                following = words[i] if i < len(words) else None
                if following is not None and (
                    not looks_like_option(following)
                    or (spec.bare is not None and _negative_value(following, specs, ctx))
                ):
                    take_values(1)
                elif spec.bare is not None:
                    out.append(spec.bare)  # left out: click is given the bare value
            else:
                take_values(spec.nargs)
            continue
        if not single or len(name) <= 2:  # unknown --long or -x: click's own error
            out.append(word)
            if ctx.ignore_unknown_options:
                continue
            take_values(len(words))
            break
        short = specs.get(normalize_name(word[:2], ctx))
        if short is not None and short.nargs and _DIGITS.fullmatch(word[2:]):
            out.append(word)  # -n10: click gives -n the value 10
            take_values(short.nargs - 1)
            continue
        raise click.NoSuchOption(name, possibilities=_suggestions(specs), ctx=ctx)
    return out
