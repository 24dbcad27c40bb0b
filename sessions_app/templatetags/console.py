"""Template helpers of the admin console."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import template
from django.contrib.messages.storage.base import Message
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from polaris.http import IN_PAGE
from sessions_app.forms import SessionFilters
from sessions_app.models import ApiToken
from sessions_app.selectors import SyncFreshness
from sync.models import TransactionSyncState

register = template.Library()


@register.simple_tag
def query_without(filters: SessionFilters, name: str) -> str:
    """The filters' query string without `name`, for a chip's remove link."""
    query = {key: value for key, value in filters.as_query().items() if key != name}
    return f"?{urlencode(query)}" if query else ""


# An email up to this long stays one word, its column widening to hold it.
EMAIL_KEPT_WHOLE = 30


@register.filter
def breakable_email(value: str, kept_whole: int = EMAIL_KEPT_WHOLE) -> SafeString:
    """An email longer than `kept_whole` that wraps only before its @ and after
    its dots: one too long for its column breaks where a reader would split it,
    not mid-word."""
    text = escape(value)
    if len(value) <= kept_whole:
        return text
    return mark_safe(text.replace("@", "<wbr>@").replace(".", ".<wbr>"))


@register.filter
def expiring_soon(tokens: Iterable[ApiToken]) -> list[ApiToken]:
    """The tokens of a list that stop working within ApiToken's EXPIRY_NOTICE."""
    return [token for token in tokens if token.expires_soon]


@register.filter
def duration(value: timedelta | None) -> str:
    """A duration as '1 h 05 min', '12 min' or '<1 min'."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    if minutes < 1:
        return "<1 min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@register.filter
def duration_until_now(start: datetime) -> str:
    return duration(timezone.now() - start)


@register.filter
def last_synced(freshness: SyncFreshness, session: TransactionSyncState) -> datetime:
    return freshness.last_synced(session)


@register.filter
def is_stale(freshness: SyncFreshness, session: TransactionSyncState) -> bool:
    return freshness.is_stale(session)


@register.filter
def in_page_message(messages: Iterable[Message]) -> Message | None:
    """The message its page shows where it belongs (tagged IN_PAGE); the message
    list above every page leaves it out."""
    return next((m for m in messages if IN_PAGE in m.extra_tags.split()), None)


# The session table formats up to a hundred times per page; these filters do it
# with strftime in the current time zone instead of Django's general `date`
# filter, which reads several settings per call.


@register.filter
def iso_time(value: datetime | None) -> str:
    """For a <time datetime>: ISO 8601 with the local offset."""
    return timezone.localtime(value).isoformat() if value else ""


@register.filter
def short_time(value: datetime | None, precision: str = "minutes") -> str:
    """'Nov 3, 14:05' in local time; 'Nov 3, 14:05:09' with "seconds". A moment
    of another year names it, 'Nov 3, 2025, 14:05': a year of history (and a
    token expiring next year) would otherwise read as this year's."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    clock = "%H:%M:%S" if precision == "seconds" else "%H:%M"
    year = "" if local.year == timezone.localdate().year else f" {local.year},"
    return f"{local:%b} {local.day},{year} {local:{clock}}"


@register.filter
def moment(value: datetime | None) -> str:
    """'14:05:09' today, 'Nov 3, 14:05' on another day, in local time. Absolute,
    unlike '2 seconds ago', which a page left open goes on saying; script shows
    the age beside it (time[data-age], static/js/polaris.js)."""
    if value is None:
        return ""
    if timezone.localdate(value) == timezone.localdate():
        return clock_time(value)
    return short_time(value)


@register.filter
def clock_time(value: datetime | None) -> str:
    """'14:05:09' in local time."""
    return f"{timezone.localtime(value):%H:%M:%S}" if value else ""


@register.filter
def full_time(value: datetime | None) -> str:
    """'Nov 3, 2026, 14:05:09 CET' in local time: a moment on its own (a title,
    a session's start), worded as the lists word theirs."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    return f"{local:%b} {local.day}, {local:%Y, %H:%M:%S %Z}"


@register.filter
def thousands(value: int) -> str:
    """12,345: intcomma for the counts of long tables, without its locale lookups."""
    return f"{value:,}"
