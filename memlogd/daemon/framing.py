"""Line framing of a byte stream (docs/protocol.md, "Lines"). PURE: no I/O.

``LineSplitter.feed(chunk)`` returns the complete lines of a chunk as one
:class:`memlogd.daemon.lines.Lines` (the partial line, the chunk, and where each
line ends), so that nothing downstream needs an object per line.
The work is done per chunk with C-level ``bytes`` methods (rfind, find,
split) rather than per byte in Python.  Rules:

* lines end at ``\\n``; one ``\\r`` before it is removed;
* a line longer than ``max_line_len`` bytes is cut at the last UTF-8 boundary
  within the limit, and the rest of it, up to the next ``\\n``, is discarded.
  The cut line is emitted as soon as the limit is passed, so a writer sending
  100 MB without a newline costs ``max_line_len`` bytes of memory, not 100 MB;
* ``close()`` returns the final partial line at EOF, if there is one.

The result never depends on how the stream was chunked.
"""

from __future__ import annotations

from memlogd.config import DEFAULT_MAX_LINE_LEN
from memlogd.daemon.lines import EMPTY, Lines
from memlogd.wire.protocol import utf8_boundary


class LineSplitter:
    __slots__ = ("_discarding", "_max", "_maybe_crlf", "_partial", "truncated")

    def __init__(self, max_line_len: int = DEFAULT_MAX_LINE_LEN) -> None:
        if max_line_len < 1:
            raise ValueError("max_line_len must be at least 1")
        self._max = max_line_len
        self._partial = b""  # start of a line whose end has not arrived; never > _max
        self._discarding = False  # inside the rest of a line that was cut
        # The line cut last was max_line_len bytes and a "\r": if "\n" comes next,
        # it was a CRLF split between chunks and the line was not too long.
        self._maybe_crlf = False
        self.truncated = 0  # lines cut so far

    def _cut(self, line: bytes) -> bytes:
        self.truncated += 1
        return line[: utf8_boundary(line, self._max)]

    def feed(self, chunk: bytes) -> Lines:
        """The lines completed by ``chunk`` (without their line ends).

        The common case, no ``\\r`` and no line too long, is found without
        copying anything: the lines are the partial line and the chunk up to
        its last ``\\n``.  Anything else takes the general way."""
        partial = self._partial
        if not self._discarding and b"\r" not in chunk and not partial.endswith(b"\r"):
            last = chunk.rfind(b"\n")
            if last < 0:
                if len(partial) + len(chunk) <= self._max:
                    self._partial = partial + chunk
                    return EMPTY
            elif len(chunk) - last - 1 <= self._max and self._fit(len(partial), chunk, last):
                self._partial = chunk[last + 1 :]
                return Lines(partial, chunk, last, None)  # where each ends: found if needed
        return Lines.of(self._feed_any(chunk))

    def _fit(self, head: int, chunk: bytes, last: int) -> bool:
        """Whether every line of ``partial + chunk[:last]`` (``head``: the
        partial line's length) fits the limit, without an object per line:
        from the start of a line, the last newline within limit + 1 bytes ends
        only lines that fit, and if there is none, that line is too long.  One
        ``rfind`` per limit's worth of lines."""
        rfind, span = chunk.rfind, self._max + 1
        start, end = 0, span - head  # the first line began in the partial line
        while start <= last:
            nl = rfind(b"\n", start, end)
            if nl < 0:
                return False
            start = nl + 1
            end = start + span
        return True

    def _feed_any(self, chunk: bytes) -> list[bytes]:
        """:meth:`feed` for any chunk and state: line by line where it must."""
        if self._discarding:
            if self._maybe_crlf and chunk:
                self._maybe_crlf = False
                if chunk[0] == 0x0A:
                    self.truncated -= 1  # only its "\r\n" went past the limit
            nl = chunk.find(b"\n")
            if nl < 0:
                return []
            chunk = chunk[nl + 1 :]
            self._discarding = False
        partial = self._partial
        if b"\n" not in chunk:
            lines: list[bytes] = []
            rest = partial + chunk if partial else chunk
        else:
            lines = chunk.split(b"\n")  # one copy: the chunk is never joined to the partial
            rest = lines.pop()  # what follows the last newline
            if partial:
                lines[0] = partial + lines[0]
            if b"\r" in chunk or partial.endswith(b"\r"):  # one \r before \n goes
                lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
            if max(map(len, lines)) > self._max:
                lines = [line if len(line) <= self._max else self._cut(line) for line in lines]
        if len(rest) > self._max:
            lines.append(self._cut(rest))
            self._discarding = True
            self._maybe_crlf = len(rest) == self._max + 1 and rest[-1] == 0x0D
            rest = b""
        self._partial = rest
        return lines

    def close(self) -> bytes | None:
        """At EOF: the final line that had no newline, or None."""
        tail, self._partial = self._partial, b""
        self._discarding = self._maybe_crlf = False
        return tail or None

    def state(self) -> tuple[bytes, bool, bool, int]:
        """What a splitter taking over this stream needs (memlogd.wire.handover.Partial):
        the partial line, whether the rest of a cut line is being discarded,
        whether a CRLF may be split, and the count of lines cut."""
        return self._partial, self._discarding, self._maybe_crlf, self.truncated

    def restore(self, partial: bytes, discarding: bool, maybe_crlf: bool, truncated: int) -> None:
        """Take over a stream from another splitter's :meth:`state`."""
        self._partial = partial[: self._max]
        self._discarding, self._maybe_crlf, self.truncated = discarding, maybe_crlf, truncated

    @property
    def pending(self) -> int:
        """Bytes held for a line not yet complete (at most ``max_line_len``)."""
        return len(self._partial)
