"""logread on a terminal: control characters escaped (a service cannot drive the
terminal), -a to print them raw, the exact bytes when piped, colour by source only
on a terminal and never with NO_COLOR.  Real processes; the terminal is a pty in
raw mode, so what the tests read is exactly what logread wrote."""

from __future__ import annotations

import json
import os

import pytest

from logread.render import RESET, source_color
from tests.e2e.test_logread import ext_dump, on_terminal, run_logread, wait_landed, with_priority
from tests.helpers import MemlogdProcess, dump, new_source

pytestmark = pytest.mark.e2e

EVIL_SOURCE = b"evil\x1b]0;owned\x07"
EVIL_LINES = [
    b"clear \x1b[2J\x1b[H screen",
    b"bell \x07 nul \x00 del \x7f",
    b"csi \xc2\x9b31m c1",  # U+009B, the one-character CSI of C1
    b"cr \r overwrite",
    b"tab\tkept",
]


@pytest.fixture(name="hostile")
def fixture_hostile(memlogd: MemlogdProcess) -> MemlogdProcess:
    """memlogd holding lines that try to drive a terminal, from a source whose name does."""
    with new_source(memlogd.log_path, EVIL_SOURCE) as src:
        src.sendall(b"".join(line + b"\n" for line in EVIL_LINES))
    wait_landed(memlogd.query_path, "tab\tkept")
    return memlogd


