"""Admin console pages: staff only, read through selectors, write through services.

A module per page: `sessions` (Charging Sessions, detail, live stream),
`sync_runs`, `user_mappings` and `api_tokens`.
"""

from django.urls import reverse

from polaris import live

# Said when Redis, the task queue, cannot be reached.
QUEUE_UNREACHABLE = (
    "the task queue (Redis) cannot be reached. Try again in a moment; scheduled "
    "syncs resume by themselves once it is back."
)


def console_stream_url() -> str:
    """The staff stream for a page's `sse-connect` (see `live.stream_url`)."""
    return live.stream_url(reverse("sessions_app:live"), live.staff_channel())
