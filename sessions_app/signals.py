"""Notifications the Sessions API's lifecycle sends after it committed a change.

Receivers only broadcast (live updates to open pages); they never write, so the
lifecycle stays correct whether or not anyone listens.
"""

from django.dispatch import Signal

# Sent with `session` (the ApiSession as stored) after each status change commits.
api_session_changed = Signal()
