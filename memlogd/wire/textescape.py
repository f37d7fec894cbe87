"""Escaping text so that it cannot forge or drive what shows it (SPEC 19). PURE: no I/O.

* :func:`escape_name` — a source name in a line of text (logread's ``short``
  and ``short-iso``, logwrite's files), always: each control character but
  tab (C0, DEL, C1: a newline or CR would start a forged line) as ``\\xNN``;
* :data:`TERMINAL_ESCAPES` — what a terminal must not get raw: those controls,
  and the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069,
  which reorder what follows them on screen) as ``\\uNNNN``.

Everything else, backslashes included, stays as it is: escaping twice changes
nothing.
"""

from __future__ import annotations

from typing import Final

# Unicode's control characters (category Cc): C0, DEL and C1.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]

#: every control but tab as ``\xNN``
CONTROL_ESCAPES: Final = {c: f"\\x{c:02x}" for c in _CONTROLS if c != 0x09}
#: the controls, and the bidirectional overrides as ``\uNNNN``
TERMINAL_ESCAPES: Final = {**CONTROL_ESCAPES, **{c: f"\\u{c:04x}" for c in _BIDI}}


def escape_name(name: str) -> str:
    """``name`` fit for one line of text: its control characters but tab as ``\\xNN``."""
    if name.isprintable():  # no control character (the common case, at C speed)
        return name
    return name.translate(CONTROL_ESCAPES)
