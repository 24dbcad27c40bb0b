"""The scheduled reconcile: a backfill of recent days that flags what SteVe deleted."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.test import TestCase

from polaris.celery import app as celery_app
from sync import services
from sync.models import SyncRun, TransactionSyncState
from sync.services.runs import lifecycle
from sync.tasks import sync_run_reconcile
from sync.tests.standin_case import StandinTestMixin


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SyncReconcileTests(StandinTestMixin, TestCase):
    def is_deleted_in_steve(self, pk: int) -> bool:
        row = TransactionSyncState.objects.get(steve_transaction_id=pk)
        return row.is_deleted_in_steve

    def test_it_flags_stopped_transactions_steve_deleted_within_its_days(
        self,
    ) -> None:
        recent = self.standin.add_transaction("CP-003", 1, "TAG-0002")
        long_ago = datetime.now(UTC) - timedelta(days=settings.SYNC_RECONCILE_DAYS + 2)
        old = self.standin.add_transaction(
            "CP-004", 1, "TAG-0002", start_timestamp=iso(long_ago)
        )
        for pk in (recent, old):
            self.standin.station_stop(pk)
        services.sync_run_transactions(trigger="command", client=self.steve)
        for pk in (recent, old):
            self.standin.delete_transaction(pk)

        # Stopped by their station, neither is looked at again by the incremental
        # run: it cannot tell that SteVe deleted them.
        services.sync_run_transactions(trigger="beat", client=self.steve)
        self.assertFalse(self.is_deleted_in_steve(recent))

        run = services.sync_run_reconcile(trigger="beat", client=self.steve)
        self.assertEqual(
            (run.kind, run.trigger, run.status, run.updated_count),
            (SyncRun.Kind.BACKFILL, SyncRun.Trigger.BEAT, SyncRun.Status.SUCCEEDED, 1),
        )
        self.assertTrue(self.is_deleted_in_steve(recent))
        # Older than its days: left to `manage.py sync backfill --since`.
        self.assertFalse(self.is_deleted_in_steve(old))

    def test_beat_runs_it_every_interval(self) -> None:
        entry = celery_app.conf.beat_schedule["reconcile-transactions"]
        self.assertEqual(entry["task"], sync_run_reconcile.name)
        interval = float(settings.SYNC_RECONCILE_INTERVAL_SECONDS)
        self.assertEqual(entry["schedule"], interval)
        self.assertEqual(entry["options"], {"expires": interval})

    def test_a_reconcile_that_fails_part_way_has_flagged_the_deletions(self) -> None:
        # Cut off while reading meter values (a SteVe fault here; Celery's time
        # limit the same way), it has still flagged what SteVe deleted: those
        # come from its list call, before the batches.
        deleted = self.standin.add_transaction("CP-003", 1, "TAG-0002")
        self.standin.station_stop(deleted)
        services.sync_run_transactions(trigger="command", client=self.steve)
        self.standin.delete_transaction(deleted)
        self.standin.add_transaction("CP-004", 1, "TAG-0002")
        self.standin.set_fault("cut", path_contains="/api/v1/transactions/", count=-1)
        run = services.sync_run_reconcile(trigger="beat", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.FAILED, run.error)
        self.assertTrue(self.is_deleted_in_steve(deleted))

    def test_a_backfill_cut_off_by_its_time_limit_does_not_promise_to_carry_on(
        self,
    ) -> None:
        # Only the incremental run picks up above the highest pk it saved.
        tally = lifecycle.RunTally(fetched=1_200, processed=500)
        sentence = lifecycle.time_limit_sentence(
            tally, "manage.py sync backfill --since 2026-11-28", carries_on=False
        )
        self.assertIn("after 500 of 1,200 transactions", sentence)
        self.assertIn("the next one reads its days again from the first", sentence)
        self.assertNotIn("carries on", sentence)

    def test_a_run_cut_off_while_steve_was_slow_to_list_is_not_doomed(self) -> None:
        # Nothing listed yet: SteVe was slow, not the batch too big, so the next
        # run is not said to stop there too.
        slow_steve = lifecycle.time_limit_sentence(
            lifecycle.RunTally(), "manage.py sync transactions", carries_on=True
        )
        self.assertIn("SteVe had not yet answered its first list", slow_steve)
        self.assertIn("The next run asks again", slow_steve)
        self.assertNotIn("would stop there too", slow_steve)
        too_big = lifecycle.time_limit_sentence(
            lifecycle.RunTally(fetched=800),
            "manage.py sync transactions",
            carries_on=True,
        )
        self.assertIn("before it had read a batch, so the next run would stop", too_big)
