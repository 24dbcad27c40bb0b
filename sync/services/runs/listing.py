"""What a run must look at, found with SteVe's list calls alone (no database
writes): new transactions by pk, active and recently stopped ones, a backfill's
period, a resync's one pk, and the stored ones SteVe no longer lists."""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from sync.client import SteveClient, SteveNotFound, SteveTransaction
from sync.models import SyncRun, TransactionSyncState

logger = logging.getLogger(__name__)

PK_WINDOW = 200
# How far before the last successful run's start an incremental run asks SteVe for
# newly started transactions, and how far ahead of now: stations' clocks drift.
# After a long outage it asks for two days at most: any newer transaction bounds
# the pk probe, which finds the ones below it.
RECENT_START_MARGIN = timedelta(hours=1)
RECENT_START_MAX = timedelta(days=2)
STATION_CLOCK_AHEAD = timedelta(days=1)


@dataclass
class Listed:
    """What a run's list calls found: the transactions to bring up to date, and
    the stored ones SteVe no longer lists."""

    transactions: list[SteveTransaction]
    missing_pks: list[int]
    # A resync reads the meter values even of a session that looks unchanged.
    force_details: bool = False


Collector = Callable[[SteveClient], Listed]


def collect_incremental(steve: SteveClient) -> Listed:
    """Every active transaction and every one started since the last run, new ones
    by pk, and open or recently manual-stopped ones that are no longer active."""
    known_max = _known_max_pk()
    active = steve.list_transactions(type="ACTIVE")
    seen = {t.id: t for t in active}
    if known_max is None:
        # First run on an empty database: take everything SteVe has.
        seen.update((t.id, t) for t in steve.list_transactions(type="ALL"))
    else:
        # SteVe's pks only grow, and late offline uploads get a new high pk with an
        # old start time, so new transactions are found by pk, never by start time
        # alone. The pk search ends at its first empty window past the highest pk
        # known to exist; the transactions started since the last run raise that
        # bound. A late upload above more than a window of deleted pks, with none
        # started since, waits for the next new transaction, or for the hourly
        # reconcile, which lists the last days by start time.
        now = timezone.now()
        seen.update(
            (t.id, t)
            for t in steve.list_transactions(
                type="ALL",
                period_type="FROM_TO",
                start_from=_recent_start_bound(now),
                start_to=now + STATION_CLOCK_AHEAD,
            )
        )
        highest_known = max(seen, default=known_max)
        seen.update((t.id, t) for t in _discover_by_pk(steve, known_max, highest_known))

    may_change = (
        TransactionSyncState.objects.may_still_change(timezone.now())
        .filter(is_deleted_in_steve=False)
        .values_list("steve_transaction_id", flat=True)
    )
    to_check = sorted(
        (set(may_change) | _unread_since_last_reading_run()).difference(seen)
    )
    for chunk in chunks(to_check, PK_WINDOW):
        seen.update((t.id, t) for t in steve.list_transactions(transaction_pks=chunk))
    missing = [pk for pk in to_check if pk not in seen]
    return Listed(list(seen.values()), missing)


def collect_backfill(steve: SteveClient, start: datetime) -> Listed:
    # A station clock running ahead dates its starts in the future; they belong
    # to the period too.
    end = timezone.now() + STATION_CLOCK_AHEAD
    found = steve.list_transactions(
        type="ALL", period_type="FROM_TO", start_from=start, start_to=end
    )
    seen = {t.id: t for t in found}
    _fill_pk_gap(steve, seen)
    stored_in_period = TransactionSyncState.objects.filter(
        started_at__gte=start, started_at__lte=end, is_deleted_in_steve=False
    ).values_list("steve_transaction_id", flat=True)
    missing = [pk for pk in stored_in_period if pk not in seen]
    return Listed(list(seen.values()), missing)


def collect_pks(steve: SteveClient, pks: list[int]) -> Listed:
    found = steve.list_transactions(transaction_pks=pks)
    seen_ids = {t.id for t in found}
    missing = [pk for pk in pks if pk not in seen_ids]
    stored = set(
        TransactionSyncState.objects.filter(
            steve_transaction_id__in=missing
        ).values_list("steve_transaction_id", flat=True)
    )
    unknown = [str(pk) for pk in missing if pk not in stored]
    if unknown:
        # Neither side knows it: a run that "succeeded" would say nothing of that.
        raise SteveNotFound(
            f"Neither SteVe nor Polaris has transaction {', '.join(unknown)}; "
            "there is nothing to resync.",
            permanent=True,
        )
    seen = {t.id: t for t in found}
    _fill_pk_gap(steve, seen)
    return Listed(list(seen.values()), missing, force_details=True)


def _unread_since_last_reading_run() -> set[int]:
    """The transactions SteVe could not serve to the last incremental run that got
    to reading, or to any run since: each incremental run reads the earlier ones
    again and records those still unread, so nothing older is left."""
    last_reading = (
        SyncRun.objects.filter(
            kind=SyncRun.Kind.TRANSACTIONS,
            status__in=SyncRun.READ_STATUSES,
        )
        .order_by("-started_at", "-id")
        .values_list("started_at", flat=True)
        .first()
    )
    runs = SyncRun.objects.filter(kind__in=SyncRun.TRANSACTION_KINDS).exclude(
        unread_transaction_ids=[]
    )
    if last_reading is not None:
        runs = runs.filter(started_at__gte=last_reading)
    return {
        pk
        for pks in runs.values_list("unread_transaction_ids", flat=True)
        for pk in pks
    }


def _known_max_pk() -> int | None:
    """The highest SteVe pk stored: incremental runs look for new pks above it."""
    top: int | None = TransactionSyncState.objects.aggregate(
        top=Max("steve_transaction_id")
    )["top"]
    return top


def _recent_start_bound(now: datetime) -> datetime:
    """Where "started since the last run" begins: the last successful incremental
    run's start (now on a database that has none), less a margin, and no earlier
    than RECENT_START_MAX ago."""
    last = SyncRun.objects.latest_succeeded(SyncRun.Kind.TRANSACTIONS)
    since = (last.started_at if last else now) - RECENT_START_MARGIN
    return max(since, now - RECENT_START_MAX)


def _fill_pk_gap(steve: SteveClient, seen: dict[int, SteveTransaction]) -> None:
    """Add to `seen` every transaction between the highest stored pk and the
    highest pk in `seen`.

    Incremental runs only look above the highest stored pk, so a run that stores a
    higher one (a backfill, a resync) must take the pks below it too: a late
    offline upload there, stopped and starting before the backfill's period, would
    otherwise never be found.
    """
    known_max = _known_max_pk()
    if known_max is None or not seen or max(seen) <= known_max:
        return
    for t in _discover_by_pk(steve, known_max, max(seen)):
        seen.setdefault(t.id, t)


def _discover_by_pk(
    steve: SteveClient, known_max: int, highest_known: int
) -> list[SteveTransaction]:
    """Transactions with pks above `known_max`, probed in windows of PK_WINDOW.

    Stops at the first empty window past `highest_known`, a pk SteVe is known to
    have: pks are dense apart from deleted rows, so a whole empty window above
    every known pk means nothing newer exists.
    """
    found: list[SteveTransaction] = []
    low = known_max + 1
    while True:
        window = steve.list_transactions(transaction_pks=range(low, low + PK_WINDOW))
        found.extend(window)
        low += PK_WINDOW
        if not window and low > highest_known:
            return found


def chunks[T](items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
