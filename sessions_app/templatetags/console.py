"""Template helpers of the admin console."""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import template
from django.utils import timezone

from sessions_app.forms import SessionFilters
from sessions_app.selectors import SyncFreshness
from sync.models import TransactionSyncState

register = template.Library()


@register.simple_tag
def query_without(filters: SessionFilters, name: str) -> str:
    """The filters' query string without `name`, for a chip's remove link."""
    query = {key: value for key, value in filters.as_query().items() if key != name}
    return f"?{urlencode(query)}" if query else ""


@register.filter
def duration(value: timedelta | None) -> str:
    """A duration as '1 h 05 min' or '12 min'."""
    if value is None:
        return "—"
    minutes = max(int(value.total_seconds() // 60), 0)
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
