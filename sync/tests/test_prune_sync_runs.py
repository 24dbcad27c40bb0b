"""`manage.py prune_sync_runs` and the daily prune beat runs: old sync runs that
changed nothing go, the others stay."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO
from unittest import mock

from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from polaris.celery import app as celery_app
from sync.models import SyncedTransactionEvent, SyncRun
from sync.services import retention
from sync.tasks import sync_runs_prune
from sync.tests.factories import SyncRunFactory, TransactionSyncStateFactory

Kind, Status = SyncRun.Kind, SyncRun.Status


class PruneSyncRunsTests(TestCase):
    def setUp(self) -> None:
        old = timezone.now() - timedelta(days=40)
        self.pruned = [
            SyncRunFactory(started_at=old),
            SyncRunFactory(started_at=old, status=Status.FAILED, error="SteVe …"),
            SyncRunFactory(started_at=old, kind=Kind.CHARGERS, updated_count=0),
            # A probe's counts are boxes asked and heard from, not changes.
            SyncRunFactory(
                started_at=old, kind=Kind.CHARGERS, fetched_count=6, updated_count=5
            ),
        ]
        changed = SyncRunFactory(started_at=old, updated_count=2, events_count=1)
        # Counts of 0, yet an event names it (a run cut off after a batch).
        with_event = SyncRunFactory(started_at=old, status=Status.FAILED)
        SyncedTransactionEvent.objects.create(
            transaction=TransactionSyncStateFactory(),
            sync_run=with_event,
            event_type=SyncedTransactionEvent.EventType.STARTED,
            meter_wh=100_000,
            reading_at=old,
            kwh_delta=Decimal("0.000"),
            ocpp_id_tag="TAG-UNMAPPED",
        )
        # The newest successful backfill, which the sync and the console read.
        latest_backfill = SyncRunFactory(started_at=old, kind=Kind.BACKFILL)
        still_running = SyncRunFactory(
            started_at=old, status=Status.RUNNING, finished_at=None
        )
        self.recent = SyncRunFactory(started_at=timezone.now() - timedelta(days=29))
        newest = [SyncRunFactory(), SyncRunFactory(kind=Kind.CHARGERS)]
        self.kept = [changed, with_event, latest_backfill, still_running, *newest]

    def prune(self, *args: str) -> str:
        out = StringIO()
        call_command("prune_sync_runs", *args, stdout=out)
        return out.getvalue()

    def test_a_dry_run_counts_and_deletes_nothing(self) -> None:
        self.assertEqual(
            self.prune("--dry-run"),
            "4 sync runs older than 30 days that changed nothing would be deleted.\n",
        )
        self.assertEqual(SyncRun.objects.count(), 11)

    def test_it_deletes_only_old_runs_that_changed_nothing(self) -> None:
        self.assertEqual(
            self.prune(),
            "4 sync runs older than 30 days that changed nothing were deleted.\n",
        )
        self.assertCountEqual(
            SyncRun.objects.values_list("pk", flat=True),
            [run.pk for run in [*self.kept, self.recent]],
        )
        self.assertEqual(SyncedTransactionEvent.objects.get().sync_run, self.kept[1])

    def test_it_deletes_batch_by_batch(self) -> None:
        with mock.patch.object(retention, "PRUNE_BATCH", 2):
            # A long prune says how far it got.
            self.assertEqual(
                self.prune(),
                "2 deleted…\n4 deleted…\n"
                "4 sync runs older than 30 days that changed nothing were deleted.\n",
            )
        self.assertEqual(SyncRun.objects.count(), 7)

    def test_days_choose_another_age(self) -> None:
        self.assertIn("5 sync runs older than 20 days", self.prune("--days", "20"))

    def test_beat_prunes_daily_with_the_configured_retention(self) -> None:
        entry = celery_app.conf.beat_schedule["prune-sync-runs"]
        self.assertEqual(entry["task"], sync_runs_prune.name)
        self.assertEqual(entry["schedule"], float(timedelta(days=1).total_seconds()))
        with self.settings(SYNC_RUNS_RETENTION_DAYS=20):
            self.assertEqual(sync_runs_prune(), 5)
        self.assertCountEqual(
            SyncRun.objects.values_list("pk", flat=True),
            [run.pk for run in self.kept],
        )
