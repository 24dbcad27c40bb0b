"""Notifications the sync sends after it committed changes.

Receivers only broadcast (live updates to open pages); they never write, so the sync
stays correct whether or not anyone listens.
"""

from django.dispatch import Signal

# Sent with `run` (the finished SyncRun) and `transaction_ids` (changed row ids).
sessions_changed = Signal()
