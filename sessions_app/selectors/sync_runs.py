"""The Sync runs page."""

from django.conf import settings
from django.db.models import QuerySet

from sessions_app.forms import SyncRunFilters
from sync.models import SyncRun

# How many runs the Sync runs page shows, live updates included.
SYNC_RUNS_SHOWN = 50


def sync_run_list(
    *, filters: SyncRunFilters, limit: int = SYNC_RUNS_SHOWN
) -> QuerySet[SyncRun]:
    """The newest `limit` sync runs matching `filters`, newest first."""
    runs = SyncRun.objects.newest_first()
    if filters.kind:
        runs = runs.filter(kind=filters.kind)
    if filters.status:
        runs = runs.filter(status=filters.status)
    return runs[:limit]


def sync_run_table(*, filters: SyncRunFilters) -> dict[str, object]:
    """The context of the Sync runs table: the page and its live re-render show
    the same rows with the same note under them."""
    return {
        "runs": sync_run_list(filters=filters),
        "runs_shown": SYNC_RUNS_SHOWN,
        "retention_days": settings.SYNC_RUNS_RETENTION_DAYS,
    }
