"""The wire (docs/protocol.md): PURE byte formats every client and the daemon share.

Nothing here does I/O or imports trio, structlog or click (checked by
import-linter, pyproject.toml): the query byte and the JSON answers
(``protocol``, ``answerparser``, ``events``), the fd datagram (``fdmsg``),
the keeper and worker's messages (``handover``), the cursor file every client
keeps (``cursorfile``), times (``timefmt``), source globs (``globs``), the
request filter (``filters``), a line's severity (``severity``) and the
default socket paths (``paths``).
"""
