"""logwrite command line (placeholder until its issue lands)."""

import sys


def main() -> None:
    print("logwrite: not implemented yet", file=sys.stderr)
    sys.exit(2)
