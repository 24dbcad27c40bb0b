"""The SteVe sync: one code path for the Celery tasks, the commands and the console.

A run first lists the transactions it must look at (list calls only, no database
writes), then goes through them in batches of WRITE_BATCH, lowest SteVe pk first:
it reads a batch's meter values and saves what changed in one database transaction.
A failure, or the Celery task's soft time limit, ends the run as failed; the batches
saved before it stay. Because they are every listed transaction up to a pk, the next
run's search for new pks (above the highest one stored) starts where this one
stopped, and each batch was planned against the rows as stored, so nothing is
counted twice.

Two runs that write transactions never overlap: each holds a PostgreSQL advisory
lock for its whole duration. Postgres releases the lock by itself if the worker dies,
so a SIGKILLed worker cannot wedge the sync.
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import Max
from django.dispatch import Signal
from django.utils import timezone

from sync.client import (
    SteveBadResponse,
    SteveClient,
    SteveError,
    SteveNotFound,
    SteveRejected,
    SteveTransaction,
    given_or_new,
)
from sync.energy import (
    StoredState,
    TransactionPlan,
    plan_transaction,
    plan_vanished,
)
from sync.models import (
    CHECK_IN_VALID_FOR,
    Charger,
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
)
from sync.services.mappings import user_mappings_spell_as_synced
from sync.signals import run_finished, sessions_changed

logger = logging.getLogger(__name__)

# Advisory lock keys: one for everything that writes transactions, one for the probe.
TRANSACTIONS_LOCK = 7_316_001
CHARGERS_LOCK = 7_316_002

PK_WINDOW = 200
# How far before the last successful run's start an incremental run asks SteVe for
# newly started transactions, and how far ahead of now: stations' clocks drift.
# After a long outage it asks for two days at most: any newer transaction bounds
# the pk probe, which finds the ones below it.
RECENT_START_MARGIN = timedelta(hours=1)
RECENT_START_MAX = timedelta(days=2)
STATION_CLOCK_AHEAD = timedelta(days=1)
DETAIL_WORKERS = 8
WRITE_BATCH = 500
# A run that could not read many transactions names this many of them.
UNREADABLE_NAMED = 10

STATE_FIELDS = [
    "charge_box_id",
    "connector_id",
    "charger",
    "ocpp_id_tag",
    "started_at",
    "stopped_at",
    "meter_start_wh",
    "meter_last_wh",
    "meter_dip_wh",
    "last_reading_at",
    "kwh_delivered",
    "is_finalized",
    "stop_reason",
    "stop_event_actor",
    "is_stop_estimated",
    "last_reading_after_stop_at",
    "meter_reset_seen",
    "is_deleted_in_steve",
    "last_synced_at",
    "updated_at",
]


class SyncBusy(Exception):
    """Another run holds the lock; this one did nothing."""


Progress = Callable[[str], None]
# A run listing more transactions than this says how far it got after each batch.
PROGRESS_EVERY = 1_000


@dataclass
class RunTally:
    """What a run saw and did; copied onto the SyncRun row at the end."""

    fetched: int = 0
    # Listed transactions whose batch is done: saved, or planned on a dry run.
    processed: int = 0
    created: int = 0
    updated: int = 0
    events: int = 0
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    # Transactions SteVe could not serve; the next incremental run reads them.
    unread_pks: list[int] = field(default_factory=list)
    changed_ids: list[int] = field(default_factory=list)
    # Where a long run says how far it got (the sync command prints it).
    progress: Progress | None = None

    def report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def fail_one(self, message: str) -> None:
        self.errors += 1
        if message not in self.error_messages:
            self.error_messages.append(message)


# Public services


def sync_run_transactions(
    *,
    trigger: str,
    dry_run: bool = False,
    client: SteveClient | None = None,
    progress: Progress | None = None,
) -> SyncRun:
    """Bring every new, active and recently stopped SteVe transaction up to date.

    Returns the finished SyncRun (unsaved with dry_run). Raises SyncBusy when another
    run is in progress. `progress` gets a sentence now and then on a long run.
    """
    return _run(
        SyncRun.Kind.TRANSACTIONS,
        trigger,
        dry_run,
        client,
        _collect_incremental,
        progress=progress,
    )


def sync_run_backfill(
    *,
    since: date,
    trigger: str,
    dry_run: bool = False,
    client: SteveClient | None = None,
    progress: Progress | None = None,
) -> SyncRun:
    """Re-read every SteVe transaction that started on or after `since`.

    Also flags stored transactions from that period that SteVe no longer has.
    Raises SyncBusy when another run is in progress. `progress` gets a sentence
    now and then.
    """
    start = timezone.make_aware(datetime.combine(since, datetime.min.time()))
    return _run(
        SyncRun.Kind.BACKFILL,
        trigger,
        dry_run,
        client,
        lambda steve: _collect_backfill(steve, start),
        progress=progress,
        by_hand=f"manage.py sync backfill --since {since.isoformat()}",
    )


def sync_run_reconcile(*, trigger: str, client: SteveClient | None = None) -> SyncRun:
    """A backfill of the last SYNC_RECONCILE_DAYS days, which beat runs every
    SYNC_RECONCILE_INTERVAL_SECONDS.

    SteVe deletes a tag's or a charge box's transactions with it (CONTRACT §11);
    the incremental run notices that only for sessions still open or in their
    manual-stop grace period, a backfill for every session it covers. Bounded to
    recent days, it costs one list call and one read of the stored rows per batch,
    plus the meter values of what changed. Raises SyncBusy when another run is in
    progress.
    """
    since = timezone.localdate() - timedelta(days=settings.SYNC_RECONCILE_DAYS)
    return sync_run_backfill(since=since, trigger=trigger, client=client)


def sync_run_transaction(
    *, steve_transaction_id: int, trigger: str, client: SteveClient | None = None
) -> SyncRun:
    """Resync one transaction, as "Resync now" on its detail page does.

    Raises SyncBusy when another run is in progress.
    """
    return _run(
        SyncRun.Kind.TRANSACTION,
        trigger,
        False,
        client,
        lambda steve: _collect_pks(steve, [steve_transaction_id]),
        steve_transaction_id=steve_transaction_id,
    )


def sync_run_chargers(*, trigger: str, client: SteveClient | None = None) -> SyncRun:
    """Probe every known charge box with TriggerMessage(Heartbeat); check in the ones
    that answer. Raises SyncBusy when another probe is in progress."""
    with _advisory_lock(CHARGERS_LOCK), ExitStack() as stack:
        run = _start_run(SyncRun.Kind.CHARGERS, trigger, dry_run=False)
        tally = RunTally()
        try:
            steve = stack.enter_context(given_or_new(client))
        except ImproperlyConfigured as missing:
            return _finish_run(run, tally, error=_not_configured(run, missing))
        box_ids = sorted(set(Charger.objects.values_list("charge_box_id", flat=True)))
        tally.fetched = len(box_ids)
        try:
            answered = _probe(steve, box_ids)
        except SteveError as error:
            return _finish_run(run, tally, error=error.operator_message)
        Charger.objects.filter(charge_box_id__in=answered).update(
            last_check_in_at=timezone.now()
        )
        tally.updated = len(answered)
        return _finish_run(run, tally)


# The run skeleton


Collector = Callable[[SteveClient], "Listed"]


@dataclass
class Listed:
    """What a run's list calls found: the transactions to bring up to date, and
    the stored ones SteVe no longer lists."""

    transactions: list[SteveTransaction]
    missing_pks: list[int]
    # A resync reads the meter values even of a session that looks unchanged.
    force_details: bool = False


# What the database says of data it will not hold, as opposed to being down.
REFUSED_DATA = (DataError, IntegrityError)


class _SaveFailed(Exception):
    """Saving failed (the cause is chained): Polaris's side, not SteVe's."""


def _run(
    kind: str,
    trigger: str,
    dry_run: bool,
    client: SteveClient | None,
    collect: Collector,
    *,
    steve_transaction_id: int | None = None,
    progress: Progress | None = None,
    by_hand: str = "manage.py sync transactions",
) -> SyncRun:
    with _advisory_lock(TRANSACTIONS_LOCK), ExitStack() as stack:
        run = _start_run(
            kind, trigger, dry_run=dry_run, steve_transaction_id=steve_transaction_id
        )
        tally = RunTally(progress=progress)
        try:
            steve = stack.enter_context(given_or_new(client))
        except ImproperlyConfigured as missing:
            error = _not_configured(run, missing)
        else:
            error = _sync(steve, run, collect, tally, dry_run=dry_run, by_hand=by_hand)
        finished = _finish_run(run, tally, error=error, dry_run=dry_run)
    # Batches saved before a failure are committed too: live pages show them.
    if tally.changed_ids:
        _notify(sessions_changed, run=finished, transaction_ids=tally.changed_ids)
    return finished


def _not_configured(run: SyncRun, missing: ImproperlyConfigured) -> str:
    """The sentence of a run that could not make a SteVe client: recorded like any
    failure, so that `sync status` and the Sync runs page name the setting (a beat
    run would otherwise fail every interval without a trace)."""
    logger.error("sync_run=%s cannot talk to SteVe: %s", run.pk, missing)
    return str(missing)


def _sync(
    steve: SteveClient,
    run: SyncRun,
    collect: Collector,
    tally: RunTally,
    *,
    dry_run: bool,
    by_hand: str,
) -> str:
    """List, then read and save batch by batch. Returns the sentence of a failed
    run, or "" when it did not fail."""
    try:
        listed = collect(steve)
        _read_and_save(steve, run, listed, tally, dry_run=dry_run)
    except SoftTimeLimitExceeded:
        # Celery's soft time limit, raised wherever the run was: the task is cut
        # off, where a command (no limit) would have gone on.
        logger.warning(
            "sync_run=%s stopped at the soft time limit after %s of %s transactions",
            run.pk,
            tally.processed,
            tally.fetched,
        )
        return _time_limit_sentence(
            tally, by_hand, carries_on=run.kind == SyncRun.Kind.TRANSACTIONS
        )
    except SteveError as error:
        logger.warning("sync_run=%s failed while reading SteVe: %s", run.pk, error)
        return error.operator_message + _saved_before(tally, dry_run)
    except _SaveFailed:
        logger.exception("sync_run=%s failed while writing", run.pk)
        cause = "Polaris could not save what SteVe sent; see logs."
        return cause + _saved_before(tally, dry_run)
    except Exception:
        # A bug, or data no check foresaw: the run must still end as failed
        # rather than stay "running" until the next one calls it interrupted.
        logger.exception("sync_run=%s failed while reading SteVe", run.pk)
        cause = "Polaris could not process what SteVe sent; see logs."
        return cause + _saved_before(tally, dry_run)
    return ""


def _time_limit_sentence(tally: RunTally, by_hand: str, *, carries_on: bool) -> str:
    """Why a run ended at Celery's soft time limit and what to do. Only the
    incremental run (`carries_on`) picks up above the highest pk saved; a
    backfill lists its days again from the first."""
    limit = (
        f"The sync stopped at its {settings.CELERY_TASK_SOFT_TIME_LIMIT}-second "
        "time limit (CELERY_TASK_SOFT_TIME_LIMIT)"
    )
    if not tally.processed:
        return (
            f"{limit} before it had read a batch, so the next run would stop there "
            f"too: run `{by_hand}` once, which has no time limit, or raise "
            "CELERY_TASK_SOFT_TIME_LIMIT."
        )
    done = f"{limit} after {tally.processed:,} of {tally.fetched:,} transactions"
    if not carries_on:
        return (
            f"{done}; what it saved stays, but the next one reads its days again "
            f"from the first: run `{by_hand}`, which has no time limit, or raise "
            "CELERY_TASK_SOFT_TIME_LIMIT."
        )
    return (
        f"{done}; what it saved stays, and the next run carries on from there. To "
        f"catch up at once, run `{by_hand}`, which has no time limit."
    )


def _saved_before(tally: RunTally, dry_run: bool) -> str:
    """For a failed run's sentence: the sessions its earlier batches saved."""
    saved = tally.created + tally.updated
    if dry_run or not saved:
        return ""
    return f" The {saved:,} sessions it saved before that stay saved."


