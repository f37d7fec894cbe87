"""memlogd.record: the boot path's frozen records behave as frozen dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.errors import ConfigError
from memlogd.record import record
from memlogd.roleconfig import DEFAULT_SHIP_WINDOW, RoleConfig


@record
class Point:
    x: int
    y: int = 7
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DataPoint:
    x: int
    y: int = 7
    tags: tuple[str, ...] = ()


@record
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


@given(st.integers(), st.integers(), st.lists(st.text(max_size=3), max_size=3).map(tuple))
def test_a_record_is_what_a_frozen_dataclass_is(x: int, y: int, tags: tuple[str, ...]) -> None:
    ours = Point(x, y, tags)
    theirs = DataPoint(x, y, tags)
    assert (ours.x, ours.y, ours.tags) == (theirs.x, theirs.y, theirs.tags)
    assert repr(ours) == repr(theirs).replace("DataPoint", "Point")
    assert ours == Point(x=x, tags=tags, y=y)
    assert hash(ours) == hash(Point(x, y=y, tags=tags))
    assert (ours != Point(x, y + 1, tags)) is True


def test_defaults_fill_what_is_not_given() -> None:
    assert Point(1) == Point(1, 7, ())
    assert repr(Point(1)) == "Point(x=1, y=7, tags=())"


def test_a_record_never_equals_another_class_with_the_same_values() -> None:
    assert Point(1) != DataPoint(1)  # type: ignore[comparison-overlap]
    assert Point(1).__eq__(DataPoint(1)) is NotImplemented


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "Point() missing argument 'x'"),
        ((1, 2, (), 4), {}, "Point() takes 3 arguments"),
        ((1,), {"x": 2}, "Point() got an unexpected or repeated 'x'"),
        ((1,), {"z": 2}, "Point() got an unexpected or repeated 'z'"),
    ],
)
def test_wrong_arguments_are_a_type_error(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError) as raised:
        Point(*args, **kwargs)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_a_record_is_frozen() -> None:
    point = Point(1)
    with pytest.raises(AttributeError, match="cannot assign to field 'x': Point is frozen"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete field 'y': Point is frozen"):
        del point.y
    assert point == Point(1)


def test_post_init_validates() -> None:
    assert Checked(0).n == 0
    with pytest.raises(ValueError, match="must not be negative"):
        Checked(-1)


def test_match_args_follow_the_fields() -> None:
    match Point(3, 4):
        case Point(x, y, tags):
            assert (x, y, tags) == (3, 4, ())
        case _:
            pytest.fail("Point did not match positionally")


def test_the_ship_window_default_is_logships_own() -> None:
    from logship.relp import DEFAULT_WINDOW
    from memlogd.flags import FLAGS

    (flag,) = [f for f in FLAGS if f.name == "ship-window"]
    assert DEFAULT_SHIP_WINDOW == DEFAULT_WINDOW == flag.default == RoleConfig().ship_window


def test_a_ship_window_out_of_range_is_refused_even_without_ship_to() -> None:
    with pytest.raises(ConfigError, match="-ship-window must be within 1"):
        RoleConfig(ship_window=0)
