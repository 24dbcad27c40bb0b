"""Notifications the portal's services send after they committed a change.

Receivers only broadcast (live updates to the customer's other open pages); they
never write.
"""

from django.dispatch import Signal

# Sent with `reservation` (as stored) after it was made or cancelled.
reservation_changed = Signal()