def _notify(signal: Signal, **kwargs: object) -> None:
    """Tell listeners (live pages); their failures are logged, never raised, because
    the run is already committed and must not look failed."""
    for receiver, result in signal.send_robust(sender=SyncRun, **kwargs):
        if isinstance(result, Exception):
            logger.error("Sync listener %r failed: %r", receiver, result)


@contextmanager
def _advisory_lock(key: int) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        (acquired,) = cursor.fetchone()
    if not acquired:
        raise SyncBusy("Another sync run is in progress.")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _start_run(
    kind: str,
    trigger: str,
    *,
    dry_run: bool,
    steve_transaction_id: int | None = None,
) -> SyncRun:
    run = SyncRun(kind=kind, trigger=trigger, steve_transaction_id=steve_transaction_id)
    if dry_run:
        return run
    # We hold the lock, so a run of this group still marked running was cut off.
    group = (
        [SyncRun.Kind.CHARGERS]
        if kind == SyncRun.Kind.CHARGERS
        else SyncRun.TRANSACTION_KINDS
    )
    SyncRun.objects.running().filter(kind__in=group).update(
        status=SyncRun.Status.FAILED,
        finished_at=timezone.now(),
        error="Interrupted: its worker or command stopped before the run finished.",
    )
    run.save()
    return run


