"""The benchmark of memlogd (docs/bench.md): ``python -m bench``.

It starts a daemon (ours, or any command that speaks the protocol), forks
writer processes that hand it socketpair fds and write fixed-size lines with
embedded timestamps, forks followers (query mode 1) that count what they
receive, and reports throughput, follow latency, loss, daemon CPU and memory
as JSON and as a table.  See docs/bench.md and BENCHMARKS.md.
"""
