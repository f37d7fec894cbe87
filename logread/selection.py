"""What logread shows of the entries memlogd sends (docs/logread.md, "Selecting").
PURE: no I/O.

memlogd filters by source (``-s``, ``-u``), ``--since``, ``-p`` and ``-n``; the
rest is logread's own, because the query protocol has no key for it:

* ``-g REGEX``: only entries whose message the regex matches (``re.search``);
* ``--until WHEN``: entries up to WHEN; the first entry later than WHEN ends what
  is shown (as journalctl does: when following, it ends logread);
* ``-n N`` together with ``-g``/``--until``: the last N of what is shown, so the
  dump is asked for whole and logread keeps the last N;
* ``-r``: the dump newest first;
* ``-p``, when memlogd refused the ``priority`` key (an older memlogd): only
  entries whose level is within the range, before the tail is kept.

:class:`Selector` applies these to the batches of one answer, in order;
:func:`unit_globs` turns ``-u NAME`` into source globs.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence

from memlogd.wire.protocol import LogEntry
from memlogd.wire.severity import level_or_default

__all__ = ["Selector", "select", "unit_globs"]


def unit_globs(units: Iterable[str]) -> tuple[str, ...]:
    """``-u NAME`` -> the globs of the service's two streams: ``NAME`` (stderr)
    and ``NAME.out`` (stdout), as LinuxKit's init names them.  ``NAME.service``
    (journalctl's unit name) also means ``NAME``.  A NAME with ``*``, ``?`` or
    ``[`` is a glob, as with ``-s``."""
    out: list[str] = []
    for unit in units:
        names = [unit]
        base = unit.removesuffix(".service")
        if base and base != unit:
            names.append(base)
        for name in names:
            out += [name, name + ".out"]
    return tuple(dict.fromkeys(out))


class Selector:
    """``-g``, ``--until``, a tail kept by logread and ``-r``, applied to the
    batches of one answer, in order.

    :meth:`feed` returns what to show now (nothing while a tail or the reversed
    dump is kept), :meth:`finish` what is kept, at the end of the dump.  Once an
    entry later than ``until_ns`` came, :attr:`done` is true and nothing more is
    shown.  :attr:`shown` counts the entries handed out."""

    __slots__ = ("_done", "_grep", "_held", "_priority", "_reverse", "_until", "shown")

    def __init__(
        self,
        *,
        grep: re.Pattern[str] | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
        reverse: bool = False,
        priority: tuple[int, int] | None = None,
    ) -> None:
        if tail is not None and tail < 0:
            raise ValueError("tail must not be negative")
        self._grep = grep
        self._priority = priority
        self._until = until_ns
        self._reverse = reverse
        self._held: deque[LogEntry] | None = None
        if tail is not None or reverse:
            self._held = deque(maxlen=tail)
        self._done = False
        self.shown = 0

    @property
    def done(self) -> bool:
        """An entry later than ``--until`` came: the rest is not shown."""
        return self._done

    @property
    def everything(self) -> bool:
        """Every entry is shown as it comes (no regex, no end, nothing kept)."""
        return (
            self._grep is None
            and self._until is None
            and self._held is None
            and self._priority is None
        )

    def feed(self, entries: Sequence[LogEntry]) -> Sequence[LogEntry]:
        """The entries of one batch to show now."""
        if self._done:
            return []
        chosen = entries
        until = self._until
        if until is not None:
            for i, entry in enumerate(chosen):
                if entry.time_ns > until:
                    chosen = chosen[:i]
                    self._done = True
                    break
        priority = self._priority
        if priority is not None:
            lo, hi = priority
            chosen = [entry for entry in chosen if lo <= level_or_default(entry.msg) <= hi]
        grep = self._grep
        if grep is not None:
            search = grep.search
            chosen = [entry for entry in chosen if search(entry.msg)]
        if self._held is not None:
            self._held.extend(chosen)
            return []
        self.shown += len(chosen)
        return chosen

    def finish(self) -> list[LogEntry]:
        """At the end of the dump: the entries kept (newest first with ``-r``)."""
        if self._held is None:
            return []
        out = list(self._held)
        self._held.clear()
        if self._reverse:
            out.reverse()
        self.shown += len(out)
        return out


def select(
    entries: Iterable[LogEntry],
    *,
    grep: re.Pattern[str] | None = None,
    until_ns: int | None = None,
    tail: int | None = None,
    reverse: bool = False,
    priority: tuple[int, int] | None = None,
) -> list[LogEntry]:
    """What a whole dump shows: the entries up to the first one later than
    ``until_ns`` whose level is within ``priority`` and whose message ``grep``
    matches, the last ``tail`` of them, newest first with ``reverse``.  (The
    model :class:`Selector` follows.)"""
    shown: list[LogEntry] = []
    for entry in entries:
        if until_ns is not None and entry.time_ns > until_ns:
            break
        if priority is not None and not priority[0] <= level_or_default(entry.msg) <= priority[1]:
            continue
        if grep is None or grep.search(entry.msg):
            shown.append(entry)
    if tail is not None:
        shown = shown[max(0, len(shown) - tail) :]
    if reverse:
        shown.reverse()
    return shown