def _finish_run(
    run: SyncRun, tally: RunTally, *, error: str = "", dry_run: bool = False
) -> SyncRun:
    run.finished_at = timezone.now()
    run.fetched_count = tally.fetched
    run.created_count = tally.created
    run.updated_count = tally.updated
    run.events_count = tally.events
    run.errors_count = tally.errors
    run.unread_transaction_ids = sorted(tally.unread_pks)
    if error:
        run.status = SyncRun.Status.FAILED
        run.error = error
    elif tally.errors:
        run.status = SyncRun.Status.PARTIAL
        run.error = " ".join(tally.error_messages)[:1000]
    else:
        run.status = SyncRun.Status.SUCCEEDED
    if not dry_run:
        run.save()
        _notify(run_finished, run=run)
    logger.info(
        "sync_run=%s kind=%s status=%s fetched=%s created=%s updated=%s events=%s",
        run.pk,
        run.kind,
        run.status,
        run.fetched_count,
        run.created_count,
        run.updated_count,
        run.events_count,
    )
    return run


# Listing


def _collect_incremental(steve: SteveClient) -> Listed:
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
        # bound, so more than a window of deleted pks cannot hide the ones above.
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
    for chunk in _chunks(to_check, PK_WINDOW):
        seen.update((t.id, t) for t in steve.list_transactions(transaction_pks=chunk))
    missing = [pk for pk in to_check if pk not in seen]
    return Listed(list(seen.values()), missing)


