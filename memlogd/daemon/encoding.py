"""The ring's blocks encoded from what a source wrote (docs/protocol.md, "Entries").

PURE: one batch of lines read together from one source becomes one
:class:`~memlogd.daemon.ring.Block` of JSON entries, in C code per batch (the
hot path; BENCHMARKS.md, "Long lines").  The entry format itself is the
wire's (:mod:`memlogd.wire.protocol`).
"""

from __future__ import annotations

from memlogd.daemon.lines import Lines, ends_of
from memlogd.daemon.ring import Block
from memlogd.wire.protocol import entry_prefix, json_string

_JSON_SPECIAL = bytes(c for c in range(32) if c != 10) + b'"\\'
_JSON_PLAIN = bytes(
    c for c in range(256) if c not in _JSON_SPECIAL
)  # deleted: what is left needs work


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_block(time_ns: int, source: str, lines: Lines) -> Block:
    """Encode lines read together from one source as JSON objects back to
    back, each ending in ``\\n``: the ring's block.

    The work is done per batch, by C code.  When the batch has nothing to
    escape and is valid UTF-8 (the common case), the lines' bytes are their
    JSON text: each entry is the shared prefix, the line and ``"}``, and the
    whole block is one ``replace`` and one ``join`` of what was read, with no
    object per line (BENCHMARKS.md, "Long lines").  Otherwise the lines are
    decoded together (invalid UTF-8 -> U+FFFD, which is the same as decoding
    each line since ``\\n`` never belongs to a multi-byte sequence),
    JSON-escaped by one ``map``, joined and encoded once.
    """
    if not lines:
        return Block(source, time_ns, b"", [])
    head = entry_prefix(time_ns, source)
    # What follows the lines in the body (the next partial line) is checked too:
    # at worst a line is then encoded the general way, to the same bytes.
    if (
        not lines.head.translate(None, _JSON_PLAIN)
        and not lines.body.translate(None, _JSON_PLAIN)
        and ((lines.head.isascii() and lines.body.isascii()) or _valid_utf8(lines.raw))
    ):  # nothing to escape or replace: the lines' bytes are their JSON text
        prefix = head.encode("utf-8", "replace") + b'"'
        data, n = lines.joined_with(prefix, b'"}\n' + prefix, b'"}\n')
        return Block(source, time_ns, data, lines.known_ends, step=len(prefix) + 2, count=n)
    texts = lines.raw.decode("utf-8", "replace").split("\n")
    body = ("}\n" + head).join(map(json_string, texts))
    data = (head + body + "}\n").encode("utf-8", "replace")
    entries = data.split(b"\n")
    entries.pop()  # after the last newline
    return Block(source, time_ns, data, lines.ends, enc_ends=ends_of(entries, past=1))
