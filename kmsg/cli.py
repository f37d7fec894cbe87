"""kmsg command line (placeholder until its issue lands)."""

import sys


def main() -> None:
    print("kmsg: not implemented yet", file=sys.stderr)
    sys.exit(2)
