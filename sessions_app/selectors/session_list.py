"""The Charging Sessions page: its rows, count, stat strip and export, and how
fresh the sync has kept them."""

from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, TypedDict, cast

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from sessions_app.forms import SessionFilters
from sync import rollups
from sync.models import (
    LatestReads,
    SyncRun,
    TransactionSyncState,
    TransactionSyncStateQuerySet,
    UserMapping,
    stale_before,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

PAGE_SIZE = 15
# A table that re-reads itself after a sync gets back at most ten pages: a page that
# loaded more keeps its first ten pages, and Load more goes on from there.
MAX_REFRESH_ROWS = 10 * PAGE_SIZE
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SessionStats:
    """The stat strip: always over the whole dataset, never the filtered view."""

    sessions_today: int
    kwh_7d: Decimal
    active_now: int
    avg_kwh_7d: Decimal | None


@dataclass(frozen=True)
class SessionPage:
    rows: list[TransactionSyncState]
    next_cursor: str | None


def session_stats(*, now: datetime) -> SessionStats:
    """The four counters of the Charging Sessions stat strip.

    Sessions today: distinct transactions updated since midnight in
    POLARIS_TIME_ZONE. kWh (7d): the kwhDelta of events read in the last 7 days
    (to the end of this quarter hour: none a station stamped days ahead).
    Avg: that energy over the distinct transactions with events in the window.
    Every number comes from a rollup kept exact by triggers (sync/rollups.py), so
    the strip reads a few hundred small rows, not a week of events.
    """
    # The first instant of the local day: where the clock goes back to 00:00
    # (Atlantic/Azores in October) midnight happens twice and the day began at
    # the first one, whichever pass of that hour `now` is in.
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    totals = rollups.fleet_totals(
        energy_after=now - timedelta(days=7), energy_until=now, updated_from=midnight
    )
    today = totals.sessions_updated_since
    if today is None:
        today = TransactionSyncState.objects.filter(updated_at__gte=midnight).count()
    kwh_7d, sessions_7d = totals.kwh_since, totals.sessions_with_energy_since
    average = (kwh_7d / sessions_7d).quantize(Decimal("0.01")) if sessions_7d else None
    return SessionStats(
        sessions_today=today,
        kwh_7d=kwh_7d,
        active_now=totals.active,
        avg_kwh_7d=average,
    )


def _filtered_sessions(filters: SessionFilters) -> TransactionSyncStateQuerySet:
    sessions = TransactionSyncState.objects.all()
    if filters.status == "active":
        sessions = sessions.active()
    elif filters.status == "completed":
        sessions = sessions.completed()
    sessions = sessions.updated_between(filters.updated_from, filters.updated_to)
    if filters.tag:
        sessions = sessions.with_mapped_tag_containing(filters.tag)
    return sessions


def session_count(*, filters: SessionFilters) -> int:
    """How many sessions match `filters`, each transaction counted once.

    Without a tag filter the answer comes from rollups that triggers keep exact in
    the same transaction as every write (session_counts; per quarter hour of
    updatedAt for a date range), instead of counting rows.
    """
    states = {"active": [False], "completed": [True]}.get(filters.status, [True, False])
    if filters.tag:
        return _filtered_sessions(filters).count()
    if filters.date_from or filters.date_to:
        count = rollups.sessions_updated_between(
            filters.updated_from, _day_after(filters.updated_to), states=states
        )
        return _filtered_sessions(filters).count() if count is None else count
    return rollups.sessions_total(states=states)


def _day_after(last_moment: datetime | None) -> datetime | None:
    """The exclusive end after To's last microsecond; None (open) after year 9999."""
    try:
        return last_moment + timedelta(microseconds=1) if last_moment else None
    except OverflowError:
        return None


def session_page(
    *, filters: SessionFilters, cursor: str | None, limit: int = PAGE_SIZE
) -> SessionPage:
    """Up to `limit` sessions after `cursor`, most recently updated first.

    Keyset pagination on (updatedAt, id): pages stay correct when sessions change
    between two clicks, and a deep page costs what the first does. A malformed
    cursor means the first page.
    """
    sessions = _filtered_sessions(filters).newest_updated_first()
    position = decode_cursor(cursor)
    if position is not None:
        sessions = sessions.after_cursor(*position)
    rows = list(sessions.with_customer().select_related("charger")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return SessionPage(
        rows=rows, next_cursor=encode_cursor(rows[-1]) if has_more else None
    )


@dataclass(frozen=True)
class SessionTable:
    """What one Charging Sessions request shows: its page of rows, and how many
    rows the table holds with them (the next Load more and re-read start there)."""

    page: SessionPage
    rows_shown: int


def session_table(
    *,
    filters: SessionFilters,
    cursor: str | None,
    rows_before: int,
    whole_page: bool,
) -> SessionTable:
    """The rows of a Charging Sessions request. `rows_before` is how many rows the
    table showed before it: before a Load more (with `cursor`), or when the table
    re-reads itself after a sync (without), which gets back at most
    MAX_REFRESH_ROWS."""
    if cursor and whole_page and rows_before < MAX_REFRESH_ROWS:
        # A Load more link opened as a page (a new tab, no JavaScript): the whole
        # table it would have grown into, from the top, so that the rows, their
        # count and the live refresh agree. Past ten pages the cursor's page alone.
        rows_before += PAGE_SIZE
        cursor = None
    if cursor:
        page = session_page(filters=filters, cursor=cursor)
        return SessionTable(page=page, rows_shown=rows_before + len(page.rows))
    pages = max(1, -(-rows_before // PAGE_SIZE))
    limit = min(pages * PAGE_SIZE, MAX_REFRESH_ROWS)
    page = session_page(filters=filters, cursor=None, limit=limit)
    return SessionTable(page=page, rows_shown=len(page.rows))


@dataclass
class SessionList:
    """The Charging Sessions page's read model. Each of its requests reads only
    what it shows: Load more its rows, the table's live re-read and new filters
    the results with their count, the whole page the stat strip too."""

    filters: SessionFilters
    cursor: str | None
    rows_before: int
    # An htmx request for a part of the page, not the page itself.
    fragment: bool
    now: datetime
    # What the page last said of the Tag filter, sent back by the table's live
    # re-read: the answer needs a scan of every session's idTag, too much for each
    # sync while a tab is open, and a sync brings new sessions, not the new
    # mappings that would change it. None: ask the database.
    unmapped_tag_hint: bool | None = None

    @cached_property
    def table(self) -> SessionTable:
        return session_table(
            filters=self.filters,
            cursor=self.cursor,
            rows_before=self.rows_before,
            whole_page=not self.fragment,
        )

    def rows(self) -> dict[str, object]:
        return {
            "filters": self.filters,
            "page": self.table.page,
            "rows_shown": self.table.rows_shown,
            "freshness": sync_freshness(now=self.now),
        }

    def results(self) -> dict[str, object]:
        empty = not self.table.page.rows
        return {
            **self.rows(),
            "total": session_count(filters=self.filters),
            # Only the empty table without filters says whether a sync has completed.
            "any_sync_completed": empty
            and not self.filters.chips()
            and any_sync_completed(),
            "tag_only_on_unmapped_cards": empty
            and bool(self.filters.tag)
            and self._tag_only_on_unmapped_cards(),
        }

    def whole_page(self) -> dict[str, object]:
        return {**self.results(), "stats": session_stats(now=self.now)}

    def _tag_only_on_unmapped_cards(self) -> bool:
        if self.unmapped_tag_hint is not None:
            return self.unmapped_tag_hint
        return tag_only_on_unmapped_cards(tag=self.filters.tag)


SESSION_EXPORT_HEADER = [
    "steveTransactionId",
    "chargeBoxId",
    "connectorId",
    "charger",
    "customer",
    "ocppIdTag",
    "startedAt",
    "stoppedAt",
    "kwhDelivered",
    "status",
    "updatedAt",
    "lastSyncedAt",
]


def session_export_rows(*, filters: SessionFilters) -> Generator[list[str]]:
    """Every session matching `filters` as CSV cells, in the list's order; close
    it to stop early.

    Streams from a server-side cursor, so the export of a million rows never sits
    in memory, inside one transaction: outside one the cursor is WITH HOLD, which
    PostgreSQL fills with the whole result before the first row (3 to 7 s for a
    million sessions). Times are ISO 8601 with the operator's offset.
    """
    sessions = _filtered_sessions(filters).newest_updated_first().with_customer()
    # The customer_ names are with_customer()'s annotations, which the Django
    # plugin cannot see from here: it knows only those made in the same expression.
    rows = sessions.values_list(  # type: ignore[misc]
        "steve_transaction_id",
        "charge_box_id",
        "connector_id",
        "charger__friendly_name",
        "customer_label",
        "customer_email",
        "ocpp_id_tag",
        "started_at",
        "stopped_at",
        "kwh_delivered",
        "is_finalized",
        "updated_at",
        "last_synced_at",
    )
    with transaction.atomic():
        for (pk, box, connector, charger, label, email, tag, started, stopped, kwh,
             finalized, updated, synced) in rows.iterator(chunk_size=2000):  # fmt: skip
            yield [
                str(pk),
                box,
                str(connector),
                charger or box,
                label or email or "",
                tag,
                _iso(started),
                _iso(stopped),
                str(kwh),
                "Completed" if finalized else "Active",
                _iso(updated),
                _iso(synced),
            ]


def _iso(moment: datetime | None) -> str:
    return timezone.localtime(moment).isoformat() if moment else ""


def encode_cursor(row: TransactionSyncState) -> str:
    micros = (row.updated_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{row.steve_transaction_id}"


def decode_cursor(raw: str | None) -> tuple[datetime, int] | None:
    try:
        micros, pk = (int(part) for part in (raw or "").split("-"))
        return EPOCH + timedelta(microseconds=micros), pk
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class SyncFreshness:
    """When the sync last confirmed the active sessions, and what counts as stale."""

    reads: LatestReads
    stale_before: datetime
    last_change: SyncRun | None
    # The latest transactions run, when it failed: until one succeeds, the table
    # may be out of date, and the page says why.
    failing_run: SyncRun | None = None

    def last_synced(self, row: TransactionSyncState) -> datetime:
        """An active session was last synced at the later of its row and the
        latest run that read it."""
        if row.is_finalized:
            return row.last_synced_at
        read_at = self.reads.last_read_at(row.steve_transaction_id)
        return (
            row.last_synced_at if read_at is None else max(row.last_synced_at, read_at)
        )

    def is_stale(self, row: TransactionSyncState) -> bool:
        return not row.is_finalized and self.last_synced(row) < self.stale_before


class _LatestReads(TypedDict):
    read_at: datetime | None
    unread_ids: list[int] | None
    confirmed_at: datetime | None
    last_status: str | None


def sync_freshness(*, now: datetime) -> SyncFreshness:
    """Staleness threshold (three sync intervals) and the latest runs that matter."""
    transactions = SyncRun.Kind.TRANSACTIONS
    latest = SyncRun.objects.finished_of(transactions)
    read = SyncRun.objects.read_through(transactions)
    # One query: the last run that changed something carries the LatestReads and
    # how the latest run went.
    last_change = cast(
        # The Django plugin loses annotate()'s names in the first() of a QuerySet
        # subclass such as SyncRunQuerySet.
        "WithAnnotations[SyncRun, _LatestReads] | None",
        SyncRun.objects.that_changed_sessions()
        .annotate(
            read_at=Subquery(read.values("finished_at")[:1]),
            unread_ids=Subquery(read.values("unread_transaction_ids")[:1]),
            confirmed_at=Subquery(
                SyncRun.objects.succeeded(transactions).values("finished_at")[:1]
            ),
            last_status=Subquery(latest.values("status")[:1]),
        )
        .first(),
    )
    failing_run = None
    if last_change is not None:
        reads = LatestReads(
            read_at=last_change.read_at,
            unread_ids=frozenset(last_change.unread_ids or ()),
            confirmed_at=last_change.confirmed_at,
        )
        if last_change.last_status in SyncRun.FAILED_STATUSES:
            failing_run = latest.first()
    else:
        # No run has changed a session yet. Transactions runs never overlap, so
        # the latest one, when it succeeded, is the latest to read them all.
        latest_run = latest.first()
        if latest_run is not None and latest_run.status in SyncRun.FAILED_STATUSES:
            failing_run = latest_run
        if latest_run is None or latest_run.status == SyncRun.Status.SUCCEEDED:
            at = latest_run.finished_at if latest_run else None
            reads = LatestReads(read_at=at, unread_ids=frozenset(), confirmed_at=at)
        else:
            reads = SyncRun.objects.latest_reads()
    return SyncFreshness(
        reads=reads,
        stale_before=stale_before(now),
        last_change=last_change,
        failing_run=failing_run,
    )


def tag_only_on_unmapped_cards(*, tag: str) -> bool:
    """Whether `tag` is part of a synced session's idTag but of no mapped one
    (case-insensitively): the Tag filter, which searches mapped idTags, finds
    nothing although the text is on cards.

    Asked only when that filter found nothing; the sessions are read without an
    index (a substring), so it costs a scan where no card has the text.
    """
    if UserMapping.objects.tag_contains(tag).exists():
        return False
    return TransactionSyncState.objects.filter(ocpp_id_tag__icontains=tag).exists()


def any_sync_completed() -> bool:
    """Whether a sync has read SteVe's transactions: runs that failed have not,
    so an empty table after them is no sign that SteVe has none."""
    return SyncRun.objects.succeeded(SyncRun.Kind.TRANSACTIONS).exists()
