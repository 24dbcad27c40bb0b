"""The sync's write phase for chargers: created once, checked in from readings.

Against the stand-in's default fleet over real HTTP, like test_sync_transactions.
"""

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from sync import services
from sync.models import Charger, SyncRun, TransactionSyncState
from sync.tests.standin_case import StandinTestMixin


def charger_writes(queries: CaptureQueriesContext) -> list[str]:
    """INSERTs and UPDATEs of the chargers table, leading whitespace stripped."""
    statements = [query["sql"].lstrip() for query in queries.captured_queries]
    return [
        sql
        for sql in statements
        if sql.startswith(("INSERT", "UPDATE")) and '"chargers"' in sql
    ]


class SyncCheckInTests(StandinTestMixin, TestCase):
    def sync(self) -> SyncRun:
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertIn(run.status, (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL))
        return run

    def start_and_sync(self) -> list[TransactionSyncState]:
        """Start a session on every idle connector of the online stations, sync,
        and return the open sessions the next tick gives a fresh reading (SteVe
        lists them active and their station is still charging them)."""
        for box in self.standin.state()["chargeBoxes"]:
            for connector in box["connectors"]:
                if box["online"] and not connector["transactionPk"]:
                    self.standin.add_transaction(
                        box["chargeBoxId"], connector["connectorId"], "TAG-0001"
                    )
        self.sync()
        charging = {
            connector["transactionPk"]
            for box in self.standin.state()["chargeBoxes"]
            if box["online"]
            for connector in box["connectors"]
            if connector["transactionPk"]
        }
        rows = list(
            TransactionSyncState.objects.active().filter(
                steve_transaction_id__in=charging
            )
        )
        self.assertGreater(len(rows), 1)
        return rows

    def test_it_creates_each_charger_once(self) -> None:
        self.sync()
        keys = set(
            TransactionSyncState.objects.values_list("charge_box_id", "connector_id")
        )
        self.assertEqual(
            set(Charger.objects.values_list("charge_box_id", "connector_id")), keys
        )
        self.standin.tick(60)

        with CaptureQueriesContext(connection) as queries:
            self.sync()

        self.assertEqual(Charger.objects.count(), len(keys))
        self.assertFalse(
            [sql for sql in charger_writes(queries) if sql.startswith("INSERT")]
        )

    def test_a_new_connector_gets_its_charger(self) -> None:
        row = self.start_and_sync()[0]
        Charger.objects.filter(
            charge_box_id=row.charge_box_id, connector_id=row.connector_id
        ).delete()

        self.standin.tick(60)
        self.sync()

        row.refresh_from_db()
        self.assertIsNotNone(row.charger_id)
        self.assertEqual(
            (row.charger.charge_box_id, row.charger.connector_id),
            (row.charge_box_id, row.connector_id),
        )

    def test_fresh_readings_check_every_charger_in_with_one_update(self) -> None:
        rows = self.start_and_sync()
        Charger.objects.update(last_check_in_at=None)
        self.standin.tick(60)

        with CaptureQueriesContext(connection) as queries:
            self.sync()

        updates = [sql for sql in charger_writes(queries) if sql.startswith("UPDATE")]
        self.assertEqual(len(updates), 1, updates)
        for row in rows:
            row.refresh_from_db()
            assert row.charger is not None
            self.assertEqual(row.charger.last_check_in_at, row.last_reading_at, row)

    def test_a_check_in_only_moves_forward(self) -> None:
        earlier, later = self.start_and_sync()[:2]
        assert earlier.charger_id is not None and later.charger_id is not None
        future = datetime.now(UTC) + timedelta(hours=1)
        Charger.objects.filter(pk=earlier.charger_id).update(last_check_in_at=future)
        Charger.objects.filter(pk=later.charger_id).update(
            last_check_in_at=datetime.now(UTC) - timedelta(hours=3)
        )
        self.standin.tick(60)

        self.sync()

        later.refresh_from_db()
        self.assertEqual(
            Charger.objects.get(pk=earlier.charger_id).last_check_in_at, future
        )
        self.assertEqual(
            Charger.objects.get(pk=later.charger_id).last_check_in_at,
            later.last_reading_at,
        )