def _collect_backfill(steve: SteveClient, start: datetime) -> Listed:
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


def _collect_pks(steve: SteveClient, pks: list[int]) -> Listed:
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
            status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL],
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


# Reading and saving, batch by batch


def _read_and_save(
    steve: SteveClient,
    run: SyncRun,
    listed: Listed,
    tally: RunTally,
    *,
    dry_run: bool,
) -> None:
    """Flag the stored rows SteVe lost, then read and save the listed transactions
    batch by batch. Raises SteveError, _SaveFailed or SoftTimeLimitExceeded."""
    # Lowest pk first: a run cut off part way has saved every listed transaction
    # below some pk, and the next run's pk search starts above the highest one
    # stored. New rows' ids follow SteVe's order too.
    # First, so that a run cut off by its time limit has still flagged them.
    vanished = list(
        TransactionSyncState.objects.filter(
            steve_transaction_id__in=listed.missing_pks, is_deleted_in_steve=False
        )
    )
    if dry_run:
        tally.updated += len(vanished)
    elif vanished:
        with _saving():
            _write_vanished(run, vanished, tally)
    transactions = sorted(listed.transactions, key=lambda t: t.id)
    tally.fetched = len(transactions)
    long_run = len(transactions) > PROGRESS_EVERY
    if long_run:
        tally.report(
            f"{len(transactions):,} transactions listed; reading their meter values "
            f"and saving them {WRITE_BATCH:,} at a time…"
        )
    for batch in _chunks(transactions, WRITE_BATCH):
        plans = _plan(steve, tally, batch, force_details=listed.force_details)
        if dry_run:
            _count_plans(plans, tally)
        else:
            _save_batch(run, plans, tally)
        tally.processed += len(batch)
        if long_run:
            done = "read" if dry_run else "read and saved"
            tally.report(
                f"Transactions {done}: {tally.processed:,} of {len(transactions):,}…"
            )
    if not dry_run:
        with _saving():
            _flag_suspected_stuck()


