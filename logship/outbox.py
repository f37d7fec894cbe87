"""What logship holds between memlogd and the receiver, sans I/O. PURE: no trio.

docs/logship.md.  :class:`Outbox` is the bookkeeping of :mod:`logship.shipper`:
the messages waiting to be sent, those in flight (sent, their delivery not yet
known), the cursor of the last delivered one (with everything before it), the
counts, and when the state file is to be saved.  The transports
(:class:`~logship.shipper.RelpTransport`, :class:`~logship.shipper.TcpTransport`)
only move bytes and tell it what happened:

* :meth:`Outbox.push` a batch of messages (entries or a gap);
* :meth:`Outbox.take` what the window has :meth:`Outbox.room` for: those are
  in flight, each with its *position* (a number counting every message ever
  taken, so a RELP transaction number maps to one by an offset);
* :meth:`Outbox.ack` positions (RELP: acknowledged; in any order), or
  :meth:`Outbox.deliver` the oldest N in flight (TCP: ``window`` later ones
  were written, or the receiver closed after our end of stream);
* after a reconnect, :meth:`Outbox.resend` gives what is still in flight.

Delivered messages leave the flight in send order only (an acknowledged one
waits for those before it).  The state is saved (:attr:`Outbox.save_due`) once
half a window of delivered messages is unsaved, or when nothing is in flight;
until then the unsaved ones keep their place in the window (:meth:`room`), so
a killed logship sends again at most a window of what the receiver has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from memlogd.wire.protocol import Cursor

__all__ = ["OUTBOX_MAX", "Item", "Message", "Outbox", "OutboxError"]

OUTBOX_MAX = 4096  # messages waiting for the window (plus one batch from memlogd)
_COMPACT = 1024  # delivered messages dropped from the flight's front beyond this

Item = tuple[str, int, int]  # (instance, seq, entries): the cursor it completes; 1 entry, 0 gap
Message = tuple[Item, bytes]


class OutboxError(ValueError):
    """A number acknowledged that is not in flight (a receiver's mistake)."""

    def __init__(self, number: int) -> None:
        super().__init__(f"{number} is not in flight")
        self.number = number


class Outbox:
    """Messages between memlogd and a receiver with a window of ``window``
    messages (see the module docstring).  ``cursor`` is where a saved state
    resumes (None: nothing delivered yet).  The state is due every
    ``save_every`` delivered messages (default: half a window); without a
    state file (``stateful=False``) nothing is ever due."""

    __slots__ = (
        "_acked",
        "_flight",
        "_head",
        "_skip",
        "_stateful",
        "cursor",
        "delivered",
        "gaps",
        "limit",
        "queue",
        "queued_entries",
        "save_every",
        "unsaved",
        "window",
    )

    def __init__(
        self,
        window: int,
        cursor: Cursor | None = None,
        *,
        save_every: int | None = None,
        stateful: bool = True,
        limit: int = OUTBOX_MAX,
    ) -> None:
        if window < 1:
            raise ValueError(f"the window must be at least 1, not {window}")
        self.window = window
        self.limit = limit
        self.cursor = cursor  # delivered up to here, with everything before
        self.delivered = 0  # entries delivered
        self.gaps = 0  # gap messages delivered
        self.queue: deque[Message] = deque()  # waiting to be sent
        self.queued_entries = 0  # entries (not gaps) among them
        self._flight: list[Message] = []  # sent, delivery unknown; from _skip on
        self._skip = 0  # delivered messages still at the front of _flight
        self._head = 0  # the position of the oldest message in flight
        self._acked: set[int] = set()  # positions acknowledged ahead of an older one
        self.unsaved = 0  # messages delivered since the state was last saved
        # half a window by default (RELP); 1: at every delivery (TCP)
        self.save_every = max(1, window // 2) if save_every is None else save_every
        self._stateful = stateful  # False: no state file, nothing is ever unsaved

    # ------------------------------------------------------------------ from memlogd

    def push(self, messages: Sequence[Message], entries: int) -> None:
        """Queue ``messages`` (of which ``entries`` are entries, the rest gaps)."""
        self.queue.extend(messages)
        self.queued_entries += entries

    @property
    def full(self) -> bool:
        """memlogd's reader waits until the transport takes some."""
        return len(self.queue) >= self.limit

    # ------------------------------------------------------------------ to the receiver

    @property
    def in_flight(self) -> int:
        return len(self._flight) - self._skip

    @property
    def head(self) -> int:
        """The position of the oldest message in flight (or of the next taken)."""
        return self._head

    @property
    def next_position(self) -> int:
        """The position the next message taken gets."""
        return self._head + self.in_flight

    @property
    def unacked(self) -> int:
        """In flight and not acknowledged."""
        return self.in_flight - len(self._acked)

    def room(self) -> int:
        """Messages the window can take now (delivered unsaved ones count)."""
        return self.window - self.in_flight - self.unsaved

    def take(self, count: int) -> list[bytes]:
        """Move up to ``count`` waiting messages into flight; their data, in order
        (positions :attr:`next_position` onwards, as it was before the call)."""
        queue = self.queue
        count = min(count, len(queue))
        if count <= 0:
            return []
        popleft = queue.popleft
        taken = [popleft() for _ in range(count)]
        self._flight += taken
        entries = 0
        for item, _ in taken:
            entries += item[2]
        self.queued_entries -= entries
        return [data for _, data in taken]

    def resend(self) -> list[tuple[int, bytes]]:
        """What is in flight and not acknowledged: ``(position, data)``, in order,
        to send again on a new connection."""
        acked = self._acked
        head = self._head
        flight = self._flight
        skip = self._skip
        return [
            (head + i - skip, flight[i][1])
            for i in range(skip, len(flight))
            if head + i - skip not in acked
        ]

    def ack(self, numbers: list[int], offset: int = 0) -> int:
        """The messages at positions ``number - offset`` are acknowledged (each
        at most once); the messages now delivered, oldest first, leave the
        flight: their count.  :class:`OutboxError` for one not in flight."""
        count = len(numbers)
        if not count:
            return 0
        first = self._head + offset
        if (
            not self._acked
            and numbers[0] == first
            and count <= self.in_flight
            and (count == 1 or numbers == list(range(first, first + count)))
        ):
            return self.deliver(count)  # in order from the oldest: the usual case
        head = self._head
        end = head + self.in_flight
        acked = self._acked
        for number in numbers:
            pos = number - offset
            if not head <= pos < end or pos in acked:
                raise OutboxError(number)
            acked.add(pos)
        done = 0
        while head + done in acked:
            acked.remove(head + done)
            done += 1
        return self.deliver(done)

    def deliver(self, count: int) -> int:
        """The oldest ``count`` messages in flight are delivered."""
        count = min(count, self.in_flight)
        if count <= 0:
            return 0
        flight = self._flight
        start = self._skip
        stop = start + count
        entries = 0
        for i in range(start, stop):
            entries += flight[i][0][2]
        last = flight[stop - 1][0]
        self.delivered += entries
        self.gaps += count - entries
        self.cursor = Cursor(last[0], last[1])
        if self._stateful:
            self.unsaved += count
        self._head += count
        if stop == len(flight):
            flight.clear()
            self._skip = 0
        elif stop > _COMPACT:
            del flight[:stop]
            self._skip = 0
        else:
            self._skip = stop
        return count

    # ------------------------------------------------------------------ the state file

    @property
    def save_due(self) -> bool:
        """Half a window delivered unsaved, or nothing in flight with some unsaved."""
        return self.unsaved >= self.save_every or (self.unsaved > 0 and not self.in_flight)

    def saved(self) -> None:
        """The state now holds :attr:`cursor`."""
        self.unsaved = 0

    # ------------------------------------------------------------------ the end

    @property
    def idle(self) -> bool:
        """Nothing in flight."""
        return not self.in_flight

    def undelivered(self) -> int:
        """Entries read from memlogd and not delivered (waiting or in flight)."""
        flight = self._flight
        entries = self.queued_entries
        for i in range(self._skip, len(flight)):
            entries += flight[i][0][2]
        return entries
