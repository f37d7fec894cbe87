"""A test helper: what a click command gets wrong about the one-dash rule of
README "The programs" (every ``--long`` option also as ``-long``; a one-dash word
that names no option is a usage error), found by parsing probe command lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from memlogd.cliflags import normalize_name

_Outcome = tuple[str, Any]  # ("ok", params) | ("usage", message) | ("exit", code) | ...

_GENERIC_VALUES = ("1", "0", "x", ".", "-", "true", "2026-01-01", "/dev/null")


def _outcome(command: click.Command, args: Sequence[str]) -> _Outcome:
    try:
        ctx = command.make_context(command.name or "command", list(args), resilient_parsing=False)
    except click.exceptions.Exit as exc:
        return ("exit", exc.exit_code)
    except click.UsageError as exc:
        return ("usage", exc.format_message())
    except click.ClickException as exc:
        return ("error", exc.format_message())
    except click.Abort:
        return ("error", "aborted")
    params = dict(ctx.params)
    ctx.close()
    return ("ok", params)


def _describe(outcome: _Outcome, base: _Outcome) -> str:
    """``outcome`` in words; parameters only where they differ from ``base``'s."""
    kind, detail = outcome
    if kind == "ok":
        if base[0] == "ok":
            missing = object()
            detail = {k: v for k, v in detail.items() if base[1].get(k, missing) != v}
        return f"gives {detail!r}"
    if kind == "usage":
        return f"is a usage error ({detail})"
    return f"ends with {kind} ({detail})"


def _type_candidates(kind: Any, default: Any) -> list[str]:
    """Words to try as a value of ``kind`` (a click ParamType), likely ones first;
    the default last (a probe that sets the default proves less)."""
    out: list[str] = []
    if isinstance(kind, click.Choice):
        choices = [c if isinstance(c, str) else str(getattr(c, "name", c)) for c in kind.choices]
        out += [c for c in choices if c != default] + choices
    elif isinstance(kind, click.IntRange | click.FloatRange):
        if kind.min is not None:
            out.append(str(kind.min + 1 if kind.min_open else kind.min))
        if kind.max is not None:
            out.append(str(kind.max - 1 if kind.max_open else kind.max))
    elif isinstance(kind, click.File):
        out.append("-")  # never opens a file
    out += _GENERIC_VALUES
    if isinstance(default, str | int | float) and not isinstance(default, bool):
        out.append(str(default))
    return list(dict.fromkeys(out))


def _converts(kind: Any, word: str, param: click.Parameter, ctx: click.Context) -> bool:
    if isinstance(kind, click.File) and word != "-":
        return False
    try:
        kind.convert(word, param, ctx)
    except (click.BadParameter, click.UsageError, ValueError, TypeError):
        return False
    return True


def _value_words(param: click.Parameter, ctx: click.Context) -> list[list[str]]:
    """Candidate value words for one use of ``param`` (each list: ``nargs`` words),
    each word valid for its type (callbacks are not run here)."""
    nargs = max(param.nargs, 1)
    kind = param.type
    kinds = list(kind.types) if isinstance(kind, click.Tuple) else [kind] * nargs
    default = param.default if isinstance(param.default, str | int | float) else None
    per_word = [
        [w for w in _type_candidates(k, default) if _converts(k, w, param, ctx)] for k in kinds
    ]
    if any(not words for words in per_word):
        return []
    if nargs == 1:
        return [[w] for w in per_word[0]]
    return [[words[0] for words in per_word]]


def _takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count


