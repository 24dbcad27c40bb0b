"""Reads of the Sessions API: its sessions and the session object (`sessions`), the
chargers a session can be started on (`chargers`), and the SteVe transaction a
session's remote start began (`matching`)."""
