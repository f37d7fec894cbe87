"""Pure parts of logwrite: file names, rotation plans, line formats, cursor, rate limit."""

from __future__ import annotations

import posixpath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logwrite.lines import LineFormatter, TimeFormat
from logwrite.rotation import (
    MAX_STEM_BYTES,
    Remove,
    Rename,
    Segment,
    choose_victim,
    is_log_stem,
    log_file_name,
    needs_rotation,
    parse_log_file_name,
    plan_segments,
    rotation_plan,
    safe_log_name,
    undo_plan,
)
from memlogd.wire.cursorfile import CursorError, decode_cursor, encode_cursor
from memlogd.wire.protocol import Cursor
from memlogd.wire.timefmt import parse_time

pytestmark = pytest.mark.unit

# every code point, surrogates included (JSON "\ud800" decodes to one)
any_char = st.characters(exclude_categories=())
hostile = (
    st.text(any_char, max_size=300)
    | st.sampled_from(
        [
            "",
            ".",
            "..",
            "/",
            "../x",
            "a/../../b",
            "x\x00y",
            "a\nb",
            "%2F",
            "%~",
            "\udcff",
            "é" * 150,
            ".hidden",
            "%2Ehidden",
            ".%2E",
            "..." + "x" * 300,
        ]
    )
    | st.builds(lambda s: "." + s, st.text(any_char, max_size=300))
)


def assert_direct_child(stem: str) -> None:
    for index in (None, 0, 999_999_999):
        name = log_file_name(stem, index)
        raw = name.encode("utf-8")  # strict: a real file system takes it as it is
        assert len(raw) <= 255
        assert "/" not in name and "\x00" not in name
        assert name not in (".", "..")
        assert posixpath.dirname(posixpath.normpath(posixpath.join("/d", name))) == "/d"
    assert stem not in ("", ".", "..")
    assert not stem.startswith(".")  # never hidden from ls
    assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES
    assert all(c >= " " and c != "\x7f" for c in stem)


@given(hostile)
def test_any_name_stays_a_direct_child_of_the_dir(source: str) -> None:
    assert_direct_child(safe_log_name(source))


@given(st.lists(hostile, unique=True, max_size=30))
def test_distinct_names_never_share_a_file(sources: list[str]) -> None:
    stems = [safe_log_name(s) for s in sources]
    assert len(set(stems)) == len(stems)


@given(hostile)
def test_a_name_and_its_sanitised_form_never_share_a_file(source: str) -> None:
    stem = safe_log_name(source)
    if stem != source:
        assert safe_log_name(stem) != stem
        assert "%~" in stem


@given(st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="/%")))
def test_safe_short_names_are_kept_as_upstream_names_them(source: str) -> None:
    if source and not source.startswith(".") and len(source.encode()) <= MAX_STEM_BYTES:
        assert safe_log_name(source) == source


@given(hostile)
def test_every_stem_logwrite_writes_is_a_log_stem(source: str) -> None:
    assert is_log_stem(safe_log_name(source))


@given(hostile)
def test_a_log_stem_is_always_a_direct_child_of_the_dir(stem: str) -> None:
    """What a cursor file names is used only if logwrite could have written it
    (SPEC 19): so never a path, a hidden file, or a name too long."""
    if is_log_stem(stem):
        assert_direct_child(stem)


@pytest.mark.parametrize(
    "stem",
    [
        "/etc/passwd",
        "../victim/x",
        "..",
        ".",
        "",
        "a/b",
        ".hidden",
        "x\ny",
        "n" * 201,
        "%2Fx",
        "a%~0123456789ab/x",
        "%2E%~0123456789AB",
        "%zz%~0123456789ab",
    ],
)
def test_names_logwrite_never_writes_are_no_log_stems(stem: str) -> None:
    assert not is_log_stem(stem)


@given(hostile)
def test_no_stem_starts_with_a_dot(source: str) -> None:
    assert not safe_log_name(source).startswith(".")
    assert not log_file_name(safe_log_name(source), 0).startswith(".")


