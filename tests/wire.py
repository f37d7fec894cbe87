"""Client and wire code only the tests use.

* :func:`encode_entry`: one entry as memlogd writes it on the query socket
  (the daemon encodes whole blocks: memlogd/daemon/encoding.py);
* :func:`register_fd`: :func:`memlogd.client.send_fds` for trio code, waiting
  for room in memlogd's queue without blocking the other tasks.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import trio

from memlogd.client.reasons import connect_reason
from memlogd.errors import ConnectError
from memlogd.wire.fdmsg import fd_ancdata
from memlogd.wire.protocol import LogEntry, entry_prefix, json_string


def encode_entry(entry: LogEntry) -> bytes:
    """One entry as a JSON line (with ``\\n``); ``seq`` last when set."""
    text = entry_prefix(entry.time_ns, entry.source) + json_string(entry.msg)
    if entry.seq is not None:
        text += ',"seq":' + str(entry.seq)
    return (text + "}\n").encode("utf-8", "replace")


async def register_fd(path: str, name: str, fds: Sequence[int]) -> None:
    """``send_fds`` for trio code."""
    payload = name.encode("utf-8", "replace")
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            await sock.connect(path)
            await sock.sendmsg([payload], fd_ancdata(fds))
        except OSError as exc:
            raise ConnectError(path, connect_reason(path, exc, socket.SOCK_DGRAM)) from None
