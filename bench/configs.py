"""The loads of /work/shared/BENCHMARKS.md (configs a-f) and upstream's figures
for them. PURE: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from bench.lines import MAX_WRITER, MIN_LINE_BYTES

DEFAULT_MAX_LINES = 5000  # the daemon's default ring


class LoadError(ValueError):
    """A load that cannot be run."""


@dataclass(frozen=True, slots=True)
class Load:
    """One benchmark load: ``writers`` processes each write ``lines`` lines of
    ``line_bytes`` bytes (newline included); ``followers`` follow (mode 1)."""

    name: str
    writers: int
    lines: int
    line_bytes: int
    followers: int
    max_lines: int = DEFAULT_MAX_LINES

    def __post_init__(self) -> None:
        if not 1 <= self.writers <= MAX_WRITER:
            raise LoadError(f"--writers must be between 1 and {MAX_WRITER}")
        if self.lines < 1:
            raise LoadError("--lines must be at least 1")
        if self.line_bytes < MIN_LINE_BYTES:
            raise LoadError(f"--bytes must be at least {MIN_LINE_BYTES} (the line's header)")
        if self.followers < 0:
            raise LoadError("--followers must not be negative")
        if self.max_lines < 1:
            raise LoadError("--max-lines must be at least 1")

    @property
    def total_lines(self) -> int:
        return self.writers * self.lines

    def describe(self) -> str:
        text = f"{self.writers} x {self.lines:,} x {self.line_bytes:,}"
        if self.max_lines != DEFAULT_MAX_LINES:
            text += f", ring {self.max_lines:,}"
        return text


@dataclass(frozen=True, slots=True)
class Upstream:
    """The upstream Go memlogd's figures for a config (BENCHMARKS.md)."""

    offered: float  # lines/s
    delivered: float | None  # lines/s per follower
    lost_fraction: float | None
    p50_ms: float | None
    p99_ms: float | None
    peak_rss_mb: float | None
    ingest: float | None = None  # lines/s, config f


CONFIGS: dict[str, Load] = {
    "a": Load("a", writers=1, lines=200_000, line_bytes=100, followers=1),
    "b": Load("b", writers=50, lines=4_000, line_bytes=100, followers=1),
    "c": Load("c", writers=500, lines=200, line_bytes=100, followers=1),
    # 200k lines, not upstream's first 50k: 50k take a quarter of a second and
    # swing by half from run to run (shared BENCHMARKS.md, "Long lines")
    "d": Load("d", writers=1, lines=200_000, line_bytes=1000, followers=1),
    "e": Load("e", writers=10, lines=20_000, line_bytes=100, followers=4),
    "f": Load("f", writers=10, lines=20_000, line_bytes=100, followers=0, max_lines=2_000_000),
}

UPSTREAM: dict[str, Upstream] = {
    "a": Upstream(380e3, 272e3, 0.28, 21, 31, 8),
    "b": Upstream(409e3, 245e3, 0.40, 146, 477, 10),
    "c": Upstream(386e3, 232e3, 0.40, 124, 246, 22),
    # 200k x 1 KB side by side: offered 183-253k, 32% lost, p99 40-52 ms
    "d": Upstream(218e3, 148e3, 0.32, None, 46, 22),
    "e": Upstream(327e3, 322e3, 0.75, 83, 420, 14),
    "f": Upstream(598e3, None, None, None, None, None, ingest=598e3),
}

UPSTREAM_STARTUP_MS = 3.0  # to a connectable query socket, same harness (1.5 in the first table)
UPSTREAM_IDLE_RSS_MB = 3.0
UPSTREAM_FULL_RING_RSS_MB = 17.8
# upstream's memlogd + logwrite + kmsg, RSS summed: idle, and after 20k lines
UPSTREAM_STACK_IDLE_RSS_MB = 9.6
UPSTREAM_STACK_AFTER_RSS_MB = 16.5
MB_KIB = 1024  # "MB" in the report and the targets: MiB, as the RSS figures were read


@dataclass(frozen=True, slots=True)
class Target:
    """A target of BENCHMARKS.md: ``value <= limit`` (or ``>=`` if ``at_least``)."""

    key: str
    what: str
    limit: float
    unit: str
    at_least: bool = False
    upstream: str | None = None  # upstream's figure, as text (it may be RSS, not PSS)

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


TARGETS: tuple[Target, ...] = (
    Target("boot_ready_ms", "boot: exec -> both sockets bound (--ready-fd)", 50, "ms", False,
           f"{UPSTREAM_STARTUP_MS:g} ms"),
    Target("boot_answered_ms", "boot: exec -> first query answered", 250, "ms", False,
           f"{UPSTREAM_STARTUP_MS:g} ms"),
    Target("restart_ms", "worker SIGKILL -> query answered by a new worker", 200, "ms"),
    Target("stack_idle_pss_mb", "whole stack in one memlogd, idle: PSS", 45, "MB", False,
           f"{UPSTREAM_STACK_IDLE_RSS_MB:g} MB RSS"),
    Target("stack_after_lines_pss_mb", "whole stack, after {lines:,} lines: PSS", 45, "MB", False,
           f"{UPSTREAM_STACK_AFTER_RSS_MB:g} MB RSS"),
    Target("logship_lines_per_s", "logship --once, RELP to a local rsyslog", 100_000, "lines/s",
           True),
    Target("logship_wide_lines_per_s", "the same with --window 1024", 100_000, "lines/s", True),
)  # fmt: skip


def custom_load(
    base: Load | None,
    *,
    writers: int | None = None,
    lines: int | None = None,
    line_bytes: int | None = None,
    followers: int | None = None,
    max_lines: int | None = None,
) -> Load:
    """``base`` (or a one-writer default) with the given parameters changed."""
    start = base or Load("custom", 1, 100_000, 100, 1)
    changed = any(v is not None for v in (writers, lines, line_bytes, followers, max_lines))
    return Load(
        name=start.name + ("*" if changed and base is not None else ""),
        writers=start.writers if writers is None else writers,
        lines=start.lines if lines is None else lines,
        line_bytes=start.line_bytes if line_bytes is None else line_bytes,
        followers=start.followers if followers is None else followers,
        max_lines=start.max_lines if max_lines is None else max_lines,
    )
