"""Turning raw measurements into figures, and figures into a table. PURE: no I/O."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from bench.configs import (
    MB_KIB,
    TARGETS,
    UPSTREAM,
    UPSTREAM_FULL_RING_RSS_MB,
    UPSTREAM_IDLE_RSS_MB,
    UPSTREAM_STACK_AFTER_RSS_MB,
    UPSTREAM_STACK_IDLE_RSS_MB,
    UPSTREAM_STARTUP_MS,
    Load,
)

# Figures where the worst of several repeats is reported rather than the median.
WORST_OF = {"lost_max": max, "lost_total": max, "complete": min}


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; None if empty."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError("pct must be between 0 and 100")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _rate(count: int, seconds: float | None) -> float | None:
    return count / seconds if seconds else None


def summarise(load: Load, raw: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run from what its children reported."""
    writers = raw["writers"]
    followers = raw["followers"]
    written = sum(w["lines"] for w in writers)
    first = min(w["first_write_ns"] for w in writers)
    closed = [w["closed_ns"] for w in writers]
    ingest_s = (max(closed) - first) / 1e9 if all(c is not None for c in closed) else None
    write_s = (max(w["written_ns"] for w in writers) - first) / 1e9
    last_rx = [f["last_rx_ns"] for f in followers if f["last_rx_ns"] is not None]
    wall_s = ingest_s  # without followers, the run ends when every fd was read
    if followers:
        wall_s = (max(last_rx) - first) / 1e9 if last_rx else None
    received = [f["received"] for f in followers]
    lost = [max(0, written - r) for r in received]
    latencies = [ns / 1e6 for f in followers for ns in f["latency_ns"]]
    cpu_s = raw["daemon_cpu_s"]
    return {
        "written": written,
        "wall_s": wall_s,
        "write_s": write_s,
        "offered_lines_per_s": _rate(written, wall_s),
        "delivered_lines_per_s": [_rate(r, wall_s) for r in received],
        "delivered_min_lines_per_s": _rate(min(received), wall_s) if received else None,
        "ingest_lines_per_s": _rate(written, ingest_s),
        "received": received,
        "lost": lost,
        "lost_max": max(lost) if lost else 0,
        "lost_total": sum(lost),
        "duplicates_max": max((max(0, r - written) for r in received), default=0),
        "follower_end": [f["end"] for f in followers],
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": max(latencies) if latencies else None,
        "latency_samples": len(latencies),
        "daemon_cpu_s": cpu_s,
        "daemon_cpu_s_per_million_lines": cpu_s / (written / 1e6),
        "daemon_peak_rss_kib": raw["daemon_peak_rss_kib"],
        "daemon_pss_kib": raw.get("daemon_pss_kib"),
        "daemon_alive": raw["daemon_alive"],
        "complete": all(r == written for r in received) and ingest_s is not None,
    }


