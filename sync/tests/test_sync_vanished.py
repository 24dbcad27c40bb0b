"""Transactions that vanish from SteVe are flagged in bulk, not row by row."""

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from sync import services
from sync.models import SyncedTransactionEvent, SyncRun, TransactionSyncState
from sync.tests.standin_case import StandinTestMixin


class SyncVanishedTests(StandinTestMixin, TestCase):
    def sync(self) -> SyncRun:
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        return run

    def test_several_open_transactions_vanish_with_one_update(self) -> None:
        pks = [
            self.standin.add_transaction(box, connector, "TAG-0002")
            for box, connector in (("CP-003", 1), ("CP-004", 1), ("CP-004", 2))
        ]
        self.sync()
        for pk in pks:
            self.standin.delete_transaction(pk)

        with CaptureQueriesContext(connection) as queries:
            run = self.sync()

        self.assertEqual((run.updated_count, run.events_count), (3, 3))
        rows = TransactionSyncState.objects.filter(steve_transaction_id__in=pks)
        for row in rows:
            self.assertEqual(
                (row.is_deleted_in_steve, row.is_finalized, row.is_stop_estimated),
                (True, True, True),
            )
            self.assertEqual(row.stopped_at, row.last_reading_at or row.started_at)
            stop = row.events.get(event_type=SyncedTransactionEvent.EventType.STOPPED)
            self.assertEqual(
                (stop.sync_run_id, stop.reading_at, stop.meter_wh),
                (run.pk, row.stopped_at, row.meter_last_wh),
            )
        updates = [
            query["sql"]
            for query in queries.captured_queries
            if query["sql"].lstrip().startswith('UPDATE "transaction_sync_state"')
        ]
        self.assertEqual(len(updates), 1, updates)
