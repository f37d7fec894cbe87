"""What logship holds between memlogd and the receiver, sans I/O. PURE: no trio.

docs/logship.md.  :class:`Outbox` is the bookkeeping of :mod:`logship.shipper`:
the messages waiting to be sent, those in flight (sent, their delivery not yet
known), the cursor of the last delivered one (with everything before it), the
counts, and when the state file is to be saved.  The transports
(:class:`~logship.shipper.RelpTransport`, :class:`~logship.shipper.TcpTransport`)
only move bytes and tell it what happened:

* :meth:`Outbox.push` a batch of messages of entries (:meth:`Outbox.push_gap`
  the message of a gap);
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

from bisect import bisect_right

from memlogd.wire.protocol import Cursor

__all__ = ["OUTBOX_MAX", "Outbox", "OutboxError"]

OUTBOX_MAX = 4096  # messages waiting for the window (plus one batch from memlogd)


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
    state file (``stateful=False``) nothing is ever due.

    Every message has a *position*: 0 for the first ever pushed, and so on.
    Those before :attr:`head` are delivered, those from :attr:`head` to
    :attr:`next_position` in flight, the rest (:attr:`waiting`) wait.  The
    messages are kept in lists (their data, the seq of the cursor each
    completes), so that a batch is pushed, taken and delivered with a few
    list operations, not a few per message (BENCHMARKS.md, "Forwarding").
    """

    compact_at = 4096  # delivered messages are dropped from the lists' front beyond this

    __slots__ = (
        "_acked",
        "_base",
        "_data",
        "_gaps",
        "_head",
        "_instances",
        "_sent",
        "_seqs",
        "_starts",
        "_stateful",
        "cursor",
        "delivered",
        "gaps",
        "limit",
        "save_every",
        "sent_again",
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
        self.sent_again = 0  # messages resent after a reconnect (maybe duplicates)
        self._data: list[bytes] = []  # from position _base on
        self._seqs: list[int] = []  # the cursor's seq each message completes
        self._base = 0  # the position of _data[0]
        self._head = 0  # the oldest message in flight (delivered before it)
        self._sent = 0  # the first message waiting (in flight before it)
        self._gaps: list[int] = []  # positions of gap messages not yet delivered, ascending
        self._starts: list[int] = []  # where each instance's messages start, ascending
        self._instances: list[str] = []  # ... and its name
        self._acked: set[int] = set()  # positions acknowledged ahead of an older one
        self.unsaved = 0  # messages delivered since the state was last saved
        # half a window by default (RELP); 1: at every delivery (TCP)
        self.save_every = max(1, window // 2) if save_every is None else save_every
        self._stateful = stateful  # False: no state file, nothing is ever unsaved

    # ------------------------------------------------------------------ from memlogd

    def _instance_from(self, instance: str) -> None:
        if not self._instances or self._instances[-1] != instance:
            self._starts.append(self._base + len(self._data))
            self._instances.append(instance)

    def push(self, instance: str, seqs: list[int], data: list[bytes]) -> None:
        """Queue the messages ``data`` of entries ``seqs`` of ``instance``."""
        self._instance_from(instance)
        self._seqs += seqs
        self._data += data

    def push_gap(self, instance: str, last_seq: int, data: bytes) -> None:
        """Queue the message of a gap that ends at ``last_seq``."""
        self._instance_from(instance)
        self._gaps.append(self._base + len(self._data))
        self._seqs.append(last_seq)
        self._data.append(data)

    @property
    def waiting(self) -> int:
        """Messages waiting to be sent."""
        return self._base + len(self._data) - self._sent

    @property
    def full(self) -> bool:
        """memlogd's reader waits until the transport takes some."""
        return self.waiting >= self.limit

    # ------------------------------------------------------------------ to the receiver

    @property
    def in_flight(self) -> int:
        return self._sent - self._head

    @property
    def head(self) -> int:
        """The position of the oldest message in flight (or of the next taken)."""
        return self._head

    @property
    def next_position(self) -> int:
        """The position the next message taken gets."""
        return self._sent

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
        count = min(count, self.waiting)
        if count <= 0:
            return []
        start = self._sent - self._base
        self._sent += count
        return self._data[start : start + count]

    def resend(self) -> list[tuple[int, bytes]]:
        """What is in flight and not acknowledged: ``(position, data)``, in order,
        to send again on a new connection."""
        acked = self._acked
        base = self._base
        data = self._data
        again = [
            (pos, data[pos - base]) for pos in range(self._head, self._sent) if pos not in acked
        ]
        self.sent_again += len(again)
        return again

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
        head = self._head
        stop = head + count
        gaps = self._gaps
        dropped = 0
        while dropped < len(gaps) and gaps[dropped] < stop:
            dropped += 1
        if dropped:
            del gaps[:dropped]
        last = stop - 1
        instance = self._instances[bisect_right(self._starts, last) - 1]
        self.cursor = Cursor(instance, self._seqs[last - self._base])
        self.delivered += count - dropped
        self.gaps += dropped
        if self._stateful:
            self.unsaved += count
        self._head = stop
        self._compact()
        return count

    def _compact(self) -> None:
        drop = self._head - self._base
        if drop < self.compact_at or drop * 2 < len(self._data):
            return
        del self._data[:drop]
        del self._seqs[:drop]
        self._base = self._head
        keep = bisect_right(self._starts, self._head) - 1
        if keep > 0:
            del self._starts[:keep]
            del self._instances[:keep]

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
        return self._base + len(self._data) - self._head - len(self._gaps)
