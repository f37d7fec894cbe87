"""structlog set-up shared by every program: events go to stderr.

Configure once, in a program's ``cli.py``.  ``fmt``: "console" on a terminal,
"json" otherwise ("auto" picks).  The daemon also registers an *event sink*:
every event is then rendered as one line of ``event key=value ...`` text and
handed to it (memlogd appends it to its ring under source ``memlogd``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import click
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


LOG_FORMATS = ("auto", "json", "console")


def log_format_option(program: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``-log-format`` flag every long-running program has."""
    return click.option(
        "-log-format",
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default="auto",
        show_default=True,
        help=f"Format of {program}'s own events on stderr.",
    )


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """``fmt``: one of LOG_FORMATS ("auto": console on a terminal, else JSON)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _tee,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
