"""seed_scale: COPY-generated history that keeps the sync's invariants."""

from datetime import UTC, datetime
from io import StringIO
from unittest.mock import patch

import psycopg
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import TestCase, TransactionTestCase

from polaris.testing import current_database_url
from sync.locks import DEMO_LOCK, SEED_LOCK
from sync.models import (
    Charger,
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
    UserMapping,
)
from sync.services.seeding import seed_scale
from sync.tests.factories import TransactionSyncStateFactory
from sync.tests.rollup_checks import assert_rollups_exact


class SeedScaleTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.output = StringIO()
        call_command(
            "seed_scale",
            "--transactions=600",
            "--events-per-transaction=6",
            "--customers=40",
            "--chargers=700",
            stdout=cls.output,
        )

    def test_it_writes_the_requested_counts(self) -> None:
        self.assertEqual(TransactionSyncState.objects.count(), 600)
        self.assertEqual(SyncedTransactionEvent.objects.count(), 3600)
        self.assertEqual(Charger.objects.count(), 700)
        self.assertGreater(SyncRun.objects.count(), 365 * 24)
        self.assertIn("Seeded 600 transactions", self.output.getvalue())

    def test_it_keeps_the_energy_invariant(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT count(*) FROM transaction_sync_state AS t
                 WHERE t."kwhDelivered" <> (
                       SELECT SUM(e."kwhDelta") FROM synced_transaction_events AS e
                        WHERE e."transactionId" = t.id)
                """
            )
            self.assertEqual(cursor.fetchone()[0], 0)
        self.assertFalse(
            SyncedTransactionEvent.objects.filter(kwh_delta__lt=0).exists()
        )

    def test_it_leaves_300_sessions_charging(self) -> None:
        self.assertEqual(TransactionSyncState.objects.active().count(), 300)
        self.assertFalse(
            SyncedTransactionEvent.objects.filter(
                transaction__is_finalized=False, event_type="stopped"
            ).exists()
        )

    def test_charging_sessions_are_spread_over_the_fleet_one_per_connector(
        self,
    ) -> None:
        busy = list(
            TransactionSyncState.objects.active()
            .order_by("charger__friendly_name", "charger_id")
            .values_list("charger_id", flat=True)
        )
        self.assertEqual(len(set(busy)), 300)
        # Not the first 300 chargers in a row: a driver's first page of chargers
        # has free ones, as in a real fleet.
        first_page = Charger.objects.order_by("friendly_name", "id")[:50]
        in_use = sum(1 for charger in first_page if charger.pk in set(busy))
        self.assertLess(in_use, 35)
        self.assertGreater(in_use, 0)

    def test_it_maps_about_nine_tags_in_ten(self) -> None:
        used = set(TransactionSyncState.objects.values_list("ocpp_id_tag", flat=True))
        mapped = set(UserMapping.objects.values_list("steve_ocpp_id_tag", flat=True))
        all_tags = used | mapped
        self.assertGreater(len(mapped) / len(all_tags), 0.8)
        self.assertLess(len(mapped) / len(all_tags), 0.97)

    def test_it_fills_every_rollup(self) -> None:
        assert_rollups_exact(self)
        with connection.cursor() as cursor:
            cursor.execute("SELECT SUM(kwh) FROM energy_by_quarter_hour")
            self.assertGreater(cursor.fetchone()[0], 0)


class SmallSeedTests(TestCase):
    def test_a_small_fleet_charges_once_per_connector(self) -> None:
        call_command(
            "seed_scale", "--transactions=400", "--chargers=20", stdout=StringIO()
        )
        busy = list(
            TransactionSyncState.objects.active().values_list("charger_id", flat=True)
        )
        self.assertEqual(len(busy), 20)
        self.assertEqual(len(set(busy)), 20)


class SeedScaleAppendTests(TestCase):
    def test_a_second_seed_adds_to_the_rollups_of_the_first(self) -> None:
        for _ in range(2):
            call_command(
                "seed_scale",
                "--transactions=200",
                "--events-per-transaction=4",
                "--customers=10",
                "--chargers=20",
                stdout=StringIO(),
            )
        self.assertEqual(TransactionSyncState.objects.count(), 400)
        assert_rollups_exact(self)


class SeedScaleRefusalTests(TestCase):
    def test_sizes_that_cannot_make_a_history_are_refused_and_write_nothing(
        self,
    ) -> None:
        refused = {
            "--transactions=0": "a number of transactions from 1 to 50000000, not '0'",
            "--transactions=50000001": "from 1 to 50000000, not '50000001'",
            "--events-per-transaction=1": "a number of events from 2 to 1000",
            "--customers=0": "a number of customers from 1 to 1000000, not '0'",
            "--customers=-5": "a number of customers from 1 to 1000000, not '-5'",
            "--chargers=0": "a number of chargers from 1 to 2000, not '0'",
            "--chargers=999999999": "from 1 to 2000, not '999999999'",
        }
        for argument, message in refused.items():
            with (
                self.subTest(argument=argument),
                self.assertRaisesMessage(CommandError, message),
            ):
                call_command(
                    "seed_scale", "--transactions=20", argument, stdout=StringIO()
                )
        with self.assertRaisesMessage(
            CommandError, "would be 500,000,000 event rows; at most 200,000,000"
        ):
            call_command(
                "seed_scale",
                "--transactions=1000000",
                "--events-per-transaction=500",
                stdout=StringIO(),
            )
        self.assertFalse(TransactionSyncState.objects.exists())
        self.assertFalse(Charger.objects.exists())

    def test_a_database_a_real_sync_wrote_to_is_refused_without_reset(self) -> None:
        TransactionSyncStateFactory(steve_transaction_id=97, charge_box_id="CB-01")
        with self.assertRaisesMessage(
            CommandError,
            "This database holds sessions synced from SteVe (transaction 97 at "
            "CB-01, among others)",
        ):
            call_command("seed_scale", "--transactions=20", stdout=StringIO())
        self.assertEqual(TransactionSyncState.objects.count(), 1)
        self.assertFalse(Charger.objects.filter(charge_box_id__startswith="SCALE-"))
        # Its rehearsal says so too, and with --reset both go ahead.
        with self.assertRaisesMessage(CommandError, "(transaction 97 at CB-01"):
            call_command(
                "seed_scale", "--transactions=20", "--dry-run", stdout=StringIO()
            )
        out = StringIO()
        call_command(
            "seed_scale", "--transactions=20", "--dry-run", "--reset", stdout=out
        )
        self.assertEqual(
            out.getvalue(),
            "Would generate 20 transactions x 10 events after a reset.\n",
        )

    def test_a_seed_while_another_fills_the_database_is_refused(self) -> None:
        with psycopg.connect(current_database_url(), autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [SEED_LOCK])
            with self.assertRaisesMessage(
                CommandError,
                "Another seed_scale is filling this database; wait until it has "
                "finished, then run this one again.",
            ):
                call_command("seed_scale", "--transactions=20", stdout=StringIO())
        self.assertFalse(TransactionSyncState.objects.exists())

    def test_a_running_demo_is_not_taken_for_another_seed(self) -> None:
        # A demo holds its own lock on its database for its whole life.
        with psycopg.connect(current_database_url(), autocommit=True) as demo:
            demo.execute("SELECT pg_advisory_lock(%s)", [DEMO_LOCK])
            call_command("seed_scale", "--transactions=20", stdout=StringIO())
        self.assertEqual(TransactionSyncState.objects.count(), 20)


class SeedScaleResetTests(TransactionTestCase):
    """The path `seed_scale --reset` takes on a real database: slices made by
    worker processes, COPY FREEZE into the truncated tables, indexes and unique
    constraints rebuilt after the load, rollups summed in SQL."""

    def seed(self) -> str:
        seed_scale(
            transactions=600,
            events_per_transaction=5,
            customers=30,
            chargers=40,
            reset=True,
            seed=7,
            now=datetime(2026, 3, 1, 12, tzinfo=UTC),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT md5(string_agg(e::text, ',' ORDER BY e.id))"
                " FROM synced_transaction_events AS e"
            )
            return cursor.fetchone()[0]

    @patch("sync.services.seeding.history.SLICE_TRANSACTIONS", 250)
    def test_it_writes_the_same_rows_for_the_same_seed(self) -> None:
        first = self.seed()
        self.assertEqual(self.seed(), first)
        self.assertEqual(TransactionSyncState.objects.count(), 600)
        self.assertEqual(SyncedTransactionEvent.objects.count(), 3000)
        # One charge per connector of the 40.
        self.assertEqual(TransactionSyncState.objects.active().count(), 40)
        assert_rollups_exact(self)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_constraint"
                " WHERE conname = 'ste_unique_observation'"
            )
            self.assertEqual(cursor.fetchone()[0], 1)
