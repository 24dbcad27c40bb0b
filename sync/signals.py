"""Notifications the sync sends after it committed its work.

Receivers only broadcast (live updates to open pages); they never write, so the sync
stays correct whether or not anyone listens.
"""

from django.dispatch import Signal

# Sent with `run` (the finished SyncRun) and `transaction_ids` (ids of the
# transaction_sync_state rows the run created or changed), only when there are any.
sessions_changed = Signal()

# Sent with `run` once a run that will be recorded has started (status running).
run_started = Signal()

# Sent with `run` after every run that was recorded, whatever its outcome.
run_finished = Signal()