def _unescape(text: str) -> str:
    """The inverse of the percent-escaping (%XX -> byte, UTF-8 with surrogates)."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += text[i].encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "surrogatepass")


@given(hostile)
def test_a_changed_name_is_its_escaped_text_and_a_hash(source: str) -> None:
    stem = safe_log_name(source)
    if stem == source:
        assert "%" not in stem and not stem.startswith(".")
        return
    escaped, mark, digest = stem.rpartition("%~")
    assert mark == "%~" and len(digest) == 12 and int(digest, 16) >= 0
    if len(stem.encode("utf-8", "surrogatepass")) < MAX_STEM_BYTES - 3:  # not cut
        assert _unescape(escaped) == source  # reversible, so distinct names stay distinct
    else:
        assert source.startswith(_unescape(escaped))


@given(st.text(any_char, max_size=60))
def test_a_leading_dot_is_escaped_and_gets_the_hash_suffix(rest: str) -> None:
    stem = safe_log_name("." + rest)
    assert stem.startswith("%2E")
    assert "%~" in stem
    assert safe_log_name("." + rest) != safe_log_name("%2E" + rest)


def test_examples_of_changed_names() -> None:
    assert safe_log_name("NAME.out") == "NAME.out"
    assert safe_log_name("a b;c") == "a b;c"
    assert safe_log_name("../etc/passwd").startswith("%2E.%2Fetc%2Fpasswd%~")
    assert safe_log_name("..").startswith("%2E%2E%~")
    assert safe_log_name(".").startswith("%2E%~")
    assert safe_log_name(".hidden").startswith("%2Ehidden%~")
    assert safe_log_name("a.hidden") == "a.hidden"
    assert safe_log_name("%2Ehidden").startswith("%252Ehidden%~")
    assert safe_log_name("x\ny").startswith("x%0Ay%~")
    long = safe_log_name("a" * 300)
    assert len(long) == MAX_STEM_BYTES and long.startswith("a" * 180)
    assert safe_log_name("a" * 300) != safe_log_name("a" * 301)
    assert safe_log_name("a/b") == safe_log_name("a/b")  # stable


def test_rotation_plan_shifts_oldest_first() -> None:
    assert rotation_plan("s", 3) == [
        Rename("s.log.1", "s.log.2"),
        Rename("s.log.0", "s.log.1"),
        Rename("s.log", "s.log.0"),
    ]
    assert rotation_plan("s", 1) == [Rename("s.log", "s.log.0")]
    assert rotation_plan("s", 0) == [Remove("s.log")]
    with pytest.raises(ValueError):
        rotation_plan("s", -1)


def test_needs_rotation_only_past_the_limit() -> None:
    assert not needs_rotation(1024, 1024)
    assert needs_rotation(1025, 1024)


def _write_one_by_one(size: int, lengths: list[int], limit: int) -> list[int]:
    """Upstream's loop: indexes after which it rotates."""
    rotations = []
    for i, length in enumerate(lengths):
        size += length
        if size > limit:
            rotations.append(i)
            size = 0
    return rotations


@given(
    st.integers(0, 3000),
    st.lists(st.integers(1, 500), max_size=60),
    st.integers(1, 2000),
)
def test_segments_rotate_where_one_by_one_writing_would(
    size: int, lengths: list[int], limit: int
) -> None:
    segments = plan_segments(size, lengths, limit)
    # the segments tile the batch in order
    assert [i for seg in segments for i in range(seg.start, seg.stop)] == list(range(len(lengths)))
    assert all(seg.stop > seg.start for seg in segments)
    assert [seg.stop - 1 for seg in segments if seg.rotate_after] == _write_one_by_one(
        size, lengths, limit
    )
    assert all(seg.rotate_after for seg in segments[:-1])


def test_segments_example() -> None:
    assert plan_segments(1000, [10, 10, 30, 10], 1024) == [
        Segment(0, 3, True),
        Segment(3, 4, False),
    ]
    assert plan_segments(0, [], 10) == []


def _simulate(lines: list[bytes], limit: int, max_files: int) -> dict[str, bytes]:
    """A model file system driven by plan_segments + rotation_plan."""
    fs: dict[str, bytes] = {}
    for line in lines:
        for seg in plan_segments(len(fs.get("s.log", b"")), [len(line)], limit):
            fs["s.log"] = fs.get("s.log", b"") + line
            if seg.rotate_after:
                for step in rotation_plan("s", max_files):
                    if isinstance(step, Remove):
                        fs.pop(step.path, None)
                    elif step.src in fs:
                        fs[step.dst] = fs.pop(step.src)
    return fs


@given(st.integers(1, 200), st.integers(0, 5), st.integers(1, 300))
def test_rotated_files_hold_a_contiguous_run_ending_at_the_last_line(
    limit: int, max_files: int, count: int
) -> None:
    lines = [b"%d\n" % i for i in range(count)]
    fs = _simulate(lines, limit, max_files)
    assert set(fs) <= {"s.log"} | {f"s.log.{i}" for i in range(max_files)}
    order = [f"s.log.{i}" for i in reversed(range(max_files))] + ["s.log"]
    numbers = [int(x) for name in order for x in fs.get(name, b"").split()]
    assert numbers == list(range(count - len(numbers), count))
    for name in fs:
        if name != "s.log":  # every rotated file went past the limit on its last line
            assert len(fs[name]) > limit
            assert len(fs[name]) - len(fs[name].splitlines(keepends=True)[-1]) <= limit


def test_parse_log_file_name() -> None:
    assert parse_log_file_name("a.log") == ("a", None)
    assert parse_log_file_name("a.log.7") == ("a", 7)
    assert parse_log_file_name("a.log.log.0") == ("a.log", 0)
    assert parse_log_file_name("logwrite.cursor") is None
    assert parse_log_file_name(".log") is None
    assert parse_log_file_name("a.log.07") is None