def one_dash_mismatches(command: click.Command) -> list[str]:
    """What ``command`` gets wrong about the one-dash rule of docs/logread.md; [] = nothing.

    For every option with a ``--long`` name (``--no-x`` secondaries too):

    * ``-long`` parses to the same ``ctx.params`` as ``--long`` (with a value valid
      for its type where it takes one; ``-long=V`` too); for an option that exposes
      no value (help, version) ``-long`` must be declared on the same option;
    * ``-long`` minus its last letter (``-stat``, ``-sinc``) is a usage error.

    For every short option ``-c``: ``-c`` glued to a letter (``-sx``, and two
    short flags ``-fF``) is a usage error; for one that takes a value,
    ``-c1`` parses as ``-c 1`` (when ``1`` is a valid value).

    Each probe is parsed with ``command.make_context(..., resilient_parsing=False)``
    (required parameters get a valid value after the probe).  Nothing is run and
    nothing is printed, unless a probe that should fail is accepted and its
    eager callback (such as ``--help``'s) prints."""
    ctx = command.context_class(command, info_name=command.name, **command.context_settings)
    params = command.get_params(ctx)
    options = [p for p in params if isinstance(p, click.Option)]
    declared = {normalize_name(n, ctx) for p in options for n in (*p.opts, *p.secondary_opts)}
    problems: list[str] = []

    # what every probe needs after it: required options, then required arguments
    tail: list[str] = []
    for param in params:
        if isinstance(param, click.Option) and (param.required or param.prompt is not None):
            candidates = _value_words(param, ctx) if _takes_value(param) else [[]]
            if not candidates:
                return [f"no valid value found for required option {param.opts[0]}"]
            tail += [param.opts[0], *candidates[0]]
    for param in params:
        if isinstance(param, click.Argument) and param.required:
            candidates = _value_words(param, ctx)
            if not candidates:
                return [f"no valid value found for argument {param.human_readable_name}"]
            tail += candidates[0]

    base = _outcome(command, tail)  # what the probes' parameters are shown against

    def must_fail(probe: str) -> None:
        if normalize_name(probe, ctx) in declared:
            return
        outcome = _outcome(command, [probe, *tail])
        if outcome[0] != "usage":
            problems.append(f"{probe!r} {_describe(outcome, base)}, but must be a usage error")

    def same(probe: list[str], reference: list[str]) -> None:
        want = _outcome(command, [*reference, *tail])
        got = _outcome(command, [*probe, *tail])
        if want[0] != "ok":
            problems.append(f"{' '.join(reference)!r} {_describe(want, base)}")
        elif got != want:
            problems.append(
                f"{' '.join(probe)!r} {_describe(got, base)}, but {' '.join(reference)!r} "
                f"{_describe(want, base)}"
            )

    def working_values(option: click.Option, name: str) -> list[str] | None:
        for words in _value_words(option, ctx):
            if _outcome(command, [name, *words, *tail])[0] == "ok":
                return words
        return None

    for option in options:
        for names in (option.opts, option.secondary_opts):
            for name in names:
                if not (name.startswith("--") and len(name) > 3):
                    continue
                one = "-" + name[2:]
                if not option.expose_value:
                    if one not in names:
                        problems.append(f"{one!r} is not declared, but {name!r} is")
                elif _takes_value(option):
                    values = working_values(option, name)
                    if values is None:
                        problems.append(f"no value found that {name!r} accepts")
                    else:
                        same([one, *values], [name, *values])
                        if option.nargs == 1:
                            same([f"{one}={values[0]}"], [f"{name}={values[0]}"])
                else:
                    same([one], [name])
                if len(name) > 4:  # -long minus its last letter: still longer than -x
                    must_fail("-" + name[2:-1])

    # short options (not -h: a probe wrongly accepted would print the help)
    shorts = [
        (option, name)
        for option in options
        if option.expose_value
        for name in (*option.opts, *option.secondary_opts)
        if len(name) == 2 and name[:1] == "-" and name != "--"
    ]
    flags = [name for option, name in shorts if not _takes_value(option)]
    for option, name in shorts:
        must_fail(name + "x")
        for other in flags:
            if other != name:
                must_fail(name + other[1:])  # combined flags, -fF
                break
        digits_ok = _takes_value(option) and option.nargs == 1
        if digits_ok and _outcome(command, [name, "1", *tail])[0] == "ok":
            same([name + "1"], [name, "1"])  # -n1 as -n 1
    return problems
