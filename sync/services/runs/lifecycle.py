"""A run's bookkeeping: its lock, its SyncRun row from start to finish, the tally
copied onto that row, and the sentences a failed run is recorded with. Every other
module of the run writes into the tally; only this one writes the row."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.dispatch import Signal
from django.utils import timezone

from sync.models import SyncRun
from sync.models.runs import INTERRUPTED
from sync.signals import run_finished, run_started

logger = logging.getLogger(__name__)

# A run that could not read many transactions names this many of them.
UNREADABLE_NAMED = 10


class SyncBusy(Exception):
    """Another run holds the lock; this one did nothing."""


Progress = Callable[[str], None]


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

    def also_updated(self, row_ids: list[int]) -> None:
        """Count rows a later step of the run changed, those not counted yet."""
        counted = set(self.changed_ids)
        new = [pk for pk in row_ids if pk not in counted]
        self.updated += len(new)
        self.changed_ids.extend(new)

    def fail_one(self, message: str) -> None:
        self.errors += 1
        if message not in self.error_messages:
            self.error_messages.append(message)


def leave_unread(
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


def not_configured(run: SyncRun, missing: ImproperlyConfigured) -> str:
    """The sentence of a run that could not make a SteVe client: recorded like any
    failure, so that `sync status` and the Sync runs page name the setting (a beat
    run would otherwise fail every interval without a trace)."""
    logger.error("sync_run=%s cannot talk to SteVe: %s", run.pk, missing)
    return str(missing)


def time_limit_sentence(tally: RunTally, by_hand: str, *, carries_on: bool) -> str:
    """Why a run ended at Celery's soft time limit and what to do. Only the
    incremental run (`carries_on`) picks up above the highest pk saved; a
    backfill lists its days again from the first."""
    limit = (
        f"The sync stopped at its {settings.CELERY_TASK_SOFT_TIME_LIMIT}-second "
        "time limit (CELERY_TASK_SOFT_TIME_LIMIT)"
    )
    if not tally.fetched:
        # SteVe was slow to list: nothing says the next run meets the same.
        return (
            f"{limit} while SteVe had not yet answered its first list of "
            "transactions. The next run asks again; if runs keep stopping here, "
            f"run `{by_hand}` once, which has no time limit, or raise "
            "CELERY_TASK_SOFT_TIME_LIMIT."
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


def saved_before(tally: RunTally, dry_run: bool) -> str:
    """For a failed run's sentence: the sessions its earlier batches saved."""
    saved = tally.created + tally.updated
    if dry_run or not saved:
        return ""
    return f" The {saved:,} sessions it saved before that stay saved."


def notify(signal: Signal, **kwargs: object) -> None:
    """Tell listeners (live pages); their failures are logged, never raised, because
    the run is already committed and must not look failed."""
    for receiver, result in signal.send_robust(sender=SyncRun, **kwargs):
        if isinstance(result, Exception):
            logger.error("Sync listener %r failed: %r", receiver, result)


@contextmanager
def advisory_lock(key: int) -> Iterator[None]:
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


def lock_held(key: int) -> bool:
    """Whether a session of this database holds the advisory lock `key`: a run
    is under way. (Its row alone cannot tell: a run whose worker or command died
    stays `running` until the next run marks it.)"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
            " AND granted AND classid = %s::oid AND objid = %s::oid AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()))",
            # A bigint key is two 32-bit halves in pg_locks.
            [key >> 32, key & 0xFFFF_FFFF],
        )
        (held,) = cursor.fetchone()
    return bool(held)


def start_run(
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
        error=INTERRUPTED,
    )
    run.save()
    notify(run_started, run=run)
    return run


def finish_run(
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
        notify(run_finished, run=run)
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
