"""Source globs: shell-style patterns compiled without fnmatch's blow-up. PURE: no I/O.

``logread -s 'web*'`` and the extended query's ``sources`` (docs/protocol.md)
use these globs.  :func:`glob_regex` has exactly the meaning of
:func:`fnmatch.fnmatchcase`, in time linear in the glob, so 64 KiB of request
cannot stall the daemon.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SET_OPS = re.compile(r"([&~|])")
_STAR = "*"  # a run of stars among the pieces of a glob (no other piece is "*")


def _glob_class(body: str) -> str:
    """The regex of a bracket expression's body (between ``[`` and ``]``), with
    fnmatch's meaning: ``!`` negates, ``a-z`` is a range, an empty range such
    as ``z-a`` matches nothing.  Linear in ``len(body)``."""
    if "-" not in body:
        text = body.replace("\\", "\\\\")
    else:
        # Split at every hyphen that can make a range, as fnmatch does: a piece
        # between two such hyphens has at least two characters.
        pieces = []
        start = 0
        k = 2 if body[0] == "!" else 1
        while (k := body.find("-", k)) >= 0:
            pieces.append(body[start:k])
            start = k + 1
            k += 3
        if start < len(body):
            pieces.append(body[start:])
        else:
            pieces[-1] += "-"
        # A range whose ends are in the wrong order is empty: drop it (its two
        # ends and the hyphen). Each join is decided on the original pieces,
        # which gives the same answer as fnmatch's repeated merging.
        joined = [pieces[i - 1][-1] > pieces[i][0] for i in range(1, len(pieces))]
        out = []
        for i, piece in enumerate(pieces):
            lo = 1 if i > 0 and joined[i - 1] else 0
            hi = len(piece) - 1 if i < len(joined) and joined[i] else len(piece)
            if i > 0 and not joined[i - 1]:
                out.append("-")
            out.append(piece[lo:hi].replace("\\", "\\\\").replace("-", "\\-"))
        text = "".join(out)
    text = _SET_OPS.sub(r"\\\1", text)
    if not text:
        return "(?!)"  # an empty range never matches
    if text == "!":
        return "."  # a negated empty range matches any character
    if text[0] == "!":
        return "[^" + text[1:] + "]"
    if text[0] in "^[":
        return "[\\" + text + "]"
    return "[" + text + "]"


def glob_regex(glob: str) -> str:
    """A shell-style glob as a regular expression with exactly the meaning of
    :func:`fnmatch.fnmatchcase` (``*``, ``?``, ``[...]``, ``[!...]``).

    ``fnmatch.translate`` is quadratic in the worst case (every unclosed ``[``
    scans to the end, and ranges are merged one by one), so 64 KiB of request
    could stall the daemon for a minute; this translation is linear.  Runs of
    fixed text after a ``*`` are matched atomically, as fnmatch does, so that
    matching is never exponential.
    """
    parts: list[str] = []  # regex pieces, and _STAR for each run of stars
    i, n = 0, len(glob)
    last_close = glob.rfind("]")
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not parts or parts[-1] != _STAR:
                parts.append(_STAR)
        elif c == "?":
            parts.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            close = glob.find("]", j) if j <= last_close else -1
            if close < 0:
                parts.append("\\[")
            else:
                parts.append(_glob_class(glob[i:close]))
                i = close + 1
        else:
            parts.append(re.escape(c))
    out: list[str] = []
    k = 0
    while k < len(parts) and parts[k] != _STAR:
        out.append(parts[k])
        k += 1
    while k < len(parts):
        k += 1  # the star
        fixed: list[str] = []
        while k < len(parts) and parts[k] != _STAR:
            fixed.append(parts[k])
            k += 1
        if k == len(parts):
            out.append(".*" + "".join(fixed))
        else:
            out.append("(?>.*?" + "".join(fixed) + ")")
    return "(?s:" + "".join(out) + ")\\Z"


MATCH_CACHE_SIZE = 4096  # source names remembered per matcher


class SourceMatcher:
    """Whether a source name matches any of some globs (every name if there are
    none).  Answers are remembered per name: a ring holds few distinct sources,
    and thousands of globs cost milliseconds per match."""

    __slots__ = ("_known", "_pattern")

    def __init__(self, globs: Iterable[str]) -> None:
        globs = list(globs)
        self._pattern = re.compile("|".join(map(glob_regex, globs))) if globs else None
        self._known: dict[str, bool] = {}

    @property
    def everything(self) -> bool:
        return self._pattern is None

    def __call__(self, source: str) -> bool:
        if self._pattern is None:
            return True
        known = self._known.get(source)
        if known is None:
            known = self._pattern.match(source) is not None
            if len(self._known) >= MATCH_CACHE_SIZE:
                self._known.clear()
            self._known[source] = known
        return known
