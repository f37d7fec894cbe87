"""logship: forward memlogd's log to a central receiver over RELP or TCP (docs/logship.md)."""
