"""The Celery tasks, run by a real Celery worker process against the stand-in."""

import time

import psycopg
from django.test import TransactionTestCase

from polaris.testing import CeleryWorker, current_database_url
from sync.locks import TRANSACTIONS_LOCK
from sync.models import SyncRun, TransactionSyncState
from sync.tasks import sync_run_reconcile, sync_run_transactions, sync_runs_prune
from sync.tests.standin_case import StandinTestMixin


class SyncTaskWorkerTests(StandinTestMixin, TransactionTestCase):
    def wait_for_finished_runs(self, count: int, timeout: float = 30) -> list[SyncRun]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = list(SyncRun.objects.exclude(status=SyncRun.Status.RUNNING))
            if len(runs) >= count:
                return runs
            time.sleep(0.2)
        self.fail(f"fewer than {count} finished runs after {timeout} s")

    def test_the_worker_runs_the_sync_task_once(self) -> None:
        steve = self.standin.polaris_settings()
        with CeleryWorker(**steve) as worker:
            sync_run_transactions.apply_async(args=["beat"], queue=worker.queue)
            (run,) = self.wait_for_finished_runs(1)
            # One task at a time, in the order sent: a duplicate delivery of the
            # sync would have run, as a second run, before a task sent after it.
            after = sync_runs_prune.apply_async(queue=worker.queue)
            worker.wait_for_log(f"sync_runs_prune[{after.id}] succeeded")
            self.assertEqual(SyncRun.objects.count(), 1)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(run.trigger, SyncRun.Trigger.BEAT)
        expected = len(self.standin.state()["transactions"])
        self.assertEqual(run.created_count, expected)
        self.assertEqual(TransactionSyncState.objects.count(), expected)
        self.assertIn("succeeded", worker.log())

    def test_the_reconcile_waits_for_the_run_that_holds_the_lock(self) -> None:
        # The transactions run every few seconds: a reconcile that skipped when it
        # met one would wait a whole interval.
        other = psycopg.connect(current_database_url(), autocommit=True)
        other.execute("SELECT pg_advisory_lock(%s)", [TRANSACTIONS_LOCK])
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            sync_run_reconcile.apply_async(queue=worker.queue)
            worker.wait_for_log("Retry in")
            self.assertFalse(SyncRun.objects.exists())
            other.close()
            (run,) = self.wait_for_finished_runs(1)
        self.assertEqual(
            (run.kind, run.trigger, run.status),
            (SyncRun.Kind.BACKFILL, SyncRun.Trigger.BEAT, SyncRun.Status.SUCCEEDED),
        )
