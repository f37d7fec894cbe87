"""Compile the project's modules before measuring, as an installed package is.

This machine sets ``PYTHONDONTWRITEBYTECODE=1``: without ``.pyc`` files a
checkout's modules are compiled at every start of every program, which is
not what a VM with the package installed does, and would make the boot
figures wrong.  ``compileall`` writes the ``.pyc`` files whatever that
variable says; the daemon then only reads them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PACKAGES = ("memlogd", "logread", "logwrite", "kmsg", "logship")
ROOT = Path(__file__).resolve().parent.parent  # the checkout


def precompile(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """``python -m compileall -q PACKAGES`` in ``root``; what was done, for the report."""
    present = [p for p in packages if (root / p).is_dir()]
    argv = [sys.executable, "-m", "compileall", "-q", *present]
    start = time.monotonic()
    proc = subprocess.run(
        argv, cwd=root, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    return {
        "command": "python -m compileall -q " + " ".join(present),
        "packages": present,
        "ok": proc.returncode == 0,
        "seconds": round(time.monotonic() - start, 3),
        "output": (proc.stdout + proc.stderr).strip()[-500:],
        "note": "PYTHONDONTWRITEBYTECODE=1 here: .pyc files written before measuring, "
        "as an installed package has them",
    }
