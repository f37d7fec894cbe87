"""structlog set-up shared by every program: events go to stderr.

Configure once, in a program's ``cli.py``: readable text (``prog: event
key=value``) by default, JSON with ``-log-format json`` (docs/memlogd.md).
The daemon also registers an *event sink*: every event is then rendered as
one line of ``event key=value ...`` text and handed to it (memlogd appends
it to its ring under source ``memlogd``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

EventSink = Callable[[str], None]
_sink: EventSink | None = None

_QUIET_KEYS = frozenset({"event", "timestamp", "level", "logger"})


def set_event_sink(sink: EventSink | None) -> None:
    """Send every event (also) to ``sink`` as a line of text; None stops it."""
    global _sink
    _sink = sink


def render_event_text(event_dict: MutableMapping[str, Any]) -> str:
    """``event key=value ...`` on one line; values with spaces or quotes are JSON."""
    parts = [str(event_dict.get("event", ""))]
    level = event_dict.get("level")
    if level and level not in ("info", "debug"):
        parts.append(f"level={level}")
    for key, value in event_dict.items():
        if key in _QUIET_KEYS:
            continue
        text = value if isinstance(value, str) else repr(value)
        if not text or any(c in text for c in ' "=\\') or not text.isprintable():
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _tee(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    sink = _sink
    if sink is not None:
        sink(render_event_text(event_dict))
    return event_dict


LOG_FORMATS = ("text", "json")
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}  # as logging


def log_format_option(program: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``-log-format`` flag of every program."""
    import click  # only where a command line is parsed

    from memlogd.cliflags import go_option

    return go_option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default="text",
        show_default=True,
        help=f"{program}'s own diagnostics on stderr: one line of text each "
        f"({program}: event key=value), or JSON objects.",
    )


def configure_logging(program: str, fmt: str = "text", level: str = "info") -> None:
    """Diagnostics of ``program`` on stderr: ``fmt`` "text" (``program: event
    key=value``, for people: a VM console and the ring are read by them) or
    "json" (one object per event, with a timestamp)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    # merge_contextvars: memlogd's roles tag their events (role=ship) in their tasks
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if fmt == "json":
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _tee,
            structlog.processors.JSONRenderer(),
        ]
    else:
        prefix = program + ": "
        processors += [_tee, lambda _l, _n, event: prefix + render_event_text(event)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
