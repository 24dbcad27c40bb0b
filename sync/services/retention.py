"""How long sync runs are kept: a run every SYNC_INTERVAL_SECONDS adds 8,640 rows a
day at 10 s, nearly all of them runs that found nothing to change."""

from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from sync.models import SyncedTransactionEvent, SyncRun

# Runs deleted per statement: short transactions, however many a first prune finds.
PRUNE_BATCH = 10_000


def sync_runs_prune(
    *,
    older_than: timedelta,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the finished sync runs started more than `older_than` ago that changed
    nothing: no session created or updated, no event. A charger probe changes no
    session (its counts are charge boxes asked and heard from), so every old one
    goes. Returns how many were deleted (would be, with dry_run).

    A run that synced events stays, as events name their run; so does the latest
    successful run of each kind, which the sync and the console's freshness read.
    Deletes in batches of PRUNE_BATCH, each in its own transaction, and calls
    `progress` with the number deleted so far after each full batch (more may
    follow).
    """
    keep = [
        run.pk
        for kind in SyncRun.Kind.values
        if (run := SyncRun.objects.latest_succeeded(kind)) is not None
    ]
    prunable = (
        SyncRun.objects.filter(
            Q(kind=SyncRun.Kind.CHARGERS)
            | Q(created_count=0, updated_count=0, events_count=0),
            started_at__lt=timezone.now() - older_than,
            finished_at__isnull=False,
        )
        .exclude(pk__in=keep)
        .exclude(Exists(SyncedTransactionEvent.objects.filter(sync_run=OuterRef("pk"))))
    )
    if dry_run:
        return prunable.count()
    deleted = 0
    while batch := list(prunable.values_list("pk", flat=True)[:PRUNE_BATCH]):
        with transaction.atomic():
            count, _ = SyncRun.objects.filter(pk__in=batch).delete()
        deleted += count
        if progress is not None and len(batch) == PRUNE_BATCH:
            progress(deleted)
    return deleted
