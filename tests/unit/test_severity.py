"""memlogd.wire.severity (SPEC 15): real lines of every format, near misses, and
properties (never raises; a prefix rule never fires past the line's start)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from memlogd.wire.severity import (
    DEFAULT_LEVEL,
    LEVEL_NAMES,
    NAMES,
    PriorityError,
    level,
    level_or_default,
    levels_or_default,
    parse_priority,
)

pytestmark = pytest.mark.unit

# Lines as the programs print them, with the level each says it has.
REAL_LINES = [
    # 1. <N>: sd-daemon, dmesg -r, our kmsg
    ("<3>Failed to start foo.service", 3),
    ("<6>(1234) - 2026-12-07T10:00:00.5Z: eth0: link up", 6),
    ("<0>", 0),
    ("<7>debug detail", 7),
    # 2. whole-line JSON
    ('{"level":"error","ts":1733565600.1,"caller":"main.go:12","msg":"dial failed"}', 3),  # zap
    ('{"time":"2026-12-07T10:00:00Z","level":"WARN","msg":"slow","n":3}', 4),  # slog JSON
    ('{"severity":"ERROR","message":"boom"}', 3),  # Google Cloud
    ('{"lvl":"dbug","msg":"x"}', 7),
    ('{"loglevel":"notice","msg":"x"}', 5),
    ('{ "level" : "info" , "msg":"spaces" }', 6),
    ('{"level":30,"severity":"warning","msg":"numeric level, named severity"}', 4),
    ('{"msg":"nested", "level":"fatal"}', 2),
    # 3. logfmt: logrus, slog's text handler, log15
    ('time="2026-12-07T10:00:00Z" level=debug msg="Starting up" version=24.0', 7),
    ('time="2026-12-07T10:00:00.123Z" level=error msg="failed to dial" error="no route"', 3),
    ("time=2026-12-07T10:00:00.000Z level=INFO msg=hello", 6),
    ("time=2026-12-07T10:00:00.000Z level=INFO+2 msg=hello", 6),
    ("time=2026-12-07T10:00:00.000Z level=DEBUG-4 msg=hello", 7),
    ("time=2026-12-07T10:00:00.000Z level=WARN msg=hello", 4),
    ('t=2026-12-07T10:00:00+0000 lvl=eror msg="handler failed" err=EOF', 3),
    ("t=2026-12-07T10:00:00+0000 lvl=crit msg=panic", 2),
    ("ts=2026-12-07T10:00:00Z caller=main.go:1 level=warn msg=x", 4),
    ('level=error msg="at the start"', 3),
    ('level="error" msg="quoted value"', 3),
    ('time="a level=debug b" level=warning msg=x', 4),  # the first outside quotes
    ('time=1 msg="he said \\"level=debug\\"" level=alert', 1),
    # 4. klog/glog
    ("E1207 10:00:00.123456       1 reflector.go:138] failed to list", 3),
    ("I1207 10:00:00.123456 4242 main.go:42] Serving on :8080", 6),
    ("W1207 10:00:00.000001   17 server.go:1] slow", 4),
    ("F1207 10:00:00.000001 1 main.go:9] fatal", 2),
    # 5. logrus on a terminal
    ("INFO[0000] Starting containerd", 6),
    ("WARN[0003] deprecated option", 4),
    ("ERRO[2026-12-07T10:00:00Z] dial failed", 3),
    ("DEBU[0001] x", 7),
    ("TRAC[0001] x", 7),
    ("FATA[0001] x", 2),
    ("PANI[0001] x", 2),
    # 6. Python logging's default
    ("ERROR:root:database unreachable", 3),
    ("WARNING:urllib3.connectionpool:Retrying", 4),
    ("INFO:__main__:started", 6),
    ("DEBUG:asyncio:Using selector: EpollSelector", 7),
    ("CRITICAL:app:out of memory", 2),
    ("error:x:lower case", 3),
    # 7. Go's log with slog's default handler
    ("2026/12/07 10:00:00 ERROR connection refused addr=10.0.0.1", 3),
    ("2026/12/07 10:00:00 WARN slow", 4),
    ("2026/12/07 10:00:00 INFO started", 6),
    ("2026/12/07 10:00:00 DEBUG detail", 7),
]

# Lines that look close to a rule and say no level.
NEAR_MISSES = [
    "GET /error.html 200",
    '127.0.0.1 - - [07/Dec/2026:10:00:00 +0000] "GET /error HTTP/1.1" 500 12',
    "https://example.com/?level=error",
    "Error: something failed",
    "error connecting to database",
    "ERROR: disk full",  # not Python's LEVEL:NAME:
    "ERROR:",
    "WARNING: ",
    "<8>not a level",
    "<3",
    "< 3>x",
    "<33>two digits",
    " <3>indented",
    '{"level":3,"msg":"numeric"}',
    '{"level":30}',  # pino
    '{"level":"verbose"}',
    '{"level":"error"',  # not whole
    '{"level":"error"} trailing',
    '{"data":{"level":"error"}}',  # not top-level
    '["level","error"]',
    "time=1 xlevel=error",
    "time=1 level_name=error",
    'time=1 msg="level=error"',
    "time=1 level=errorx",
    "time=1 level= msg=x",
    'time=a"b level=error',  # an unclosed quote: no token after it
    "timestamp=1 level=error",  # does not begin with time=, ts=, t= or level=
    "msg=x level=error",
    "lvl=error msg=x",  # lvl= at the start is not one of the starts
    "Level=error",
    "E1207 10:00:00 main.go:42] no microseconds",
    "E1207 10:00:00.123456 main.go:42] no thread",
    "X1207 10:00:00.123456 1 main.go:42] unknown letter",
    "INFO[x] no number",
    "INFO [0000] space",
    "Info[0000] case",
    "NOTE[0000] unknown",
    "INFOS:root:x",
    "2026/12/07 10:00:00 hello world",
    "2026/12/07 10:00:00 Error: x",
    "2026/12/07 10:00:00 NOTICE x",
    "2026/12/07 10:00:00.123456 ERROR micro",
    "2026-12-07 10:00:00 ERROR dashes",
    "Installing packages",
    "",
    "\x00\x01",
    "\ufeff<3>after a BOM",
]


@pytest.mark.parametrize(("line", "wanted"), REAL_LINES)
def test_real_lines(line: str, wanted: int) -> None:
    assert level(line) == wanted
    assert level(line.encode()) == wanted
    assert level_or_default(line) == wanted


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_near_misses_say_no_level(line: str) -> None:
    assert level(line) is None
    assert level(line.encode()) is None
    assert level_or_default(line) == DEFAULT_LEVEL == 6


def test_the_name_table() -> None:
    assert {
        **dict.fromkeys(["emerg", "emergency"], 0),
        "alert": 1,
        **dict.fromkeys(["crit", "critical", "fatal", "panic"], 2),
        **dict.fromkeys(["err", "error", "eror"], 3),
        **dict.fromkeys(["warn", "warning"], 4),
        "notice": 5,
        **dict.fromkeys(["info", "information"], 6),
        **dict.fromkeys(["debug", "trace", "dbug"], 7),
    } == NAMES
    for name, wanted in NAMES.items():
        for spelled in (name, name.upper(), name.capitalize()):
            assert level(f'{{"level":"{spelled}"}}') == wanted
            assert level(f"time=1 level={spelled} msg=x") == wanted
            assert level(f'ts=1 lvl="{spelled}"') == wanted


def test_first_rule_wins() -> None:
    assert level('<5>{"level":"error"}') == 5
    assert level("level=error <3>") == 3


# ------------------------------------------------------------------ properties

_STARTS = st.sampled_from([line for line, _ in REAL_LINES])


@given(st.text())
@example("{" * 100_000)
@example('{"level":"error","x":' + "[" * 100_000 + "]" * 100_000 + "}")
@example("time=" + '"' * 1000 + " level=error")
@example("time=" + 'a"b ' * 2000 + "level=error")
@example('{"level":"error","n":' + "9" * 5000 + "}")
def test_never_raises_on_text(text: str) -> None:
    found = level(text)
    assert found is None or 0 <= found <= 7
    assert level_or_default(text) == (DEFAULT_LEVEL if found is None else found)


@given(st.binary())
@example(b"<3>\xff\xfe")
@example(b"{\xff}")
@example(b"\xe2\x82")
def test_never_raises_on_bytes(data: bytes) -> None:
    found = level(data)
    assert found == level(data.decode("utf-8", "replace"))


# The characters a rule's line can begin with: <N>, JSON, logfmt (time=, ts=, t=,
# level=), klog's IWEF, logrus's DEBU..PANI, Python's names in any case, Go's year.
RULE_STARTS = set("<{tl" + "IWEF" + "DTP" + "CDIWEcdiwe" + "0123456789")


@given(
    st.characters().filter(lambda c: c not in RULE_STARTS),
    st.one_of(st.text(), _STARTS),
)
def test_a_prefix_rule_never_fires_past_the_start(first: str, rest: str) -> None:
    """Only a line's start is looked at: whatever follows a character that
    begins no rule, the line says no level."""
    assert level(first + rest) is None


@given(_STARTS, st.sampled_from([" ", "x", "#", "\t", "> ", "- "]))
def test_a_line_moved_from_the_start_says_nothing(line: str, before: str) -> None:
    assert level(before + line) is None


# ------------------------------------------------------------------ -p values


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("emerg", (0, 0)),
        ("0", (0, 0)),
        ("err", (0, 3)),
        ("error", (0, 3)),
        ("ERR", (0, 3)),
        ("warning", (0, 4)),
        ("warn", (0, 4)),
        ("notice", (0, 5)),
        ("info", (0, 6)),
        ("7", (0, 7)),
        ("3..5", (3, 5)),
        ("5..3", (3, 5)),
        ("err..warning", (3, 4)),
        ("debug..emerg", (0, 7)),
        ("info..info", (6, 6)),
    ],
)
def test_parse_priority(text: str, wanted: tuple[int, int]) -> None:
    assert parse_priority(text) == wanted


@pytest.mark.parametrize("text", ["", "8", "-1", "errors", "3..", "..3", "1..2..3", "3.5", " "])
def test_parse_priority_refuses(text: str) -> None:
    with pytest.raises(PriorityError, match="is not a priority"):
        parse_priority(text)


def test_level_names_are_syslogs() -> None:
    assert [NAMES[name] for name in LEVEL_NAMES] == list(range(8))


@given(
    st.lists(st.one_of(st.text(max_size=8), _STARTS, st.sampled_from(["", "x", "<"])), max_size=8)
)
def test_levels_or_default_is_level_or_default_of_each(texts: list[str]) -> None:
    """The bulk form (logship's runs): exactly the level of each line, whether
    or not some line starts as a rule's does."""
    assert levels_or_default(texts) == [level_or_default(t) for t in texts]
