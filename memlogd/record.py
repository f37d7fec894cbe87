"""Frozen records for memlogd's boot path, without :mod:`dataclasses`. PURE.

memlogd reads its flags and validates its configuration before it binds its
sockets and says it is ready, a budget of 50 ms from exec (docs/memlogd.md,
"Boot").  ``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``
and ``tokenize``): 10-15 ms of that budget (BENCHMARKS.md, "Boot").  So the
few classes on that path (:class:`memlogd.config.DaemonConfig`,
:class:`memlogd.roleconfig.RoleConfig`, :class:`memlogd.flags.Flag`) are
``@record``: for the type checker exactly a frozen dataclass, at run time a
small decorator that gives the same constructor (positional or keyword
fields in order, class-level defaults, ``__post_init__``), equality, hash,
repr and immutability.  Everything else uses dataclasses.
"""

from __future__ import annotations

# ``typing.TYPE_CHECKING`` without importing typing (10 ms here): the boot-path
# modules import this one; mypy takes any name TYPE_CHECKING as true
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import TypeVar, dataclass_transform

    _T = TypeVar("_T")

    @dataclass_transform(frozen_default=True)
    def record(cls: type[_T]) -> type[_T]: ...

else:

    def record(cls):
        names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063 (not inspect)
        defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
        post_init = getattr(cls, "__post_init__", None)

        def __init__(self, *args, **kwargs):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes {len(names)} arguments")
            values = dict(zip(names, args, strict=False))
            for name, value in kwargs.items():
                if name not in names or name in values:
                    raise TypeError(f"{cls.__name__}() got an unexpected or repeated {name!r}")
                values[name] = value
            for name in names:
                if name in values:
                    value = values[name]
                elif name in defaults:
                    value = defaults[name]
                else:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                object.__setattr__(self, name, value)
            if post_init is not None:
                post_init(self)

        def __setattr__(self, name, value):
            raise AttributeError(f"cannot assign to field {name!r}: {cls.__name__} is frozen")

        def __delattr__(self, name):
            raise AttributeError(f"cannot delete field {name!r}: {cls.__name__} is frozen")

        def _values(self):
            return tuple(getattr(self, name) for name in names)

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return _values(self) == _values(other)

        def __hash__(self):
            return hash(_values(self))

        def __repr__(self):
            fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
            return f"{cls.__qualname__}({fields})"

        for function in (__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__):
            function.__qualname__ = f"{cls.__qualname__}.{function.__name__}"
            setattr(cls, function.__name__, function)
        cls.__match_args__ = names
        return cls
