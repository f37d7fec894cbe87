"""The daemon (the worker, when a keeper runs): docs/memlogd.md.

``state`` (the ring, sources, stats) <- ``intake`` (source fds);
``readers`` (query connections, the intake hold) use ``answers`` (PURE
filtering and rendering); ``console`` (the echo); ``serve`` (assembly and
shutdown); ``worker`` (forked by the keeper); ``host`` (what a role gets).
It imports no program and nothing of the keeper or the client (import-linter,
pyproject.toml).  This file imports nothing, so that ``answers`` stays pure.
"""
