"""The transaction detail page."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sessions_app.selectors.session_list import sync_freshness
from sync.models import SyncedTransactionEvent, SyncRun, TransactionSyncState


def session_detail(*, steve_transaction_id: int) -> TransactionSyncState:
    """One session with its customer (and the customer's account, which the
    page's Act as customer needs); raises TransactionSyncState.DoesNotExist."""
    return (
        TransactionSyncState.objects.with_customer()
        .select_related("charger", "mapping__user")
        .get(steve_transaction_id=steve_transaction_id)
    )


@dataclass(frozen=True)
class LastSynced:
    at: datetime
    is_stale: bool
    # The latest transactions run, while it failed: an active session's readings
    # may be behind.
    failing_run: SyncRun | None = None


def session_last_synced(*, session: TransactionSyncState, now: datetime) -> LastSynced:
    """When the sync last read `session`, and whether that is stale as the
    Charging Sessions table says it; only an active one asks the sync runs."""
    if session.is_finalized:
        return LastSynced(at=session.last_synced_at, is_stale=False)
    freshness = sync_freshness(now=now)
    return LastSynced(
        at=freshness.last_synced(session),
        is_stale=freshness.is_stale(session),
        failing_run=freshness.failing_run,
    )


# How long a detail page reports the outcome of its last "Resync now"; after that,
# its Last synced time says enough.
RESYNC_NOTICE_FOR = timedelta(minutes=15)
# The web process stamps the queueing, a worker the run's start: a run started a
# moment "before" it by their clocks is still the one queued.
RESYNC_CLOCK_SKEW = timedelta(seconds=1)


def recent_resync(
    *,
    steve_transaction_id: int,
    now: datetime,
    last_synced_at: datetime,
    queued_at: datetime | None = None,
) -> SyncRun | None:
    """The latest "Resync now" run of this transaction, if it started recently,
    and after `queued_at` when given (the reader's own Resync now, not an earlier
    one's outcome). One that failed only until a later run synced the session:
    its failure is then past, and the page's Last synced says so."""
    started_after = now - RESYNC_NOTICE_FOR
    if queued_at is not None:
        started_after = max(started_after, queued_at - RESYNC_CLOCK_SKEW)
    run = (
        SyncRun.objects.resyncs_of(steve_transaction_id)
        .filter(started_at__gte=started_after)
        .first()
    )
    if (
        run is not None
        and run.status in SyncRun.FAILED_STATUSES
        and run.finished_at is not None
        and last_synced_at > run.finished_at
    ):
        return None
    return run


# A charge read every minute for a working day has some 500 events: the table shows
# the latest ones, and every one on request (?events=all).
EVENTS_SHOWN = 100


def shown_events(
    *, session: TransactionSyncState, show_all: bool
) -> list[SyncedTransactionEvent]:
    """The events the table lists, oldest reading first: all of them, or the
    latest EVENTS_SHOWN."""
    events = session.events.select_related("sync_run").order_by("-reading_at", "-id")
    return list(reversed(events if show_all else events[:EVENTS_SHOWN]))


def session_energy_series(
    *, session: TransactionSyncState
) -> list[tuple[datetime, Decimal]]:
    """Each sync event's reading time and kWh, oldest first: what the chart
    draws and the table counts. Two columns, not the events: a session charging
    for days has tens of thousands of them."""
    return list(
        session.events.order_by("reading_at", "id").values_list(
            "reading_at", "kwh_delta"
        )
    )
