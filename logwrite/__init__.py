"""logwrite: part of memlogd-py."""

from memlogd import __version__

__all__ = ["__version__"]