def _plan(
    steve: SteveClient,
    tally: RunTally,
    transactions: list[SteveTransaction],
    *,
    force_details: bool = False,
) -> list[TransactionPlan]:
    """What changed in `transactions`, planned against their rows as stored now
    (under the run's lock, so after any batch saved before). Raises SteveError."""
    stored = {
        row.steve_transaction_id: row
        for row in TransactionSyncState.objects.filter(
            steve_transaction_id__in=[t.id for t in transactions]
        )
    }
    # A manual stop touched within this window may have a station charging on.
    watched_since = timezone.now() - CHECK_IN_VALID_FOR
    needs_details = [
        t
        for t in transactions
        if force_details or _needs_details(stored.get(t.id), t, watched_since)
    ]
    readings = _fetch_readings(steve, tally, needs_details)
    unread = set(tally.unread_pks)
    corrections = _stored_corrections(
        [
            state.pk
            for t in transactions
            if (state := stored.get(t.id))
            and state.is_finalized
            and _stop_moved(state, t)
        ]
    )
    plans: list[TransactionPlan] = []
    for t in transactions:
        state = stored.get(t.id)
        # A new transaction whose meter values SteVe could not serve is stored from
        # its list row (its start, and its stop and stop value once stopped): the
        # charge is known at once, and its readings follow in a later run. A stored
        # open one keeps what it has until then.
        if t.id not in readings and not (
            (state is None and t.id in unread) or (state and state.is_finalized)
        ):
            continue  # vanished mid-run, or open and unread: the next run retries
        plan = plan_transaction(
            _stored_state(state) if state else None,
            t,
            readings.get(t.id),
            corrections.get(state.pk, ()) if state else (),
        )
        if plan.changed:
            plans.append(plan)
    return plans


def _needs_details(
    state: TransactionSyncState | None, t: SteveTransaction, watched_since: datetime
) -> bool:
    # Finalized rows only need a look when SteVe's stop data changed under them,
    # or, for a manual stop, to see whether the station still sends readings (it
    # charges on until it stops the session itself). A station that goes on sends
    # them within the check-in window, and each one moves updatedAt; a manual stop
    # untouched for longer is left alone, rather than read every run for 48 hours.
    if state is None or not state.is_finalized:
        return True
    if (
        t.stop_event_actor == TransactionSyncState.StopEventActor.MANUAL
        and state.updated_at >= watched_since
    ):
        return True
    return _stop_moved(state, t)


def _stop_moved(state: TransactionSyncState, t: SteveTransaction) -> bool:
    """Whether SteVe's stop data differs from the stored stop (a replaced stop)."""
    return (
        state.stopped_at != t.stop_timestamp
        or (t.stop_value_wh is not None and state.meter_last_wh != t.stop_value_wh)
        or state.stop_event_actor != (t.stop_event_actor or "")
    )


def _stored_corrections(state_ids: list[int]) -> dict[int, set[tuple[datetime, int]]]:
    """The (readingAt, meterWh) of the stored `corrected` events of these rows,
    which a replacing stop may repeat (see `plan_transaction`)."""
    found: dict[int, set[tuple[datetime, int]]] = {}
    if not state_ids:
        return found
    rows = (
        SyncedTransactionEvent.objects.corrections_of(state_ids)
        .order_by()
        .values_list("transaction_id", "reading_at", "meter_wh")
    )
    for state_id, reading_at, meter_wh in rows:
        found.setdefault(state_id, set()).add((reading_at, meter_wh))
    return found