def env(**changes: str | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    for key, value in changes.items():
        if value is not None:
            out[key] = value
    return out


ESCAPED_MSGS = [
    b"clear \\x1b[2J\\x1b[H screen",
    b"bell \\x07 nul \\x00 del \\x7f",
    b"csi \\x9b31m c1",
    b"cr \\x0d overwrite",
    b"tab\tkept",
]
ESCAPED_SOURCE = b"evil\\x1b]0\\;owned\\x07"  # ';' as upstream writes it, then the escapes


def test_messages_are_escaped_on_a_terminal(hostile: MemlogdProcess) -> None:
    q = hostile.query_path
    code, out, err = on_terminal("-socket", q, "-s", "evil*", "-o", "cat", env=env())
    assert (code, err) == (0, b"")
    assert out == b"".join(line + b"\n" for line in ESCAPED_MSGS)


def test_sources_are_escaped_on_a_terminal(hostile: MemlogdProcess) -> None:
    q = hostile.query_path
    entries = [e for e in dump(q) if e["source"].startswith("evil")]
    code, out, err = on_terminal("-socket", q, "-s", "evil*", env=env(NO_COLOR="1"))
    assert (code, err) == (0, b"")
    assert out == b"".join(
        e["time"].encode() + b";" + ESCAPED_SOURCE + b";" + msg + b"\n"
        for e, msg in zip(entries, ESCAPED_MSGS, strict=True)
    )
    assert b"\x1b" not in out and b"\x07" not in out and b"\r" not in out


def test_short_iso_is_escaped_and_coloured_on_a_terminal(hostile: MemlogdProcess) -> None:
    q = hostile.query_path
    code, out, err = on_terminal(
        "-socket", q, "-s", "evil*", "-n", "1", "-o", "short-iso", env=env()
    )
    assert (code, err) == (0, b"")
    color = source_color(EVIL_SOURCE.decode()).encode()
    last = [e for e in dump(q) if e["source"].startswith("evil")][-1]
    assert out == (
        last["time"][:19].encode()
        + b"+0000;"
        + color
        + ESCAPED_SOURCE
        + RESET.encode()
        + b";tab\tkept\n"
    )


def test_all_prints_control_characters_raw(hostile: MemlogdProcess) -> None:
    q = hostile.query_path
    for flag in ("-a", "--all", "-all"):
        code, out, err = on_terminal("-socket", q, "-s", "evil*", "-o", "cat", flag)
        assert (code, err) == (0, b"")
        assert out == b"".join(line + b"\n" for line in EVIL_LINES)


def test_piped_output_is_always_the_exact_message(hostile: MemlogdProcess) -> None:
    q = hostile.query_path
    result = run_logread("-socket", q, "-s", "evil*", "-o", "cat")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"".join(line + b"\n" for line in EVIL_LINES)
    short = run_logread("-socket", q, "-s", "evil*", "-n", "1")
    # a source's controls are escaped even when piped (SPEC 19), not a message's
    assert short.stdout.endswith(b";evil\\x1b]0\\;owned\\x07;tab\tkept\n")


def test_json_on_a_terminal_escapes_what_json_leaves_raw(hostile: MemlogdProcess) -> None:
    """C0 controls are JSON-escaped anyway; DEL and C1 (U+009B, a CSI) are not, so
    logread writes them as \\u escapes: the same JSON, safe for a terminal."""
    q = hostile.query_path
    server = ext_dump(q, sources=["evil*"])
    code, out, err = on_terminal("-socket", q, "-s", "evil*", "-o", "json")
    assert (code, err) == (0, b"")
    assert out == b"".join(
        with_priority(line).replace(b"\x7f", b"\\u007f").replace(b"\xc2\x9b", b"\\u009b") + b"\n"
        for line in server
    )
    assert [json.loads(line) for line in out.splitlines()] == [
        json.loads(with_priority(s)) for s in server
    ]
    assert b"\\u009b31m" in out and b"\x7f" not in out and b"\xc2\x9b" not in out
    piped = run_logread("-socket", q, "-s", "evil*", "-o", "json")
    assert piped.stdout == b"".join(with_priority(line) + b"\n" for line in server)


def test_list_sources_escapes_names_on_a_terminal(hostile: MemlogdProcess) -> None:
    q = hostile.query_path
    code, out, err = on_terminal("-socket", q, "--list-sources")
    assert (code, err) == (0, b"")
    (stats_line,) = ext_dump(q, stats=True)
    counts = {k: v["entries"] for k, v in json.loads(stats_line)["stats"]["sources"].items()}
    assert counts[EVIL_SOURCE.decode()] == len(EVIL_LINES)
    names = {name: name.replace("\x1b", "\\x1b").replace("\x07", "\\x07") for name in counts}
    width = max(map(len, names.values()))
    digits = max(len(str(n)) for n in counts.values())
    assert out == b"".join(
        f"{names[name].ljust(width)}  {str(counts[name]).rjust(digits)}\n".encode()
        for name in sorted(counts)
    )
    assert b"\x1b" not in out and b"\x07" not in out


# ---------------------------------------------------------------------- colour


@pytest.fixture(name="two")
def fixture_two(memlogd: MemlogdProcess) -> MemlogdProcess:
    for name in ("alpha", "beta"):
        with new_source(memlogd.log_path, name) as src:
            src.sendall(f"{name} says hi\n".encode())
        wait_landed(memlogd.query_path, f"{name} says hi")
    return memlogd


def coloured(q: str, names: tuple[str, ...] = ("alpha", "beta")) -> bytes:
    return b"".join(
        f"{e['time']};{source_color(e['source'])}{e['source']}{RESET};{e['msg']}\n".encode()
        for e in dump(q)
        if e["source"] in names
    )


def plain(q: str, names: tuple[str, ...] = ("alpha", "beta")) -> bytes:
    return b"".join(
        f"{e['time']};{e['source']};{e['msg']}\n".encode() for e in dump(q) if e["source"] in names
    )


def test_colour_by_source_on_a_terminal(two: MemlogdProcess) -> None:
    q = two.query_path
    assert source_color("alpha") != source_color("beta")
    code, out, err = on_terminal("-socket", q, "-s", "alpha", "-s", "beta", env=env())
    assert (code, err) == (0, b"")
    assert out == coloured(q)


@pytest.mark.parametrize(
    ("no_color", "args", "colour"),
    [
        ("1", [], False),
        ("", [], True),  # NO_COLOR set but empty: ignored, as no-color.org says
        (None, ["--color", "never"], False),
        ("1", ["--color", "always"], True),  # asked for explicitly
        (None, ["-color=never"], False),
    ],
)
def test_no_color(two: MemlogdProcess, no_color: str | None, args: list[str], colour: bool) -> None:
    q = two.query_path
    code, out, err = on_terminal(
        "-socket", q, "-s", "alpha", "-s", "beta", *args, env=env(NO_COLOR=no_color)
    )
    assert (code, err) == (0, b"")
    assert out == (coloured(q) if colour else plain(q))


def test_no_colour_when_piped(two: MemlogdProcess) -> None:
    q = two.query_path
    result = run_logread("-socket", q, "-s", "alpha", "-s", "beta")
    assert result.stdout == plain(q)
    forced = run_logread("-socket", q, "-s", "alpha", "-s", "beta", "--color", "always")
    assert forced.stdout == coloured(q)


FORGER = b"web\n2026-01-01T00:00:00Z;root;all is well\r"


@pytest.mark.parametrize("output", ["short", "short-iso"])
def test_a_newline_in_a_source_forges_no_line_even_piped(
    memlogd: MemlogdProcess, output: str
) -> None:
    """SPEC 19: a newline in a source name forged a second line in piped output."""
    with new_source(memlogd.log_path, FORGER) as src:
        src.sendall(b"real\n")
    wait_landed(memlogd.query_path, "real")
    result = run_logread("-socket", memlogd.query_path, "-s", "web*", "-o", output)
    assert (result.returncode, result.stderr) == (0, b"")
    (line,) = result.stdout.splitlines()
    assert line.endswith(b";web\\x0a2026-01-01T00:00:00Z\\;root\\;all is well\\x0d;real")


def test_bidirectional_overrides_are_escaped_on_a_terminal(memlogd: MemlogdProcess) -> None:
    with new_source(memlogd.log_path, "rtl\u202e") as src:
        src.sendall("invoice\u202efdp.exe\n".encode())
    wait_landed(memlogd.query_path, "invoice\u202efdp.exe")
    code, out, err = on_terminal("-socket", memlogd.query_path, "-s", "rtl*", env=env(NO_COLOR="1"))
    assert (code, err) == (0, b"")
    assert out.endswith(b";rtl\\u202e;invoice\\u202efdp.exe\n")
    piped = run_logread("-socket", memlogd.query_path, "-s", "rtl*", "-o", "cat")
    assert piped.stdout == "invoice\u202efdp.exe\n".encode()  # piped: the exact message
