"""A Celery worker killed with SIGKILL in the middle of a sync run, then restarted."""

import signal
import time
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.test import TransactionTestCase

from polaris.testing import CeleryWorker
from sync.models import SyncedTransactionEvent, SyncRun, TransactionSyncState
from sync.tasks import sync_run_transactions
from sync.tests.standin_case import StandinTestMixin


class WorkerKilledMidRunTests(StandinTestMixin, TransactionTestCase):
    def wait_for(self, condition: object, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.1)
        self.fail("condition not met in time")

    def test_the_next_run_closes_the_cut_off_run_and_catches_up(self) -> None:
        # Details answer slowly, so the run is still reading SteVe when killed.
        self.standin.set_fault("slow", delay=5, count=-1, path_contains="transactions/")
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            self.wait_for(SyncRun.objects.running().exists)
            worker.stop(signal.SIGKILL)
        cut_off = SyncRun.objects.get()
        self.assertEqual(cut_off.status, SyncRun.Status.RUNNING)
        # Phase one writes nothing, so the kill left no half-written session.
        self.assertFalse(TransactionSyncState.objects.exists())

        self.standin.clear_faults()
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            self.wait_for(
                lambda: SyncRun.objects.filter(status=SyncRun.Status.SUCCEEDED).exists()
            )
            # A second run afterwards finds nothing new: no duplicate events.
            events = SyncedTransactionEvent.objects.count()
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            self.wait_for(
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
