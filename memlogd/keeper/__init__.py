"""The keeper (docs/memlogd.md, "The keeper"): the process that holds the sockets,
every source fd and the journal, so that a crashed or upgraded worker loses
nothing.  No trio and no click here (import-linter, pyproject.toml).
"""
