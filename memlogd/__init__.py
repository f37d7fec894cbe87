"""memlogd: LinuxKit's in-VM log daemon, in Python. Importing has no side effects."""

__version__ = "0.1.0"
