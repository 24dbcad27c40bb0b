"""Sync runs: one row per execution of a sync, as the Sync runs page lists them."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

# The sync runs every SYNC_INTERVAL_SECONDS: three intervals without a successful
# run are no longer the gap between two runs.
STALE_AFTER_INTERVALS = 3


def stale_after() -> timedelta:
    """How long what the sync last confirmed stays current."""
    return timedelta(seconds=STALE_AFTER_INTERVALS * settings.SYNC_INTERVAL_SECONDS)


def stale_before(now: datetime) -> datetime:
    """What the sync last confirmed before this moment is out of date."""
    return now - stale_after()


@dataclass(frozen=True, slots=True)
class LatestReads:
    """When the latest transactions run that read SteVe through finished, the
    SteVe ids of those it could not read (a partial run names them), and when the
    latest that read every one finished."""

    read_at: datetime | None
    unread_ids: frozenset[int]
    confirmed_at: datetime | None

    def last_read_at(self, steve_transaction_id: int) -> datetime | None:
        """When a run last read this open transaction, even one that wrote
        nothing (rows change only when the session did); None before any."""
        if steve_transaction_id in self.unread_ids:
            return self.confirmed_at
        return self.read_at


class SyncRunQuerySet(models.QuerySet["SyncRun"]):
    def running(self) -> "SyncRunQuerySet":
        """Runs that have started and not finished."""
        return self.filter(status=SyncRun.Status.RUNNING)

    def finished(self) -> "SyncRunQuerySet":
        """Runs that have ended, however they went."""
        return self.exclude(status=SyncRun.Status.RUNNING)

    def newest_first(self) -> "SyncRunQuerySet":
        """Runs by start, the latest first (id breaks ties in one transaction)."""
        return self.order_by("-started_at", "-id")

    def writing_transactions(self) -> "SyncRunQuerySet":
        """Runs of the kinds that write sessions (and share one lock)."""
        return self.filter(kind__in=SyncRun.TRANSACTION_KINDS)

    def succeeded(self, kind: str) -> "SyncRunQuerySet":
        """Successful runs of `kind`, most recently finished first."""
        return self.filter(kind=kind, status=SyncRun.Status.SUCCEEDED).order_by(
            "-finished_at"
        )

    def read_through(self, kind: str) -> "SyncRunQuerySet":
        """Runs of `kind` that read every transaction they listed, most recently
        finished first: the successful ones, and the partial ones, which read all
        but those they name (`unread_transaction_ids`)."""
        return self.filter(kind=kind, status__in=SyncRun.READ_STATUSES).order_by(
            "-finished_at"
        )

    def latest_reads(self) -> LatestReads:
        """The LatestReads of the transactions runs, in one query while they
        succeed."""
        transactions = SyncRun.Kind.TRANSACTIONS
        latest = (
            self.read_through(transactions)
            .values_list("status", "finished_at", "unread_transaction_ids")
            .first()
        )
        if latest is None:
            return LatestReads(read_at=None, unread_ids=frozenset(), confirmed_at=None)
        status, read_at, unread_ids = latest
        if status == SyncRun.Status.SUCCEEDED:
            confirmed_at = read_at
        else:
            good = self.latest_succeeded(transactions)
            confirmed_at = good.finished_at if good else None
        return LatestReads(read_at, frozenset(unread_ids), confirmed_at)

    def finished_of(self, kind: str) -> "SyncRunQuerySet":
        """Finished runs of `kind`, however they went, newest first."""
        return self.filter(kind=kind).finished().newest_first()

    def latest_succeeded(self, kind: str) -> "SyncRun | None":
        """The most recently finished successful run of `kind`, or None."""
        return self.succeeded(kind).first()

    def resyncs_of(self, steve_transaction_id: int) -> "SyncRunQuerySet":
        """Single-transaction runs ("Resync now") of this transaction, newest first."""
        return self.filter(
            kind=SyncRun.Kind.TRANSACTION, steve_transaction_id=steve_transaction_id
        ).newest_first()

    def that_changed_sessions(self) -> "SyncRunQuerySet":
        """Finished runs that created or updated a session, newest first."""
        return (
            self.writing_transactions()
            .filter(finished_at__isnull=False)
            .filter(Q(created_count__gt=0) | Q(updated_count__gt=0))
            .order_by("-finished_at")
        )


# The error of a run whose worker or command died: the next run marks it so.
INTERRUPTED = "Interrupted: its worker or command stopped before the run finished."


class SyncRun(models.Model):
    """One execution of a sync, shown on the Sync runs page."""

    class Kind(models.TextChoices):
        TRANSACTIONS = "transactions", "Transactions"
        BACKFILL = "backfill", "Backfill"
        TRANSACTION = "transaction", "Single transaction"
        CHARGERS = "chargers", "Charger probe"

    TRANSACTION_KINDS = (Kind.TRANSACTIONS, Kind.BACKFILL, Kind.TRANSACTION)

    class Trigger(models.TextChoices):
        BEAT = "beat", "Schedule"
        COMMAND = "command", "Command"
        # DESIGN.md names the three: beat, command, manual (Run sync now and
        # Resync now in the console).
        MANUAL = "manual", "Manual"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        PARTIAL = "partial", "Partial"

    # Runs that did not read everything they set out to.
    FAILED_STATUSES = (Status.FAILED, Status.PARTIAL)
    # Runs that got to reading, all or all but the transactions they name.
    READ_STATUSES = (Status.SUCCEEDED, Status.PARTIAL)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RUNNING
    )
    fetched_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    events_count = models.PositiveIntegerField(default=0)
    errors_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Its detail page shows how a resync went, failures included: they change no
    # session, so nothing else there would.
    steve_transaction_id = models.PositiveIntegerField(
        null=True,
        blank=True,
        db_column="steveTransactionId",
        help_text="The SteVe transaction a single-transaction run re-read.",
    )
    # Read again by the next incremental run: it may have stored higher pks, so
    # its search for new ones no longer reaches these.
    unread_transaction_ids = ArrayField(
        models.PositiveIntegerField(),
        default=list,
        # Also in the table: seed_scale and the load test COPY runs in bulk.
        db_default=[],
        blank=True,
        db_column="unreadSteveTransactionIds",
        help_text="SteVe transactions whose meter values SteVe could not serve.",
    )

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        db_table = "sync_runs"
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["kind", "status", "-finished_at"]),
            # A run every 10 s is three million rows a year; the page reads the newest.
            models.Index(fields=["-started_at", "-id"], name="sync_runs_newest"),
            # The Sync runs page filtered by kind or by status; failures and
            # resyncs are rare among three million runs a year.
            models.Index(
                fields=["kind", "-started_at", "-id"], name="sync_runs_kind_newest"
            ),
            models.Index(
                fields=["status", "-started_at", "-id"], name="sync_runs_status_newest"
            ),
            models.Index(
                fields=["steve_transaction_id", "-started_at", "-id"],
                name="sync_runs_resyncs",
                condition=Q(steve_transaction_id__isnull=False),
            ),
            # The latest run that read SteVe through, for the Stale marks and the
            # portal's delay notice: status IN (...) is no range of the index
            # above, and sorting every run took 2.6 ms at 9,000 runs.
            models.Index(
                fields=["kind", "-finished_at"],
                name="sync_runs_read_through",
                condition=Q(status__in=["succeeded", "partial"]),
            ),
            # The console banner ("N sessions updated …") reads the last changing run.
            models.Index(
                fields=["-finished_at"],
                name="sync_runs_last_change",
                condition=Q(finished_at__isnull=False)
                & (Q(created_count__gt=0) | Q(updated_count__gt=0)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run #{self.pk} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        """How long it ran; None while running, and for a run cut off, whose
        finished_at is when the next run noticed, not when it died."""
        if self.finished_at is None or self.is_interrupted:
            return None
        return self.finished_at - self.started_at

    @property
    def is_interrupted(self) -> bool:
        return self.error == INTERRUPTED

    @cached_property
    def turns_failing_on_or_off(self) -> bool:
        """Whether this finished run may change whether the sync is failing: a
        transactions run that failed, or the first to finish after one that did.
        Cached: the console's and the portal's live updates both ask of each run."""
        if self.kind != SyncRun.Kind.TRANSACTIONS:
            return False
        if self.status in SyncRun.FAILED_STATUSES:
            return True
        previous = (
            SyncRun.objects.finished_of(self.kind)
            .filter(started_at__lt=self.started_at)
            .values_list("status", flat=True)
            .first()
        )
        return previous in SyncRun.FAILED_STATUSES