def _fetch_readings(
    steve: SteveClient, tally: RunTally, transactions: list[SteveTransaction]
) -> dict[int, list[tuple[datetime, int]]]:
    """Energy readings per transaction pk, fetched in parallel.

    A transaction that vanished between the list and its details is left out (the
    next run sees it missing), and so is one SteVe cannot serve (`_unreadable`):
    the rest of the batch is saved, and the run is partial. Other errors abort the
    batch, so none of it is written.
    """

    def fetch(
        t: SteveTransaction,
    ) -> tuple[int, list[tuple[datetime, int]] | SteveError]:
        try:
            return t.id, steve.transaction_details(t.id).energy_readings()
        except SteveError as error:
            if isinstance(error, SteveNotFound) or _unreadable(error):
                return t.id, error
            raise

    results: dict[int, list[tuple[datetime, int]]] = {}
    unreadable: dict[int, SteveError] = {}
    if not transactions:
        return results
    pool = ThreadPoolExecutor(max_workers=DETAIL_WORKERS)
    try:
        for pk, readings in pool.map(fetch, transactions):
            if isinstance(readings, SteveNotFound):
                tally.fail_one(f"Transaction {pk} disappeared from SteVe mid-run.")
            elif isinstance(readings, SteveError):
                unreadable[pk] = readings
            else:
                results[pk] = readings
    finally:
        # Cut off (the time limit, a failed read), the run must end now: the
        # queued reads are dropped and the few in flight are not waited for, or
        # the task would run into the hard time limit and be killed unrecorded.
        pool.shutdown(wait=False, cancel_futures=True)
    if unreadable:
        _report_unreadable(tally, unreadable, others_read=bool(results))
    return results


def _unreadable(error: SteveError) -> bool:
    """SteVe answered a transaction's details with a server error (after the
    client's retries) or with a body Polaris cannot read, while it answered the
    run's list requests: a fault of that transaction's data, which must not hold
    up every other transaction on every run."""
    return isinstance(error, SteveBadResponse) or (error.status or 0) >= 500


def _report_unreadable(
    tally: RunTally, unreadable: dict[int, SteveError], *, others_read: bool
) -> None:
    pks = sorted(unreadable)
    reason = unreadable[pks[0]].message
    _leave_unread(
        tally,
        pks,
        f"SteVe could not serve the meter values ({reason})",
        others_done=others_read,
    )


def _leave_unread(
    tally: RunTally, pks: list[int], why: str, *, others_done: bool
) -> None:
    """Name the transactions (`pks`, sorted) this run could not take in, and why;
    the next incremental runs read them again."""
    shown = ", ".join(str(pk) for pk in pks[:UNREADABLE_NAMED])
    if len(pks) > UNREADABLE_NAMED:
        shown += f" and {len(pks) - UNREADABLE_NAMED:,} more"
    noun = "Transaction" if len(pks) == 1 else "Transactions"
    others = "The others were synced. " if others_done else ""
    tally.unread_pks.extend(pks)
    tally.errors += len(pks) - 1
    tally.fail_one(
        f"{noun} {shown}: {why} {others}"
        f"The next run reads {'it' if len(pks) == 1 else 'them'} again."
    )


def _stored_state(row: TransactionSyncState) -> StoredState:
    return StoredState(
        started_at=row.started_at,
        meter_start_wh=row.meter_start_wh,
        meter_last_wh=row.meter_last_wh,
        meter_dip_wh=row.meter_dip_wh,
        last_reading_at=row.last_reading_at,
        kwh_delivered=row.kwh_delivered,
        is_finalized=row.is_finalized,
        stopped_at=row.stopped_at,
        stop_reason=row.stop_reason,
        stop_event_actor=row.stop_event_actor,
        meter_reset_seen=row.meter_reset_seen,
        is_stop_estimated=row.is_stop_estimated,
        is_deleted_in_steve=row.is_deleted_in_steve,
        last_reading_after_stop_at=row.last_reading_after_stop_at,
    )


def _probe(steve: SteveClient, box_ids: list[str]) -> list[str]:
    if not box_ids:
        return []
    try:
        result = steve.trigger_heartbeat(box_ids)
    except SteveRejected as refused:
        if refused.no_station_connected:
            return []
        raise SteveRejected(
            refused.message,
            permanent=True,
            status=refused.status,
            operator_message=(
                f"SteVe refused the heartbeat probe ({refused.message}). One charge "
                "box id it cannot accept, such as one with = / ( ) < or >, makes it "
                "refuse them all: check the chargers' ids."
            ),
        ) from refused
    # A station that rejects the trigger, or lacks the feature, still answered.
    return [box for box in box_ids if result.answered(box)]


# Saving


def _count_plans(plans: list[TransactionPlan], tally: RunTally) -> None:
    for plan in plans:
        tally.created += plan.is_new
        tally.updated += not plan.is_new
        tally.events += len(plan.events)


