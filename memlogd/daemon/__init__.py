"""The daemon (the worker, when a keeper runs): docs/memlogd.md.

``daemon`` (state: ring, sources, stats) <- ``intake`` (source fds);
``readers`` (query connections, the intake hold) use ``answers`` (PURE
filtering and rendering); ``console`` (the echo); ``serve`` (composition and
shutdown).  This file imports nothing, so that ``answers`` stays pure.
"""
