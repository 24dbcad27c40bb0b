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

This module holds the public services and the run's skeleton; its parts live in
`lifecycle` (the lock, the SyncRun row and the tally), `listing` (SteVe's list
calls), `planning` (meter values and what changed) and `writing` (the database).
"""

import logging
from contextlib import ExitStack
from datetime import date, datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from polaris.database import database_error_reason
from sync.client import SteveClient, SteveError, SteveRejected, given_or_new
from sync.locks import CHARGERS_LOCK, TRANSACTIONS_LOCK
from sync.models import Charger, SyncRun, TransactionSyncState
from sync.services.runs.lifecycle import (
    Progress,
    RunTally,
    SyncBusy,
    advisory_lock,
    finish_run,
    lock_held,
    not_configured,
    notify,
    saved_before,
    start_run,
    time_limit_sentence,
)
from sync.services.runs.listing import (
    Collector,
    Listed,
    chunks,
    collect_backfill,
    collect_incremental,
    collect_pks,
)
from sync.services.runs.planning import plan_batch
from sync.services.runs.writing import (
    SaveFailed,
    count_plans,
    flag_suspected_stuck,
    mark_read,
    save_batch,
    saving,
    write_vanished,
)
from sync.signals import sessions_changed

__all__ = [
    "SyncBusy",
    "sync_run_backfill",
    "sync_run_chargers",
    "sync_run_reconcile",
    "sync_run_transaction",
    "sync_run_transactions",
    "transactions_sync_under_way",
]

logger = logging.getLogger(__name__)

WRITE_BATCH = 500
# A run listing more transactions than this says how far it got after each batch.
PROGRESS_EVERY = 1_000


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
        collect_incremental,
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
        lambda steve: collect_backfill(steve, start),
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
        lambda steve: collect_pks(steve, [steve_transaction_id]),
        steve_transaction_id=steve_transaction_id,
    )


def sync_run_chargers(*, trigger: str, client: SteveClient | None = None) -> SyncRun:
    """Probe every known charge box with TriggerMessage(Heartbeat); check in the ones
    that answer. Raises SyncBusy when another probe is in progress."""
    with advisory_lock(CHARGERS_LOCK), ExitStack() as stack:
        run = start_run(SyncRun.Kind.CHARGERS, trigger, dry_run=False)
        tally = RunTally()
        try:
            steve = stack.enter_context(given_or_new(client))
        except ImproperlyConfigured as missing:
            return finish_run(run, tally, error=not_configured(run, missing))
        box_ids = sorted(set(Charger.objects.values_list("charge_box_id", flat=True)))
        try:
            answered = _probe(steve, box_ids)
        except SteveError as error:
            # Nothing was read: Sync runs shows it fetched none, not the boxes it
            # meant to probe.
            return finish_run(run, tally, error=error.operator_message)
        tally.fetched = len(box_ids)
        Charger.objects.filter(charge_box_id__in=answered).update(
            last_check_in_at=timezone.now()
        )
        tally.updated = len(answered)
        return finish_run(run, tally)


# The run skeleton


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
    with advisory_lock(TRANSACTIONS_LOCK), ExitStack() as stack:
        run = start_run(
            kind, trigger, dry_run=dry_run, steve_transaction_id=steve_transaction_id
        )
        tally = RunTally(progress=progress)
        try:
            steve = stack.enter_context(given_or_new(client))
        except ImproperlyConfigured as missing:
            error = not_configured(run, missing)
        else:
            error = _sync(steve, run, collect, tally, dry_run=dry_run, by_hand=by_hand)
            if steve_transaction_id is not None and not (error or dry_run):
                mark_read(steve_transaction_id=steve_transaction_id, at=timezone.now())
        finished = finish_run(run, tally, error=error, dry_run=dry_run)
    # Batches saved before a failure are committed too: live pages show them.
    if tally.changed_ids:
        notify(sessions_changed, run=finished, transaction_ids=tally.changed_ids)
    return finished


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
        return time_limit_sentence(
            tally, by_hand, carries_on=run.kind == SyncRun.Kind.TRANSACTIONS
        )
    except SteveError as error:
        logger.warning("sync_run=%s failed while reading SteVe: %s", run.pk, error)
        return error.operator_message + saved_before(tally, dry_run)
    except SaveFailed:
        logger.exception("sync_run=%s failed while writing", run.pk)
        cause = "Polaris could not save what SteVe sent; see logs."
        return cause + saved_before(tally, dry_run)
    except (OperationalError, InterfaceError) as error:
        # Polaris's own database failed under the run, not SteVe's data. When it
        # is gone, recording this sentence fails too, and the run shows as
        # running until the next one marks it interrupted.
        reason = database_error_reason(error)
        logger.warning("sync_run=%s lost the database: %s", run.pk, reason)
        cause = f"Polaris's database failed during the run ({reason})."
        return cause + saved_before(tally, dry_run)
    except Exception:
        # A bug, or data no check foresaw: the run must still end as failed
        # rather than stay "running" until the next one calls it interrupted.
        logger.exception("sync_run=%s failed while processing SteVe's data", run.pk)
        cause = "Polaris could not process what SteVe sent; see logs."
        return cause + saved_before(tally, dry_run)
    return ""


def _read_and_save(
    steve: SteveClient,
    run: SyncRun,
    listed: Listed,
    tally: RunTally,
    *,
    dry_run: bool,
) -> None:
    """Flag the stored rows SteVe lost, then read and save the listed transactions
    batch by batch. Raises SteveError, SaveFailed or SoftTimeLimitExceeded."""
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
        with saving():
            write_vanished(run, vanished, tally)
    transactions = sorted(listed.transactions, key=lambda t: t.id)
    tally.fetched = len(transactions)
    long_run = len(transactions) > PROGRESS_EVERY
    if long_run:
        tally.report(
            f"{len(transactions):,} transactions listed; reading their meter values "
            f"and saving them {WRITE_BATCH:,} at a time…"
        )
    for batch in chunks(transactions, WRITE_BATCH):
        plans = plan_batch(steve, tally, batch, force_details=listed.force_details)
        if dry_run:
            count_plans(plans, tally)
        else:
            save_batch(run, plans, tally)
        tally.processed += len(batch)
        if long_run:
            done = "read" if dry_run else "read and saved"
            tally.report(
                f"Transactions {done}: {tally.processed:,} of {len(transactions):,}…"
            )
    if not dry_run:
        with saving():
            flagged = flag_suspected_stuck()
        # Counted once committed, as each batch is: the pages hear of a session
        # the sync now suspects stuck (or no longer) as of any other change.
        tally.also_updated(flagged)


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


def transactions_sync_under_way() -> bool:
    """Whether a run that writes transactions (a sync, a backfill, a resync) is
    under way now, in any process."""
    return lock_held(TRANSACTIONS_LOCK)