@contextmanager
def _saving() -> Iterator[None]:
    """One database transaction whose failure raises _SaveFailed; the soft time
    limit stays itself."""
    try:
        with transaction.atomic():
            yield
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        raise _SaveFailed from error


def _save_batch(run: SyncRun, plans: list[TransactionPlan], tally: RunTally) -> None:
    """Save a batch in one database transaction. Should the database refuse one
    transaction's data (a value out of its range, say), the batch is saved one by
    one instead: the others are stored, and the refused ones are named and read
    again by the next runs, rather than every run failing on them for ever."""
    try:
        _save_plans(run, plans, tally)
    except _SaveFailed as failure:
        if not isinstance(failure.__cause__, REFUSED_DATA):
            raise
        logger.warning("Sync run %s: batch refused, saving one by one", run.pk)
        refused: dict[int, DatabaseError] = {}
        for plan in plans:
            try:
                _save_plans(run, [plan], tally)
            except _SaveFailed as one_failure:
                if not isinstance(one_failure.__cause__, REFUSED_DATA):
                    raise
                logger.error(
                    "Sync run %s: transaction %s refused",
                    run.pk,
                    plan.transaction.id,
                    exc_info=one_failure.__cause__,
                )
                refused[plan.transaction.id] = one_failure.__cause__
        if refused:
            _leave_unread(
                tally,
                sorted(refused),
                "Polaris could not store what SteVe sent (see logs).",
                others_done=len(refused) < len(plans),
            )


def _save_plans(run: SyncRun, plans: list[TransactionPlan], tally: RunTally) -> None:
    with _saving():
        chargers = _ensure_chargers(plans)
        written = _write_batch(run, plans, chargers)
        _check_in_from_readings(plans, chargers)
    # Counted once committed: a batch saved again one by one is counted once.
    tally.created += written.created
    tally.updated += written.updated
    tally.events += written.events
    tally.changed_ids.extend(written.changed_ids)


@dataclass(frozen=True, slots=True)
class _Written:
    created: int
    updated: int
    events: int
    changed_ids: list[int]


def _write_batch(
    run: SyncRun,
    plans: list[TransactionPlan],
    chargers: dict[tuple[str, int], int],
) -> _Written:
    now = timezone.now()
    rows = []
    for plan in plans:
        t = plan.transaction
        row = TransactionSyncState(
            steve_transaction_id=t.id,
            charger_id=chargers.get((t.charge_box_id, t.connector_id)),
            last_synced_at=now,
            updated_at=now,
            **plan.fields,
        )
        rows.append(row)
    saved = TransactionSyncState.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["steve_transaction_id"],
        update_fields=STATE_FIELDS,
    )
    ids = {row.steve_transaction_id: row.pk for row in saved}
    events = [
        SyncedTransactionEvent(
            transaction_id=ids[plan.transaction.id],
            sync_run=run,
            event_type=event.event_type,
            meter_wh=event.meter_wh,
            reading_at=event.reading_at,
            kwh_delta=event.kwh_delta,
            ocpp_id_tag=plan.transaction.ocpp_id_tag,
            synced_at=now,
        )
        for plan in plans
        for event in plan.events
    ]
    SyncedTransactionEvent.objects.bulk_create(events)
    user_mappings_spell_as_synced(
        tags=[plan.transaction.ocpp_id_tag for plan in plans if plan.is_new]
    )
    return _Written(
        created=sum(plan.is_new for plan in plans),
        updated=sum(not plan.is_new for plan in plans),
        events=len(events),
        changed_ids=list(ids.values()),
    )


