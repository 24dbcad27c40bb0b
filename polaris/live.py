"""Live updates over server-sent events (django-eventstream under ASGI).

Channels: `staff` (the console) and `customer-<user id>` (one per driver). Events
carry HTML rendered from the page's own template partials; htmx's SSE extension
swaps it in (`sse-swap="<event type>"`). Publishing goes through Redis, so an event
sent by a Celery worker reaches every web process, and Redis storage lets a
reconnecting browser replay what it missed (Last-Event-ID, 24 hours).

Redis pub/sub ignores the database number, so environments sharing one Redis keep
apart by LIVE_CHANNEL_PREFIX.
"""

import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django_eventstream import send_event
from django_eventstream.channelmanager import DefaultChannelManager
from django_eventstream.views import events

logger = logging.getLogger(__name__)

STAFF = "staff"
CUSTOMER = "customer-"


def channel_name(name: str) -> str:
    """The channel's name as published, with this environment's prefix."""
    return f"{settings.LIVE_CHANNEL_PREFIX}{name}"


def customer_channel(user_id: int) -> str:
    return channel_name(f"{CUSTOMER}{user_id}")


def staff_channel() -> str:
    return channel_name(STAFF)


def publish(channel: str, event_type: str, html: str) -> None:
    """Send `html` as one event; never raises (a live update is best effort)."""
    try:
        send_event(channel, event_type, html, json_encode=False)
    except Exception:
        logger.exception("Could not publish %s on %s", event_type, channel)


def can_read(user: AbstractBaseUser | AnonymousUser | None, channel: str) -> bool:
    """Staff read the staff channel; a customer reads their own channel only.

    Staff acting as a customer read that customer's channel: the stream view only
    offers it to them while the acting-as session is open.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    name = channel.removeprefix(settings.LIVE_CHANNEL_PREFIX)
    if name == STAFF:
        return bool(user.is_staff)
    if name.startswith(CUSTOMER):
        return name == f"{CUSTOMER}{user.pk}" or bool(user.is_staff)
    return False


class ChannelManager(DefaultChannelManager):  # type: ignore[misc]
    """Decides who reads which channel; the channels come from the stream view."""

    def can_read_channel(
        self, user: AbstractBaseUser | AnonymousUser | None, channel: str
    ) -> bool:
        return can_read(user, channel)

    def is_channel_reliable(self, channel: str) -> bool:
        return True


def stream(request: HttpRequest, channel: str) -> HttpResponse:
    """Serve one channel as an SSE stream without holding a database connection.

    The user and session are loaded first; then the connection goes back, because
    a stream stays open for as long as the tab does and would otherwise keep its
    connection for that long (a handful of tabs would exhaust Postgres).
    """
    _ = request.user.is_authenticated, request.session.items()
    connection.close()
    return events(request, channels=[channel])
