"""Modules imported only when first used (docs/memlogd.md, "Memory").

structlog imports asyncio (for its standard-library integration, which no
program here uses) and trio imports ssl (for TLS streams, which no program
here opens): together about 3 MB of every process and 30 ms of every start.
trio also imports hmac (DTLS cookies) and with it hashlib and OpenSSL's
libcrypto, and idna (for non-ASCII host names): about 4 MB of memlogd's PSS
and 10 ms before its first answer (BENCHMARKS.md); logwrite's long names use
hashlib when they occur.  :func:`defer` puts a stand-in for such a module in
``sys.modules``; the first attribute anyone reads of it imports the real one.
``importlib.util.LazyLoader`` does not do here: on Python 3.11 the import
statement itself reads ``__spec__`` and so loads the module at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from memlogd.record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

DEFERRED = ("asyncio", "ssl", "hmac", "hashlib", "idna")

# Not used by any program, but imported by structlog.dev when installed: rich
# (with pygments) comes with import-linter, a test tool, and would cost every
# program about 10 ms and 2 MB in a development venv that production never
# has.  :func:`defer` makes it absent, so every venv runs what production runs.
ABSENT = ("rich",)


class _Deferred(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        module = sys.modules.get(self.__name__)
        if module is self or module is None:
            del sys.modules[self.__name__]
            module = importlib.import_module(self.__name__)
        return getattr(module, name)


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    """Stand-ins for ``names`` not imported yet (call before importing trio,
    structlog or click)."""
    for name in ABSENT:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # "import rich" fails
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec  # find_spec(name) works as for the real module
        sys.modules[name] = stand_in


def loaded(name: str) -> bool:
    """Whether the real module ``name`` has been imported."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, _Deferred)