def _write_vanished(
    run: SyncRun, rows: list[TransactionSyncState], tally: RunTally
) -> None:
    """Flag stored rows SteVe lost; open ones are closed where they stood.

    One INSERT for the stop events and one UPDATE per kind of row, however many.
    """
    now = timezone.now()
    events = []
    closed_fields: set[str] = set()
    for row in rows:
        if row.is_finalized:
            row.is_deleted_in_steve = True
        else:
            fields = plan_vanished(_stored_state(row))
            closed_fields.update(fields)
            for name, value in fields.items():
                setattr(row, name, value)
            # plan_vanished closed the row where it stood.
            assert row.stopped_at is not None
            events.append(
                SyncedTransactionEvent(
                    transaction=row,
                    sync_run=run,
                    event_type=SyncedTransactionEvent.EventType.STOPPED,
                    meter_wh=row.meter_last_wh,
                    reading_at=row.stopped_at,
                    kwh_delta=Decimal("0.000"),
                    ocpp_id_tag=row.ocpp_id_tag,
                    synced_at=now,
                )
            )
        row.last_synced_at = now
        row.updated_at = now
    closed = {event.transaction_id for event in events}
    SyncedTransactionEvent.objects.bulk_create(events)
    TransactionSyncState.objects.bulk_update(
        [row for row in rows if row.pk in closed],
        [*sorted(closed_fields), "last_synced_at", "updated_at"],
    )
    TransactionSyncState.objects.bulk_update(
        [row for row in rows if row.pk not in closed],
        ["is_deleted_in_steve", "last_synced_at", "updated_at"],
    )
    tally.events += len(events)
    tally.updated += len(rows)
    tally.changed_ids.extend(row.pk for row in rows)


def _ensure_chargers(plans: list[TransactionPlan]) -> dict[tuple[str, int], int]:
    """Create a charger for every connector seen for the first time; return ids.

    Usually every connector is known already, so one SELECT answers.
    """
    keys = {(p.transaction.charge_box_id, p.transaction.connector_id) for p in plans}
    if not keys:
        return {}
    boxes = {box for box, _ in keys}

    def known() -> dict[tuple[str, int], int]:
        return {
            (box, connector): pk
            for pk, box, connector in Charger.objects.filter(
                charge_box_id__in=boxes
            ).values_list("pk", "charge_box_id", "connector_id")
        }

    ids = known()
    new = sorted(keys - ids.keys())
    if not new:
        return ids
    Charger.objects.bulk_create(
        [
            Charger(charge_box_id=box, connector_id=connector, friendly_name=box)
            for box, connector in new
        ],
        ignore_conflicts=True,
    )
    return known()


def _flag_suspected_stuck() -> None:
    """Flag open sessions SteVe will never close by itself (CONTRACT §11), and
    clear the flag of open ones that proved alive: a fresh reading came, and no
    newer session is on their connector.

    Only rows whose flag changes are written, so a run with nothing new changes
    no row.
    """
    now = timezone.now()
    stale_before = now - timedelta(hours=settings.SYNC_STUCK_AFTER_HOURS)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE transaction_sync_state AS t
               SET "isSuspectedStuck" = NOT t."isSuspectedStuck", "updatedAt" = %s
             WHERE NOT t."isFinalized"
               AND t."isSuspectedStuck" <> (
                   COALESCE(t."lastReadingAt", t."startedAt") < %s
                   OR EXISTS (SELECT 1 FROM transaction_sync_state AS newer
                               WHERE newer."chargeBoxId" = t."chargeBoxId"
                                 AND newer."connectorId" = t."connectorId"
                                 AND newer."startedAt" > t."startedAt"))
            """,
            [now, stale_before],
        )


def _check_in_from_readings(
    plans: list[TransactionPlan], chargers: dict[tuple[str, int], int]
) -> None:
    """A charger that sent meter values recently (CHECK_IN_VALID_FOR) has checked in.

    One UPDATE for all of them; a check-in is only ever moved forward, so a newer
    one (from the heartbeat probe) is never overwritten.
    """
    fresh_after = timezone.now() - CHECK_IN_VALID_FOR
    latest: dict[int, datetime] = {}
    for plan in plans:
        at = plan.latest_reading_at
        key = (plan.transaction.charge_box_id, plan.transaction.connector_id)
        charger_id = chargers.get(key)
        if at is None or at < fresh_after or charger_id is None:
            continue
        latest[charger_id] = max(at, latest.get(charger_id, at))
    if not latest:
        return
    # Table and column names come from the model; the values are parameters.
    meta = Charger._meta
    pk, column = meta.pk.column, meta.get_field("last_check_in_at").column
    values = ", ".join(["(%s, %s::timestamptz)"] * len(latest))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE "{meta.db_table}" AS c
               SET "{column}" = v.at
              FROM (VALUES {values}) AS v(id, at)
             WHERE c."{pk}" = v.id AND (c."{column}" IS NULL OR c."{column}" < v.at)
            """,
            [param for item in latest.items() for param in item],
        )


def _chunks[T](items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
