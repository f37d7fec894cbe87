"""The ``--state-file``: the last sequence number written out, per boot.

The file holds one JSON object, ``{"boot_id": "...", "seq": N}``.  Sequence
numbers restart at every boot, so a state saved under another boot id (or an
unreadable, malformed file) is ignored and kmsg starts as it would without
one.  Saving writes a temporary file beside it, fsyncs it and renames it over
the old one, so a crash leaves either the old or the new state, never half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog

from memlogd.atomicfile import UntrustedFileError, read_state, replace_file
from memlogd.errors import MemlogdError

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

log = structlog.get_logger("kmsg")


class StateError(MemlogdError):
    """The state file cannot be written."""


@dataclass(frozen=True, slots=True)
class KmsgState:
    boot_id: str
    seq: int


def encode_state(state: KmsgState) -> bytes:
    return json.dumps({"boot_id": state.boot_id, "seq": state.seq}).encode() + b"\n"


def parse_state(data: bytes) -> KmsgState | None:
    """The state in ``data``, or None when it is not a state file's content."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    boot_id, seq = obj.get("boot_id"), obj.get("seq")
    if not isinstance(boot_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
        return None
    if seq < 0:
        return None
    return KmsgState(boot_id, seq)


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """This boot's id ("" where the kernel does not tell it)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def load_state(path: str, boot_id: str) -> int | None:
    """The last sequence number saved in ``path`` during this boot, if any."""
    try:
        data = read_state(path, 4096)
    except UntrustedFileError as exc:
        log.warning("state_ignored", path=path, reason=exc.reason)
        return None
    if data is None:
        return None
    state = parse_state(data)
    if state is None:
        log.warning("state_malformed", path=path)
        return None
    if state.boot_id != boot_id:
        return None  # saved before a reboot: its numbers mean nothing now
    return state.seq


def save_state(path: str, state: KmsgState) -> None:
    """Replace ``path`` atomically with ``state``; StateError when it cannot."""
    try:
        replace_file(path, encode_state(state))
    except OSError as exc:
        raise StateError(f"cannot write state file {path}: {exc.strerror or exc}") from None