@given(hostile, st.none() | st.integers(0, 10**6))
def test_parse_log_file_name_inverts_log_file_name(source: str, index: int | None) -> None:
    stem = safe_log_name(source)
    assert parse_log_file_name(log_file_name(stem, index)) == (stem, index)


def test_victim_is_the_oldest_rotated_file_of_the_largest_log() -> None:
    sizes = {
        "big.log": 10,
        "big.log.0": 100,
        "big.log.1": 100,
        "small.log": 150,
        "small.log.0": 10,
        "huge.log": 5000,  # largest, but nothing rotated to delete
        "logwrite.cursor": 10**9,
    }
    assert choose_victim(sizes) == "big.log.1"
    assert choose_victim({"a.log": 5, "x": 7}) is None
    assert choose_victim({}) is None


# --------------------------------------------------------------------------- lines

T = parse_time("2026-11-29T10:00:01.123456789Z")


def test_lines_in_upstream_format() -> None:
    fmt = LineFormatter()
    assert fmt.line(T, "svc.out", "hello world") == b"2026-11-29T10:00:01Z svc.out hello world\n"
    nano = LineFormatter(TimeFormat.RFC3339NANO)
    assert nano.line(T, "k", "x") == b"2026-11-29T10:00:01.123456789Z k x\n"
    assert fmt.line(T + 10**9, "k", "") == b"2026-11-29T10:00:02Z k \n"


def test_a_newline_in_source_or_message_cannot_split_an_entry() -> None:
    line = LineFormatter().line(T, "a\nb\r\x1b\u202e", "x\ny\x00\udcff")
    assert line == b"2026-11-29T10:00:01Z a\\x0ab\\x0d\\x1b\xe2\x80\xae x\\ny\x00?\n"
    assert line.count(b"\n") == 1


def test_lost_line() -> None:
    assert LineFormatter().lost_line(T, 5, 3) == (
        b"2026-11-29T10:00:01Z logwrite lost 3 entries (seq 5-7)\n"
    )


@given(st.text(min_size=1), st.integers(0, 2**63))
def test_cursor_round_trip(instance: str, seq: int) -> None:
    cursor = Cursor(instance, seq)
    assert decode_cursor(encode_cursor(cursor)) == (cursor, None)
    pending = {"a.log": ({"a.log": 3, "a.log.0": 9}, 120)}
    assert decode_cursor(encode_cursor(cursor, pending)) == (cursor, pending)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"seq":1}',
        b'{"instance":"a","seq":-1}',
        b'{"instance":"a","seq":true}',
        b'{"instance":"","seq":1}',
        b"\xff",
    ],
)
def test_bad_cursor_files_are_rejected(data: bytes) -> None:
    with pytest.raises(CursorError):
        decode_cursor(data)


# --------------------------------------------------------------------------- undo


class FakeDir:
    """Files as name -> (inode, content); appends and rotations as logwrite makes them."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, bytes]] = {}
        self.next_ino = 1

    def append(self, name: str, data: bytes) -> None:
        ino, content = self.files.get(name, (0, b""))
        if not ino:
            ino, self.next_ino = self.next_ino, self.next_ino + 1
        self.files[name] = (ino, content + data)

    def run(self, steps: list[Any]) -> None:
        for step in steps:
            if isinstance(step, Remove):
                self.files.pop(step.path, None)
            elif step.src in self.files:
                self.files[step.dst] = self.files.pop(step.src)

    def inodes(self) -> dict[str, int]:
        return {name: ino for name, (ino, _) in self.files.items()}


@given(
    st.integers(0, 4),
    st.lists(st.sampled_from(["append", "rotate"]), max_size=8),
    st.lists(st.sampled_from(["append", "rotate"]), max_size=12),
    st.data(),
)
def test_undo_plan_puts_the_files_back_as_before_the_batch(
    max_files: int, history: list[str], batch: list[str], data: Any
) -> None:
    stem = "svc.out"
    files = FakeDir()
    for op in history:
        if op == "append":
            files.append(log_file_name(stem), b"old\n")
        else:
            files.run(rotation_plan(stem, max_files))
    before = dict(files.files)
    cut = data.draw(st.integers(0, len(batch)), label="killed after this many steps")
    for op in batch[:cut]:
        if op == "append":
            files.append(log_file_name(stem), b"new\n")
        else:
            files.run(rotation_plan(stem, max_files))
    steps, lost = undo_plan(stem, {n: i for n, (i, _) in before.items()}, files.inodes())
    files.run(steps)
    live = log_file_name(stem)
    if live in before and live in files.files:  # then truncated to its recorded size
        ino, content = files.files[live]
        files.files[live] = (ino, content[: len(before[live][1])])
    assert {n: before[n] for n in before if n not in lost} == files.files
    assert all(b"new" not in content for _, content in files.files.values())
