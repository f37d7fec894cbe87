"""How severe a log line says it is: a syslog level 0-7, or None (SPEC 15). PURE: no I/O.

memlogd's entries carry no priority, but most services write it in a form
that can be recognised without guessing.  :func:`level` knows exactly these,
first match wins (docs/logread.md, "Priority"):

1. a prefix ``<N>``, N one digit 0-7 (sd-daemon, ``dmesg -r``, our kmsg);
2. a whole-line JSON object with a top-level string ``level``, ``severity``,
   ``lvl`` or ``loglevel`` naming a level;
3. logfmt (logrus, Go slog's text handler, log15): a line that begins with
   ``time=``, ``ts=``, ``t=`` or ``level=``, whose first ``level=NAME`` or
   ``lvl=NAME`` token outside quotes (at the start or after a space; the value
   quoted or not) names a level; slog's ``INFO+2`` counts as ``INFO``;
4. klog/glog: ``[IWEF]MMDD HH:MM:SS.UUUUUU THREAD FILE:LINE] ``;
5. logrus on a terminal: ``DEBU[``, ``TRAC[``, ``INFO[``, ``WARN[``, ``ERRO[``,
   ``FATA[``, ``PANI[`` then a bracketed number or time;
6. Python logging's default: ``LEVELNAME:NAME:``;
7. Go's log with slog's default handler: ``YYYY/MM/DD HH:MM:SS LEVEL ``.

Names (:data:`NAMES`) are case-insensitive.  Nothing else gives a level: no
keyword is searched for anywhere in a line, and a numeric JSON level is not
one.  The function dispatches on the line's first two characters, so that a
line no rule can match costs a dict lookup (BENCHMARKS.md, "Severity"); it
never raises, whatever it is given (a ``str``, or ``bytes``, read as UTF-8
with replacement).

It runs only where a reader asks for priorities (``logread -p``, colours,
``-o json``, logship's PRI), never on memlogd's intake, and is never stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Final

__all__ = [
    "DEFAULT_LEVEL",
    "LEVEL_NAMES",
    "NAMES",
    "PriorityError",
    "level",
    "level_or_default",
    "levels_or_default",
    "parse_priority",
]

EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)
#: The level of a line that says none (journald's default for a stream).
DEFAULT_LEVEL: Final = INFO

#: Every name a level goes by (lower case), SPEC 15's table.
NAMES: Final[dict[str, int]] = {
    "emerg": EMERG,
    "emergency": EMERG,
    "alert": ALERT,
    "crit": CRIT,
    "critical": CRIT,
    "fatal": CRIT,
    "panic": CRIT,
    "err": ERR,
    "error": ERR,
    "eror": ERR,
    "warn": WARNING,
    "warning": WARNING,
    "notice": NOTICE,
    "info": INFO,
    "information": INFO,
    "debug": DEBUG,
    "trace": DEBUG,
    "dbug": DEBUG,
}

#: syslog's (and journalctl's) name of each level.
LEVEL_NAMES: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_Rule = Callable[[str], "int | None"]

# ------------------------------------------------------------------ rule 1: <N>


def _angle(text: str) -> int | None:
    if len(text) >= 3 and text[2] == ">":
        digit = text[1]
        if "0" <= digit <= "7":
            return ord(digit) - 48
    return None


# ------------------------------------------------------------------ rule 2: JSON

_JSON_KEYS: Final = ("level", "severity", "lvl", "loglevel")
# Only a line that has such a key followed by a string is parsed at all.
_JSON_HINT = re.compile(r'"(?:level|severity|lvl|loglevel)"\s*:\s*"')


def _json(text: str) -> int | None:
    if _JSON_HINT.search(text) is None:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if type(obj) is not dict:
        return None
    for key in _JSON_KEYS:
        value = obj.get(key)
        if type(value) is str:
            found = NAMES.get(value.lower())
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------ rule 3: logfmt

_LOGFMT_STARTS: Final = ("time=", "ts=", "t=", "level=")
# The general case: tokens (runs of non-space characters and quoted strings) up
# to the first that starts with level= or lvl=; each token taken whole
# (atomic), the run of them possessive, so it is linear in the line.
_LOGFMT = re.compile(
    r"""
    (?:(?!l(?:evel|vl)=)(?>(?:[^\x20"]+|"(?:[^"\\]|\\.)*")+)\x20+)*+
    l(?:evel|vl)=(?P<value>"[^"\x20]*"|[^"\x20]*)(?:\x20|\Z)
    """,
    re.VERBOSE,
)
_SLOG_OFFSET = re.compile(r"([A-Za-z]+)[+-][0-9]+")


def _logfmt(text: str) -> int | None:
    if " level=" not in text and " lvl=" not in text and text[:6] != "level=":
        return None  # the common case of a line that says none: two C-speed searches
    if not text.startswith(_LOGFMT_STARTS):
        return None
    # the common case first: the first " level=" / " lvl=" with nothing quoted
    # and escaped before it (an even count of quotes: outside them)
    at = 0 if text.startswith("level=") else text.find(" level=")
    lvl = text.find(" lvl=")
    if lvl >= 0 and (at < 0 or lvl < at):
        at = lvl
    if at < 0:
        return None
    before = text[:at]
    if "\\" not in before and not before.count('"') % 2:
        start = text.index("=", at) + 1
        end = text.find(" ", start)
        value = text[start:] if end < 0 else text[start:end]
    else:
        m = _LOGFMT.match(text)
        if m is None:
            return None
        value = m.group("value")
    if value[:1] == '"':
        if len(value) < 2 or value[-1] != '"':
            return None
        value = value[1:-1]
    found = NAMES.get(value.lower())
    if found is None and (m := _SLOG_OFFSET.fullmatch(value)) is not None:
        found = NAMES.get(m.group(1).lower())  # slog's INFO+2
    return found


# ------------------------------------------------------------------ rules 4-7: fixed prefixes

_KLOG_LEVELS: Final = {"I": INFO, "W": WARNING, "E": ERR, "F": CRIT}
_KLOG = re.compile(
    r"[IWEF][0-9]{4}\x20[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\x20+[0-9]+\x20[^\s:]+:[0-9]+\]\x20"
)
_TERM_LEVELS: Final = {
    "DEBU": DEBUG,
    "TRAC": DEBUG,
    "INFO": INFO,
    "WARN": WARNING,
    "ERRO": ERR,
    "FATA": CRIT,
    "PANI": CRIT,
}
_TERM = re.compile(r"[A-Z]{4}\[[0-9][^\]]*\]")
_PYTHON_LEVELS: Final = {
    name: NAMES[name] for name in ("debug", "info", "warning", "error", "critical")
}


def _cases(word: str) -> list[str]:
    """``word`` in every mix of lower and upper case."""
    out = [""]
    for c in word:
        out = [head + v for head in out for v in dict.fromkeys((c.lower(), c.upper()))]
    return out


# Python's level names by their first four letters, in any case: (name, its length, level)
_PYTHON_WORDS: Final = {
    start: (name, len(name), NAMES[name]) for name in _PYTHON_LEVELS for start in _cases(name[:4])
}
_PYTHON_NAME = re.compile(r"[^\s:][^:]*:")
_GO_LEVELS: Final = {name: NAMES[name] for name in ("info", "warn", "error", "debug")}
_GO = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}\x20[0-9]{2}:[0-9]{2}:[0-9]{2}\x20([A-Za-z]+)\x20")


def _python(text: str) -> int | None:
    """Rule 6: ``LEVELNAME:NAME:``, LEVELNAME in any case."""
    word = _PYTHON_WORDS.get(text[:4])
    if word is None:
        return None
    name, end, found = word
    if len(text) <= end or text[end] != ":" or text[:end].lower() != name:
        return None
    if _PYTHON_NAME.match(text, end + 1) is None:
        return None
    return found


def _letter(text: str) -> int | None:
    """A capital letter: klog (rule 4), logrus on a terminal (5), Python (6)."""
    if text[1] <= "9":  # a digit (the dispatch let no other character below A in)
        if _KLOG.match(text) is None:
            return None
        return _KLOG_LEVELS.get(text[0])
    found = _TERM_LEVELS.get(text[:4])
    if found is not None and text[4:5] == "[":
        return found if _TERM.match(text) is not None else None
    return _python(text)


def _go(text: str) -> int | None:
    """Rule 7: ``YYYY/MM/DD HH:MM:SS LEVEL ``."""
    if len(text) < 21 or text[4] != "/" or text[20] not in "IWEDiwed":
        return None
    m = _GO.match(text)
    if m is None:
        return None
    return _GO_LEVELS.get(m.group(1).lower())


# ------------------------------------------------------------------ dispatch


# The first two characters of a line -> the only rule that can match it.
def _dispatch() -> dict[str | bytes, Callable[[Any], int | None]]:
    table: dict[str | bytes, Callable[[Any], int | None]] = {}
    digits = "0123456789"
    for digit in "01234567":
        table["<" + digit] = _angle
    for second in '" \t':
        table["{" + second] = _json
    for start in ("ti", "ts", "t=", "le"):
        table[start] = _logfmt
    for first in "IWEF":
        for digit in digits:
            table[first + digit] = _letter
    for word in _PYTHON_LEVELS:  # case-insensitive: every case of the first two letters
        for a in (word[0], word[0].upper()):
            for b in (word[1], word[1].upper()):
                table[a + b] = _python
    for word in _TERM_LEVELS:  # logrus's words in capitals (and Python's, then)
        table[word[:2]] = _letter
    for a in digits:
        for b in digits:
            table[a + b] = _go
    return table


_FIRST = _dispatch()


def _bytes_rule(rule: _Rule) -> Callable[[bytes], int | None]:
    def decoded(data: bytes) -> int | None:
        return rule(data.decode("utf-8", "replace"))

    return decoded


for _c, _rule in list(_FIRST.items()):
    assert isinstance(_c, str)
    _FIRST[_c.encode()] = _bytes_rule(_rule)
del _c, _rule

_get_rule = _FIRST.get


def level(text: str | bytes) -> int | None:
    """The syslog level (0 emerg .. 7 debug) the line ``text`` says it has, or
    None.  Never raises."""
    rule = _get_rule(text[:2])
    if rule is None:
        return None
    return rule(text)


def level_or_default(text: str | bytes) -> int:
    """:func:`level`, with :data:`DEFAULT_LEVEL` (info) for a line that says none."""
    rule = _get_rule(text[:2])
    if rule is None:
        return DEFAULT_LEVEL
    found = rule(text)
    return DEFAULT_LEVEL if found is None else found


_FIRST_TWO = itemgetter(slice(None, 2))


def levels_or_default(texts: Sequence[str]) -> list[int]:
    """``[level_or_default(t) for t in texts]``; when no text starts as a rule's
    line does (the common case), by a few C calls for them all (logship's
    batches, BENCHMARKS.md "logship: the answer in bulk")."""
    rules = list(map(_get_rule, map(_FIRST_TWO, texts)))
    if rules.count(None) == len(rules):
        return [DEFAULT_LEVEL] * len(rules)
    return list(map(level_or_default, texts))


# ------------------------------------------------------------------ priority ranges


class PriorityError(ValueError):
    """A priority that is neither a level name, nor 0-7, nor a range of them."""


def _one_level(word: str) -> int:
    text = word.strip().lower()
    if len(text) == 1 and "0" <= text <= "7":
        return int(text)
    found = NAMES.get(text)
    if found is None:
        names = ", ".join(LEVEL_NAMES)
        raise PriorityError(f"{word!r} is not a priority: use 0-7 or a name ({names})")
    return found


def parse_priority(text: str) -> tuple[int, int]:
    """journalctl's ``-p`` value as the range of levels it selects, most severe
    first: ``err`` (or ``3``) is ``(0, 3)``; ``FROM..TO`` (either order) is
    that range, both ends included."""
    if ".." in text:
        a, _, b = text.partition("..")
        lo, hi = _one_level(a), _one_level(b)
        return (lo, hi) if lo <= hi else (hi, lo)
    return (0, _one_level(text))