def combine(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several repeats of one load: the median of each figure (the worst for
    loss and completeness); lists and other values come from the first run."""
    if len(summaries) == 1:
        return dict(summaries[0])
    out: dict[str, Any] = {}
    for key, first in summaries[0].items():
        values = [s[key] for s in summaries]
        if key in WORST_OF:
            out[key] = WORST_OF[key](values)
        elif isinstance(first, bool) or not isinstance(first, int | float):
            out[key] = first
        elif any(v is None for v in values):
            out[key] = None
        else:
            out[key] = statistics.median(values)
    out["repeats"] = len(summaries)
    return out


# ---------------------------------------------------------------------- table


def human(value: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23M', 381000 -> '381k', None -> '-'."""
    if value is None:
        return "-"
    scale, suffix = 1.0, ""
    for limit, name in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        if abs(float(f"{value:.{digits}g}")) >= limit:  # as rounded: 999.9k is 1M
            scale, suffix = limit, name
    return f"{value / scale:.{digits}g}{suffix}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def mb(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MB"


_HEAD = (
    "cfg",
    "daemon",
    "writers x lines x bytes",
    "F",
    "offered/s",
    "delivered/s",
    "ingest/s",
    "lost",
    "p50 / p99 ms",
    "CPU s/M",
    "peak RSS",
    "PSS end",
)


def _lost_text(lost: int, written: int) -> str:
    if not written:
        return "-"
    return f"{human(lost)} ({100 * lost / written:.0f}%)" if lost else "0"


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, entry in results.get("configs", {}).items():
        load, s = entry["load"], entry["summary"]
        follow = load["followers"] > 0
        rows.append(
            (
                name,
                "ours",
                entry["load_text"],
                str(load["followers"]),
                human(s["offered_lines_per_s"]),
                human(s["delivered_min_lines_per_s"]) if follow else "-",
                human(s["ingest_lines_per_s"]),
                _lost_text(s["lost_max"], s["written"]) if follow else "-",
                f"{ms(s['latency_p50_ms'])} / {ms(s['latency_p99_ms'])}" if follow else "-",
                f"{s['daemon_cpu_s_per_million_lines']:.2f}",
                mb(s["daemon_peak_rss_kib"]),
                mb(s.get("daemon_pss_kib")),
            )
        )
        up = UPSTREAM.get(name)
        if up is not None:
            lost = "-" if up.lost_fraction is None else f"{100 * up.lost_fraction:.0f}%"
            lat = "-" if up.p50_ms is None else f"{up.p50_ms:g} / {up.p99_ms:g}"
            rows.append(
                (
                    "",
                    "upstream",
                    "",
                    "",
                    human(up.offered),
                    human(up.delivered),
                    human(up.ingest),
                    lost,
                    lat,
                    "-",
                    "-" if up.peak_rss_mb is None else f"{up.peak_rss_mb:g} MB",
                    "-",
                )
            )
    return rows


def render_table(results: dict[str, Any]) -> str:
    """The report as aligned text: one row per config, upstream's below it."""
    body = table_rows(results)
    lines: list[str] = []
    if body:
        rows = [_HEAD, *body]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
    sections = _sections(results)
    lines.extend(sections[1:] if not lines else sections)
    problems = [
        f"config {name}: {', '.join(entry['problems'])}"
        for name, entry in results.get("configs", {}).items()
        if entry.get("problems")
    ]
    problems.extend(f"stack: {p}" for p in (results.get("stack") or {}).get("problems", ()))
    problems.extend(
        f"{section}: {error}" for section, error in (results.get("errors") or {}).items()
    )
    if problems:
        lines.append("")
        lines.extend(problems)
    return "\n".join(lines)


def problems_of(load: Load, summary: dict[str, Any]) -> list[str]:
    """What went wrong in a run, in words (empty when it is all fine)."""
    out = []
    if summary["lost_max"]:
        out.append(f"a follower lost {summary['lost_max']} of {summary['written']} lines")
    if summary["duplicates_max"]:
        out.append(f"a follower got {summary['duplicates_max']} lines more than written")
    if summary["ingest_lines_per_s"] is None:
        out.append("not every writer fd was closed by the daemon before the deadline")
    if load.followers and summary["latency_samples"] == 0:
        out.append("no latency sample")
    if not summary["daemon_alive"]:
        out.append("the daemon died")
    return out


# ---------------------------------------------------------------------- run-independent figures


def _roles_text(figures: dict[str, Any]) -> str:
    roles = figures.get("pss_kib_by_role") or {}
    count = len(figures.get("processes") or ())
    parts = ", ".join(f"{role} {mb(kib)}" for role, kib in roles.items())
    noun = "process" if count == 1 else "processes"
    return f"{count} {noun}" + (f": {parts}" if parts and count > 1 else "")


def _sections(results: dict[str, Any]) -> list[str]:
    """The lines after the per-config table: boot, restart, memory, stack, logship, targets."""
    out: list[str] = []
    if results.get("precompiled"):
        pre = results["precompiled"]
        state = "precompiled" if pre.get("ok") else "NOT precompiled"
        out.append(f"modules {state} before measuring: {' '.join(pre.get('packages', ()))}")
    boot = results.get("boot")
    if boot:
        out.append(
            f"boot, median of {boot['starts']} starts: sockets bound ({boot['ready_by']})"
            f" {ms(boot['ready_ms'])} ms, first query answered {ms(boot['answered_ms'])} ms"
            f" (upstream {UPSTREAM_STARTUP_MS:g} ms to connectable)"
        )
    restart = results.get("restart")
    if restart:
        if "skipped" in restart:
            out.append(f"worker restart: skipped ({restart['skipped']})")
        else:
            out.append(
                f"worker restart, median of {restart['kills']} SIGKILLs: answered by the new"
                f" worker {ms(restart['restart_ms'])} ms after the kill"
            )
    memory = results.get("memory")
    if memory:
        idle = memory["idle"]
        out.append(
            f"idle: PSS {mb(memory['idle_pss_kib'])} over {_roles_text(idle)};"
            f" RSS {mb(memory['idle_rss_kib'])} (upstream RSS {UPSTREAM_IDLE_RSS_MB:g} MB)"
        )
        out.append(
            f"full ring of {memory['ring_lines']:,} x {memory['line_bytes']:,} B lines:"
            f" PSS {mb(memory['full_ring_pss_kib'])}, RSS {mb(memory['full_ring_rss_kib'])},"
            f" peak RSS {mb(memory['full_ring_peak_rss_kib'])}"
            f" (upstream peak RSS {UPSTREAM_FULL_RING_RSS_MB:g} MB)"
        )
    stack = results.get("stack")
    if stack:
        out.extend(_stack_lines(stack))
    logship = results.get("logship")
    if logship:
        if "skipped" in logship:
            out.append(f"logship: skipped ({logship['skipped']})")
        else:
            wide = logship.get("wide") or {}
            out.append(
                f"logship --once over RELP: {human(logship.get('lines_per_s'))} lines/s"
                f" (window {(logship.get('load') or {}).get('window', '-')}),"
                f" {human(wide.get('lines_per_s'))}"
                f" lines/s with --window {wide.get('window', '-')}"
            )
    targets = results.get("targets")
    if targets:
        out.append("")
        out.extend(_targets_table(targets))
    return ["", *out] if out else out


def _stack_lines(stack: dict[str, Any]) -> list[str]:
    if "skipped" in stack:
        return [f"whole stack: skipped ({stack['skipped']})"]
    one = stack["one"]
    kmsg = "-kmsg" if stack["kmsg"] else f"no -kmsg: {stack['kmsg_note']}"
    out = [
        f"whole stack in one memlogd (-persist-dir, -ship-to tcp, {kmsg}), keeper included:"
        f" PSS idle {mb(stack['idle_pss_kib'])} ({_roles_text(one['idle'])}),"
        f" after {stack['lines']:,} x {stack['line_bytes']} B lines"
        f" {mb(stack['after_lines_pss_kib'])};"
        f" RSS {mb(stack['idle_rss_kib'])} / {mb(stack['after_lines_rss_kib'])}"
        f" (upstream RSS {UPSTREAM_STACK_IDLE_RSS_MB:g} / {UPSTREAM_STACK_AFTER_RSS_MB:g} MB)"
    ]
    sep = stack.get("separate")
    if sep:
        names = ", ".join(sep["programs"])
        out.append(
            f"  as separate programs: memlogd, logwrite, kmsg PSS"
            f" {mb(sep['three_idle_pss_kib'])} / {mb(sep['three_after_lines_pss_kib'])};"
            f" {names} {mb(sep['idle']['pss_kib'])} / {mb(sep['after_lines']['pss_kib'])}"
        )
    return out


def kib_to_mb(kib: float | None) -> float | None:
    return None if kib is None else kib / MB_KIB


def target_values(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets of BENCHMARKS.md are about, where measured."""
    boot = results.get("boot") or {}
    restart = results.get("restart") or {}
    stack = results.get("stack") or {}
    logship = results.get("logship") or {}
    return {
        "boot_ready_ms": boot.get("ready_ms"),
        "boot_answered_ms": boot.get("answered_ms"),
        "restart_ms": restart.get("restart_ms"),
        "stack_idle_pss_mb": kib_to_mb(stack.get("idle_pss_kib")),
        "stack_after_lines_pss_mb": kib_to_mb(stack.get("after_lines_pss_kib")),
        "logship_lines_per_s": logship.get("lines_per_s"),
        "logship_wide_lines_per_s": (logship.get("wide") or {}).get("lines_per_s"),
    }


def targets_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target whose figure was measured: the value, the limit, met or not."""
    values = target_values(results)
    lines = (results.get("stack") or {}).get("lines", 0)
    out = []
    for target in TARGETS:
        value = values.get(target.key)
        if value is None:
            continue
        out.append(
            {
                "key": target.key,
                "what": target.what.format(lines=lines),
                "value": value,
                "limit": target.limit,
                "unit": target.unit,
                "at_least": target.at_least,
                "met": target.met(value),
                "upstream": target.upstream,
            }
        )
    return out


def _value_text(value: float, unit: str, limit: bool = False) -> str:
    if unit == "lines/s":
        return f"{human(value)} {unit}"
    if limit:
        return f"{value:g} {unit}"
    if unit == "ms":
        return f"{ms(value)} ms"
    return f"{value:.1f} {unit}"


def _targets_table(targets: Sequence[dict[str, Any]]) -> list[str]:
    rows = [("target", "ours", "limit", "upstream", "")]
    for t in targets:
        op = ">=" if t["at_least"] else "<="
        rows.append(
            (
                t["what"],
                _value_text(t["value"], t["unit"]),
                f"{op} {_value_text(t['limit'], t['unit'], limit=True)}",
                t["upstream"] or "-",
                "met" if t["met"] else "MISSED",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
