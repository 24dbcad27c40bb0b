"""A Celery worker killed with SIGKILL in the middle of a sync run, then restarted,
and a run cut off by the task's soft time limit."""

import signal
import time
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.test import TransactionTestCase

from polaris.testing import CeleryWorker, wait_until
from sync import services
from sync.models import SyncedTransactionEvent, SyncRun, TransactionSyncState
from sync.services.runs import WRITE_BATCH
from sync.tasks import sync_run_transactions
from sync.tests.standin_case import StandinTestMixin


class WorkerKilledMidRunTests(StandinTestMixin, TransactionTestCase):
    def test_the_next_run_closes_the_cut_off_run_and_catches_up(self) -> None:
        # Details answer slowly, so the run is still reading SteVe when killed.
        self.standin.set_fault("slow", delay=5, count=-1, path_contains="transactions/")
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            wait_until(SyncRun.objects.running().exists)
            worker.stop(signal.SIGKILL)
        cut_off = SyncRun.objects.get()
        self.assertEqual(cut_off.status, SyncRun.Status.RUNNING)
        # Phase one writes nothing, so the kill left no half-written session.
        self.assertFalse(TransactionSyncState.objects.exists())

        self.standin.clear_faults()
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            wait_until(
                lambda: SyncRun.objects.filter(status=SyncRun.Status.SUCCEEDED).exists()
            )
            # A second run afterwards finds nothing new: no duplicate events.
            events = SyncedTransactionEvent.objects.count()
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            wait_until(
                lambda: (
                    SyncRun.objects.filter(status=SyncRun.Status.SUCCEEDED).count() == 2
                )
            )
        cut_off.refresh_from_db()
        self.assertEqual(cut_off.status, SyncRun.Status.FAILED)
        self.assertIn("Interrupted", cut_off.error)
        expected = len(self.standin.state()["transactions"])
        self.assertEqual(TransactionSyncState.objects.count(), expected)
        self.assertEqual(SyncedTransactionEvent.objects.count(), events)
        for row in TransactionSyncState.objects.annotate(
            total=Coalesce(Sum("events__kwh_delta"), Decimal("0"))
        ):
            self.assertEqual(row.total, row.kwh_delivered)


class TwoSchedulersTests(StandinTestMixin, TransactionTestCase):
    """Two beats started by mistake send the task twice: still one run at a time."""

    def test_concurrent_runs_on_two_workers_give_one_run(self) -> None:
        env = self.standin.polaris_settings()
        self.standin.set_fault("slow", delay=2, count=-1, path_contains="ACTIVE")
        with CeleryWorker(**env) as first, CeleryWorker(**env) as second:
            sync_run_transactions.apply_async(args=["beat"], queue=first.queue)
            sync_run_transactions.apply_async(args=["beat"], queue=second.queue)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                skipped = "another run is in progress" in first.log() + second.log()
                if skipped and not SyncRun.objects.running().exists():
                    break
                time.sleep(0.2)
        self.assertEqual(SyncRun.objects.count(), 1)
        self.assertEqual(SyncRun.objects.get().status, SyncRun.Status.SUCCEEDED)


class SoftTimeLimitTests(StandinTestMixin, TransactionTestCase):
    """A first sync against a SteVe with more history than one task may read."""

    def test_a_run_cut_off_keeps_its_batches_and_the_next_run_carries_on(
        self,
    ) -> None:
        # About 800 transactions: two batches.
        self.standin.reset(fleet_size=50)
        pks = sorted(t["id"] for t in self.standin.state()["transactions"])
        self.assertGreater(len(pks), WRITE_BATCH)
        # The second batch's first meter values take longer than the soft limit.
        self.standin.set_fault(
            "slow", delay=30, path_contains=f"/transactions/{pks[WRITE_BATCH]}?"
        )
        # The limits travel with the task message (beat's, in production); the
        # worker's settings say the same, as they do in production.
        limits = {"CELERY_TASK_SOFT_TIME_LIMIT": "8", "CELERY_TASK_TIME_LIMIT": "60"}
        env = {**self.standin.polaris_settings(), **limits, "STEVE_TIMEOUT": "60"}
        with CeleryWorker(pool="prefork", **env) as worker:
            sync_run_transactions.apply_async(
                args=["beat"], queue=worker.queue, soft_time_limit=8, time_limit=60
            )
            worker.wait_for_log("succeeded", timeout=50)
        cut_off = SyncRun.objects.get()
        self.assertEqual(cut_off.status, SyncRun.Status.FAILED)
        self.assertEqual(
            cut_off.error,
            "The sync stopped at its 8-second time limit (CELERY_TASK_SOFT_TIME_LIMIT)"
            f" after {WRITE_BATCH} of {len(pks)} transactions; what it saved stays, "
            "and the next run carries on from there. To catch up at once, run "
            "`manage.py sync transactions`, which has no time limit.",
        )
        self.assertEqual(cut_off.created_count, WRITE_BATCH)
        self.assertEqual(
            sorted(
                TransactionSyncState.objects.values_list(
                    "steve_transaction_id", flat=True
                )
            ),
            pks[:WRITE_BATCH],
        )

        self.standin.clear_faults()
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(run.created_count, len(pks) - WRITE_BATCH)
        self.assertEqual(TransactionSyncState.objects.count(), len(pks))
        for row in TransactionSyncState.objects.annotate(
            total=Coalesce(Sum("events__kwh_delta"), Decimal("0"))
        ):
            self.assertEqual(row.total, row.kwh_delivered)
        events = SyncedTransactionEvent.objects.count()
        again = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual((again.created_count, again.events_count), (0, 0))
        self.assertEqual(SyncedTransactionEvent.objects.count(), events)
