"""The wire (docs/protocol.md): PURE byte formats every client and the daemon share.

Nothing here does I/O or imports trio, structlog or click (checked by
import-linter, pyproject.toml): the query byte and the JSON answers
(``protocol``, ``answerparser``), the fd datagram (``fdmsg``), the upgrade
handover (``handover``), times (``timefmt``), source globs (``globs``) and the
request filter (``filters``).
"""
