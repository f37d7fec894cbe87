"""``python -m bench.severity``: what finding a line's level costs (BENCHMARKS.md, "Severity").

:func:`memlogd.wire.severity.level` runs only for a reader that asks for
priorities (``logread -p``, its colours and ``-o json``, logship's PRI), once
per line; SPEC 15 bounds it: a line that matches no rule at most 0.3 µs, a
matching one at most 2 µs (a ``{`` line is parsed as JSON: a few µs).

Each line of :data:`LINES` (real lines of every format, and lines that match
none) is timed alone: ``--number`` calls, the best of ``--repeat`` runs (the
least disturbed by other processes: on a shared machine the median says more
about the neighbours than about the code), in ns per call.  Also the cost per
line of what uses it: logship's :class:`~logship.messages.MessageFormatter`
(PRI per line) and memlogd's priority filter of a block
(:func:`memlogd.daemon.answers.extended_dump` with ``priority``), each over a
batch of lines with and without a level.  Exit status 1 when a line is over
its bound (``--no-check``: always 0).
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

import click

from logship.messages import MessageFormatter
from memlogd.daemon import answers
from memlogd.daemon.encoding import encode_block
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Ring
from memlogd.wire import protocol as proto
from memlogd.wire.filters import RequestFilter
from memlogd.wire.severity import level

NO_MATCH_NS = 300  # SPEC 15: a line that matches no rule
MATCH_NS = 2_000  # a matching line
JSON_NS = 5_000  # a "{" line is parsed: "a few microseconds"

# (kind, line, the level it says): "none" lines match no rule (<= 0.3 us),
# "match" lines one (<= 2 us), "json" lines are parsed (a few us).
LINES: list[tuple[str, str, int | None]] = [
    ("none", "GET /error.html 200 1234 0.003s", None),
    ("none", "Starting nginx: nginx.", None),
    ("none", "Installing package foo-1.2.3", None),
    ("none", "2026/12/07 10:00:00 listening on :8080", None),
    ("none", "error connecting to database: connection refused", None),
    ("none", "time=2026-12-07T10:00:00Z msg=started", None),
    ("none", " indented continuation line of a stack trace", None),
    ("none", "", None),
    ("match", "<3>Failed to start foo.service", 3),
    ("match", 'time="2026-12-07T10:00:00Z" level=debug msg="Starting up" version=24.0', 7),
    ("match", "t=2026-12-07T10:00:00+0000 lvl=eror msg=x", 3),
    ("match", "E1207 10:00:00.123456       1 reflector.go:138] failed to list", 3),
    ("match", "INFO[0000] Starting containerd", 6),
    ("match", "ERROR:root:database unreachable", 3),
    ("match", "2026/12/07 10:00:00 ERROR connection refused", 3),
    ("json", '{"level":"error","ts":1733565600.1,"caller":"main.go:12","msg":"dial failed"}', 3),
    ("json", '{"time":"2026-12-07T10:00:00Z","msg":"no level key at all","n":3}', None),
]
BOUNDS = {"none": NO_MATCH_NS, "match": MATCH_NS, "json": JSON_NS}


def best_ns(call: Callable[[], object], number: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``number`` calls, in ns per call."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


def per_line(number: int, repeat: int) -> list[dict[str, Any]]:
    out = []
    for kind, line, wanted in LINES:
        found = level(line)
        if found != wanted:
            raise SystemExit(f"bench.severity: {line!r} says level {found}, not {wanted}")
        ns = best_ns(partial(level, line), number, repeat)
        out.append(
            {"kind": kind, "line": line, "level": found, "ns": round(ns), "max_ns": BOUNDS[kind]}
        )
    return out


def batch_lines(n: int) -> list[str]:
    """``n`` lines, a quarter with a level (logrus), the rest with none."""
    return [
        f'time="2026-12-07T10:00:00Z" level=warning msg="slow {i}"' if i % 4 == 0 else f"line {i}"
        for i in range(n)
    ]


def uses(number: int, repeat: int) -> dict[str, float]:
    """ns per line of logship's formatter and of memlogd's priority filter."""
    n = 1000
    texts = batch_lines(n)
    plain = [f"line {i}" for i in range(n)]
    formatter = MessageFormatter("vm1")

    def entries(msgs: list[str]) -> list[proto.LogEntry]:
        return [proto.LogEntry(1_765_101_600_000_000_000, "svc", m, i) for i, m in enumerate(msgs)]

    mixed, unlevelled = entries(texts), entries(plain)
    ring = Ring(2 * n)
    ring.extend(
        encode_block(1_765_101_600_000_000_000, "svc", Lines.of([t.encode() for t in texts]))
    )
    everything = proto.QueryRequest()
    warnings = proto.QueryRequest(priority=(0, 4))

    def dump(request: proto.QueryRequest) -> int:
        return sum(map(len, answers.extended_dump(ring, request, RequestFilter(request))))

    calls = max(1, number // n)
    return {
        "logship_format_plain_ns": best_ns(
            lambda: formatter.messages("i", unlevelled), calls, repeat
        )
        / n,
        "logship_format_mixed_ns": best_ns(lambda: formatter.messages("i", mixed), calls, repeat)
        / n,
        "memlogd_dump_all_ns": best_ns(lambda: dump(everything), calls, repeat) / n,
        "memlogd_dump_priority_ns": best_ns(lambda: dump(warnings), calls, repeat) / n,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--number", default=2_000, show_default=True, help="Calls per run.")
@click.option("--repeat", default=300, show_default=True, help="Runs; the best is reported.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--no-check", is_flag=True, help="Exit 0 even when a line is over its bound.")
def main(number: int, repeat: int, as_json: bool, no_check: bool) -> None:
    """Time memlogd.wire.severity.level per line, and its users per line."""
    lines = per_line(number, repeat)
    used = {k: round(v) for k, v in uses(number, repeat).items()}
    over = [r for r in lines if r["ns"] > r["max_ns"]]
    if as_json:
        click.echo(json.dumps({"lines": lines, "uses": used, "over": len(over)}))
    else:
        click.echo(f"{'ns':>6} {'max':>6} {'level':>5}  line")
        for r in lines:
            flag = " OVER" if r["ns"] > r["max_ns"] else ""
            click.echo(f"{r['ns']:>6} {r['max_ns']:>6} {r['level']!s:>5}  {r['line'][:60]!r}{flag}")
        for key, ns in used.items():
            click.echo(f"{ns:>6} ns/line  {key}")
    if over and not no_check:
        sys.exit(1)


if __name__ == "__main__":
    main()
