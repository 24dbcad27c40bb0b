"""The transactions sync against the SteVe stand-in over real HTTP.

The stand-in's default fleet (fleet_size=4, seed=3) carries every awkward case of
CONTRACT.md §11 as a named scenario; `standin.scenario(name)` gives its pks.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.test import TestCase, override_settings

from sessions_app.models import AuditEntry
from sync import services
from sync.client import SteveClient, SteveTransaction
from sync.models import (
    Charger,
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
    UserMapping,
)
from sync.services import runs
from sync.services.imports import user_mapping_import_text
from sync.services.mappings import user_mapping_create
from sync.services.runs.listing import PK_WINDOW
from sync.signals import sessions_changed
from sync.tests.factories import UserFactory, UserMappingFactory
from sync.tests.rollup_checks import assert_rollups_exact
from sync.tests.standin_case import StandinTestMixin


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SyncTestCase(StandinTestMixin, TestCase):
    def sync(self) -> SyncRun:
        return services.sync_run_transactions(trigger="command", client=self.steve)

    def start_charge(self, start_value: int, minutes_ago: int) -> tuple[int, datetime]:
        """After a first sync, a charge on CP-003/1 with TAG-0002 that began
        `minutes_ago` (on a whole second); returns SteVe's pk and the start."""
        self.sync()
        start = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(
            microsecond=0
        )
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_value=start_value, start_timestamp=iso(start)
        )
        return pk, start

    def row(self, pk: int) -> TransactionSyncState:
        return TransactionSyncState.objects.get(steve_transaction_id=pk)

    def assert_synced_as_a_steady_count(
        self, pk: int, *, meter_last_wh: int
    ) -> TransactionSyncState:
        """Sync, then charge `pk` (started at 2,000,000 Wh) reads `meter_last_wh`
        with every Wh since its start counted once, and no meter reset."""
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertEqual(
            (row.meter_last_wh, row.kwh_delivered),
            (meter_last_wh, Decimal(meter_last_wh - 2_000_000) / 1000),
        )
        self.assertFalse(row.meter_reset_seen)
        self.assert_energy_adds_up()
        return row

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (
            list(TransactionSyncState.objects.order_by("id").values()),
            list(SyncedTransactionEvent.objects.order_by("id").values()),
        )

    def assert_energy_adds_up(self) -> None:
        """For every transaction the sum of its events' kwhDelta is its kwhDelivered,
        and no event carries negative energy."""
        rows = TransactionSyncState.objects.annotate(
            events_total=Coalesce(Sum("events__kwh_delta"), Decimal("0"))
        )
        self.assertTrue(rows.exists())
        for row in rows:
            self.assertEqual(row.events_total, row.kwh_delivered, row)
        self.assertFalse(
            SyncedTransactionEvent.objects.filter(kwh_delta__lt=0).exists()
        )


class SyncTransactionsTests(SyncTestCase):
    def test_it_imports_every_transaction_of_the_fleet(self) -> None:
        expected = {t["id"] for t in self.standin.state()["transactions"]}
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(
            set(
                TransactionSyncState.objects.values_list(
                    "steve_transaction_id", flat=True
                )
            ),
            expected,
        )
        self.assertEqual(run.created_count, len(expected))
        self.assertEqual(run.events_count, SyncedTransactionEvent.objects.count())
        self.assert_energy_adds_up()

    def test_it_counts_stopped_energy_as_stop_minus_start(self) -> None:
        # Wh and kWh readings, per-phase rows: none may change a session's total.
        self.sync()
        finished = TransactionSyncState.objects.completed().filter(
            meter_reset_seen=False, is_stop_estimated=False
        )
        self.assertTrue(finished.exists())
        for steve_row in self.steve.list_transactions(type="STOPPED"):
            row = finished.filter(steve_transaction_id=steve_row.id).first()
            if row is None:
                continue
            expected = (
                Decimal(steve_row.stop_value_wh - steve_row.start_value_wh) / 1000
            )
            self.assertEqual(row.kwh_delivered, expected, steve_row.id)

    def test_kwh_and_per_phase_readings_count_once(self) -> None:
        self.sync()
        for scenario in ("kwh_readings", "per_phase"):
            (pk,) = self.standin.scenario(scenario)
            row = self.row(pk)
            detail = self.steve.transaction_details(pk)
            raw_units = {r.unit for r in detail.readings}
            phases = {r.phase for r in detail.readings}
            if scenario == "kwh_readings":
                self.assertIn("kWh", raw_units)
            else:
                self.assertTrue(phases - {None})
            assert detail.transaction.stop_value_wh is not None
            self.assertEqual(
                row.kwh_delivered,
                Decimal(
                    detail.transaction.stop_value_wh - detail.transaction.start_value_wh
                )
                / 1000,
            )
            self.assertGreater(row.events.filter(event_type="progress").count(), 1)

    def test_asking_for_no_pks_finds_nothing(self) -> None:
        # SteVe reads an empty transactionPk as absent: it would answer them all.
        self.assertTrue(self.steve.list_transactions())
        self.assertEqual(self.steve.list_transactions(transaction_pks=[]), [])

    def test_values_no_meter_could_read_are_left_out(self) -> None:
        # SteVe stores a sampled value as the station sent it; one such reading
        # must not stop every run from then on.
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=10)
        self.standin.add_meter_values(
            pk,
            [
                {"value": value, "valueTimestamp": iso(start + timedelta(minutes=n))}
                for n, value in enumerate(
                    ["2001000", "1e40", "NaN", "-1e30", "2002500"], start=1
                )
            ],
        )
        self.assert_synced_as_a_steady_count(pk, meter_last_wh=2_002_500)

    def test_a_reading_stamped_ahead_of_our_clock_waits_for_its_time(self) -> None:
        # One sample from a station whose clock jumped a day ahead: counted now,
        # it would hold back every reading stamped before it, and look like a
        # meter reset, as it reads less than the one sent after it.
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=30)
        ahead = start + timedelta(days=1)
        self.standin.add_meter_values(
            pk,
            [
                {
                    "value": "2002000",
                    "valueTimestamp": iso(start + timedelta(minutes=5)),
                },
                {"value": "2005000", "valueTimestamp": iso(ahead)},
                {
                    "value": "2008000",
                    "valueTimestamp": iso(start + timedelta(minutes=20)),
                },
            ],
        )
        row = self.assert_synced_as_a_steady_count(pk, meter_last_wh=2_008_000)
        self.assertEqual(row.last_reading_at, start + timedelta(minutes=20))
        charger = Charger.objects.get(charge_box_id="CP-003", connector_id=1)
        assert charger.last_check_in_at is not None
        self.assertLess(charger.last_check_in_at, ahead)
        self.standin.add_meter_values(
            pk,
            [
                {
                    "value": "2012000",
                    "valueTimestamp": iso(start + timedelta(minutes=25)),
                }
            ],
        )
        self.assert_synced_as_a_steady_count(pk, meter_last_wh=2_012_000)
        # Its time come, it is read as any other: a reading below the count.
        with time_machine.travel(ahead + timedelta(minutes=1)):
            self.sync()
        row = self.row(pk)
        self.assertTrue(row.meter_reset_seen)
        self.assertEqual(row.kwh_delivered, Decimal("12.000"))

    def test_a_station_whose_clock_runs_ahead_all_along_counts_as_it_goes(
        self,
    ) -> None:
        # Its readings are as far ahead as its start was when first stored.
        self.sync()
        ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_value=2_000_000, start_timestamp=iso(ahead)
        )
        self.standin.add_meter_values(
            pk,
            [{"value": "2001500", "valueTimestamp": iso(ahead + timedelta(minutes=1))}],
        )
        row = self.assert_synced_as_a_steady_count(pk, meter_last_wh=2_001_500)
        self.assertFalse(row.is_suspected_stuck)
        charger = Charger.objects.get(charge_box_id="CP-003", connector_id=1)
        assert charger.last_check_in_at is not None
        self.assertLessEqual(charger.last_check_in_at, datetime.now(UTC))
        # Silent for longer than SYNC_STUCK_AFTER_HOURS by our clock: stuck,
        # however far ahead its last reading was stamped.
        later = timedelta(hours=settings.SYNC_STUCK_AFTER_HOURS, minutes=2)
        with time_machine.travel(later):
            self.sync()
        self.assertTrue(self.row(pk).is_suspected_stuck)

    def test_a_spike_no_charger_could_deliver_is_not_billed(self) -> None:
        pk, start = self.start_charge(start_value=200_000, minutes_ago=40)
        self.standin.add_meter_values(
            pk,
            [
                {"value": value, "valueTimestamp": iso(start + timedelta(minutes=n))}
                for n, value in ((10, "201000"), (15, "2000000000"), (20, "202000"))
            ],
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertEqual((row.kwh_delivered, row.meter_last_wh), (2, 202_000))
        self.assertTrue(row.meter_reset_seen)
        self.assert_energy_adds_up()

    def test_a_register_no_charger_could_reach_is_left_out(self) -> None:
        # 0xFFFFFFFF kWh from a glitching meter: beyond what the kWh columns hold,
        # it would fail every run from then on.
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=10)
        values = ["2001.0", "4294967295", "2002.5"]
        self.standin.add_meter_values(
            pk,
            [
                {
                    "value": value,
                    "unit": "kWh",
                    "valueTimestamp": iso(start + timedelta(minutes=n)),
                }
                for n, value in enumerate(values, start=1)
            ],
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(self.row(pk).kwh_delivered, Decimal("2.500"))
        self.assert_energy_adds_up()

    def test_a_stop_value_no_meter_could_read_closes_where_the_readings_stood(
        self,
    ) -> None:
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=10)
        at = iso(start + timedelta(minutes=1))
        self.standin.add_meter_values(pk, [{"value": "2001500", "valueTimestamp": at}])
        self.standin.station_stop(pk, 99999999999999999999)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertEqual(
            (row.is_finalized, row.meter_last_wh, row.kwh_delivered),
            (True, 2_001_500, Decimal("1.500")),
        )
        self.assert_energy_adds_up()
        again = self.sync()
        self.assertEqual((again.updated_count, again.events_count), (0, 0))

    def test_the_outlet_register_counts_when_a_station_meters_two_places(
        self,
    ) -> None:
        # The EV's own register, a little behind the outlet's, interleaved with
        # it would look like a meter going back and forth.
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=10)
        values = []
        for n, (outlet, ev) in enumerate(
            [(2001000, 2000900), (2002000, 2001800), (2003000, 2002700)], start=1
        ):
            at = start + timedelta(minutes=n)
            values.append({"value": str(outlet), "valueTimestamp": iso(at)})
            values.append(
                {
                    "value": str(ev),
                    "valueTimestamp": iso(at + timedelta(seconds=1)),
                    "location": "EV",
                }
            )
        self.standin.add_meter_values(pk, values)
        self.sync()
        row = self.row(pk)
        self.assertEqual(row.kwh_delivered, Decimal("3.000"))
        self.assertFalse(row.meter_reset_seen)
        self.assertFalse(row.events.filter(event_type="corrected").exists())

    def test_phase_readings_sent_before_the_total_are_not_the_total(self) -> None:
        # SteVe leaves the order of same-second rows undefined, and a station may
        # date its per-phase rows apart from the total: read as the register,
        # each phase's share would look like the meter dropping to a third.
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=10)
        values = []
        for n, total in enumerate([2_001_200, 2_002_400], start=1):
            total_at = start + timedelta(minutes=n)
            # The first phases in the total's second, the next one second before.
            phases_at = total_at - timedelta(seconds=n - 1)
            values += [
                {
                    "value": str(total // 3),
                    "phase": phase,
                    "valueTimestamp": iso(phases_at),
                }
                for phase in ("L1", "L2", "L3")
            ]
            values.append({"value": str(total), "valueTimestamp": iso(total_at)})
        self.standin.add_meter_values(pk, values)
        detail = self.steve.transaction_details(pk)
        # SteVe hands the phases over first, which is what this test is about.
        self.assertEqual(detail.readings[0].phase, "L1")
        row = self.assert_synced_as_a_steady_count(pk, meter_last_wh=2_002_400)
        self.assertFalse(row.events.filter(event_type="corrected").exists())

    def test_a_flat_register_is_no_news(self) -> None:
        # A car that is full keeps the register still: the session's last update
        # and last reading say when energy last flowed, not when a station last
        # repeated itself.
        pk, start = self.start_charge(start_value=2_000_000, minutes_ago=10)
        reading = {
            "value": "2001500",
            "valueTimestamp": iso(start + timedelta(minutes=1)),
        }
        self.standin.add_meter_values(pk, [reading])
        self.sync()
        before = self.row(pk)
        self.assertEqual(before.meter_last_wh, 2_001_500)
        events_before = before.events.count()
        self.standin.add_meter_values(
            pk, [{**reading, "valueTimestamp": iso(start + timedelta(minutes=2))}]
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        after = self.row(pk)
        self.assertEqual(
            (after.updated_at, after.last_reading_at, after.events.count()),
            (before.updated_at, before.last_reading_at, events_before),
        )
        self.assertEqual(run.updated_count, 0)

    def test_a_second_run_with_nothing_new_changes_nothing(self) -> None:
        self.sync()
        before = self.snapshot()
        again = self.sync()
        self.assertEqual(again.status, SyncRun.Status.SUCCEEDED)
        self.assertEqual(
            (again.created_count, again.updated_count, again.events_count), (0, 0, 0)
        )
        self.assertEqual(self.snapshot(), before)

    def test_new_meter_values_become_progress_events(self) -> None:
        self.sync()
        active = (
            TransactionSyncState.objects.active()
            .filter(is_suspected_stuck=False)
            .first()
        )
        assert active is not None
        now = datetime.now(UTC)
        self.standin.add_meter_values(
            active.steve_transaction_id,
            [
                {"value": str(active.meter_last_wh + 1500), "unit": "Wh",
                 "valueTimestamp": iso(now + timedelta(seconds=1))},
                {"value": str((active.meter_last_wh + 2250) / 1000), "unit": "kWh",
                 "valueTimestamp": iso(now + timedelta(seconds=2))},
            ],
        )  # fmt: skip
        run = self.sync()
        self.assertEqual((run.updated_count, run.events_count), (1, 2))
        active.refresh_from_db()
        self.assertEqual(active.kwh_delivered - Decimal(0), active.kwh_delivered)
        self.assertEqual(
            list(active.events.order_by("-id").values_list("kwh_delta", flat=True)[:2]),
            [Decimal("0.750"), Decimal("1.500")],
        )
        self.assert_energy_adds_up()

    def test_a_meter_reset_is_a_correction_never_negative_energy(self) -> None:
        self.sync()
        (pk,) = self.standin.scenario("meter_reset")
        row = self.row(pk)
        self.assertTrue(row.meter_reset_seen)
        self.assertTrue(row.events.filter(event_type="corrected").exists())
        self.assertGreater(row.kwh_delivered, 0)
        self.assert_energy_adds_up()

    def test_a_manual_stop_is_estimated_then_replaced_by_the_station_stop(self) -> None:
        self.sync()
        (pk,) = self.standin.scenario("manual_stop_replaced")
        row = self.row(pk)
        self.assertEqual(
            (row.stop_event_actor, row.is_stop_estimated), ("manual", True)
        )
        self.assertTrue(row.is_finalized)
        replaced = self.standin.station_stop(
            pk, row.meter_last_wh + 4000, stop_reason="EVDisconnected"
        )
        self.assertTrue(replaced["accepted"], replaced)
        run = self.sync()
        self.assertEqual(run.updated_count, 1)
        row.refresh_from_db()
        self.assertEqual(row.stop_event_actor, "station")
        self.assertEqual(row.stop_reason, "EVDisconnected")
        self.assertFalse(row.is_stop_estimated)
        self.assertEqual(
            row.kwh_delivered, Decimal(row.meter_last_wh - row.meter_start_wh) / 1000
        )
        self.assertEqual(row.events.filter(event_type="corrected").count(), 1)
        self.assert_energy_adds_up()

    def test_a_manual_stop_dated_days_ago_is_still_replaced(self) -> None:
        # A stuck session stopped by hand today: SteVe dates the manual stop at its
        # last reading, days ago. The station's own stop, uploaded later, must
        # still reach Polaris: the grace period runs from when the sync saw the stop.
        self.sync()
        start = datetime.now(UTC) - timedelta(days=4)
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_value=1_000_000, start_timestamp=iso(start)
        )
        self.standin.add_meter_values(
            pk,
            [{"value": "1005000", "valueTimestamp": iso(start + timedelta(hours=1))}],
        )
        self.sync()
        self.steve.stop_transaction(pk)
        self.sync()
        row = self.row(pk)
        self.assertEqual(
            (row.stop_event_actor, row.kwh_delivered), ("manual", Decimal("5.000"))
        )
        self.assertFalse(row.is_settled(datetime.now(UTC)))
        replaced = self.standin.station_stop(
            pk, 1_020_000, stop_timestamp=iso(start + timedelta(hours=2))
        )
        self.assertTrue(replaced["accepted"], replaced)
        run = self.sync()
        self.assertEqual(run.updated_count, 1)
        row.refresh_from_db()
        self.assertEqual(
            (row.stop_event_actor, row.kwh_delivered), ("station", Decimal("20.000"))
        )
        self.assertTrue(row.is_settled(datetime.now(UTC)))
        self.assert_energy_adds_up()

    def test_a_station_charging_on_after_a_manual_stop_keeps_its_connector_busy(
        self,
    ) -> None:
        # SteVe was told the session stopped; the station goes on charging, and
        # its readings keep coming. They add no energy until its own stop replaces
        # the manual one, but its connector is not free: a Start there is refused.
        pk, start = self.start_charge(start_value=1_000_000, minutes_ago=30)
        self.standin.add_meter_values(
            pk,
            [
                {
                    "value": "1005000",
                    "valueTimestamp": iso(start + timedelta(minutes=10)),
                }
            ],
        )
        self.sync()
        self.steve.stop_transaction(pk)
        self.sync()
        row = self.row(pk)
        charger = Charger.objects.get(charge_box_id="CP-003", connector_id=1)
        now = datetime.now(UTC)
        self.assertEqual(
            (row.stop_event_actor, row.last_reading_after_stop_at), ("manual", None)
        )
        self.assertFalse(self.occupied(charger, now))

        later = (datetime.now(UTC) - timedelta(seconds=5)).replace(microsecond=0)
        self.standin.add_meter_values(
            pk, [{"value": "1009000", "valueTimestamp": iso(later)}]
        )
        run = self.sync()
        self.assertEqual((run.updated_count, run.events_count), (1, 0))
        row.refresh_from_db()
        self.assertEqual(row.last_reading_after_stop_at, later)
        self.assertEqual(row.kwh_delivered, Decimal("5.000"))
        self.assertTrue(self.occupied(charger, datetime.now(UTC)))
        # Nothing new: the next run changes nothing.
        self.assertEqual(self.sync().updated_count, 0)

        replaced = self.standin.station_stop(pk, 1_010_000, stop_timestamp=iso(now))
        self.assertTrue(replaced["accepted"], replaced)
        self.sync()
        row.refresh_from_db()
        self.assertEqual(
            (row.stop_event_actor, row.last_reading_after_stop_at), ("station", None)
        )
        self.assertEqual(row.kwh_delivered, Decimal("10.000"))
        self.assertFalse(self.occupied(charger, datetime.now(UTC)))
        self.assert_energy_adds_up()

    def test_a_manual_stop_quiet_for_an_hour_is_not_read_every_run(self) -> None:
        # Its station sent nothing after the stop within the check-in window: the
        # runs stop fetching its meter values (they would for 48 hours), until
        # SteVe's stop data changes under it.
        self.sync()
        start = datetime.now(UTC) - timedelta(hours=3)
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_value=1_000_000, start_timestamp=iso(start)
        )
        self.sync()
        self.steve.stop_transaction(pk)
        self.sync()
        details = f"/steve/api/v1/transactions/{pk}"
        self.assertEqual(self.row(pk).stop_event_actor, "manual")
        read_before = self.standin.state()["requests"].get(details, 0)
        self.sync()
        self.assertEqual(self.standin.state()["requests"][details], read_before + 1)

        TransactionSyncState.objects.filter(steve_transaction_id=pk).update(
            updated_at=datetime.now(UTC) - timedelta(hours=2)
        )
        self.sync()
        self.assertEqual(self.standin.state()["requests"][details], read_before + 1)
        replaced = self.standin.station_stop(pk, 1_002_000)
        self.assertTrue(replaced["accepted"], replaced)
        self.sync()
        self.assertEqual(self.standin.state()["requests"][details], read_before + 2)
        self.assertEqual(self.row(pk).stop_event_actor, "station")

    @staticmethod
    def occupied(charger: Charger, now: datetime) -> bool:
        return (
            TransactionSyncState.objects.occupying_connector(now)
            .filter(charger=charger)
            .exists()
        )

    def start_with_a_meter_reset(self, start: datetime) -> int:
        """A session on CP-003/1 from 1000 Wh to 4000, reset to 10, then up to 900."""
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_value=1000, start_timestamp=iso(start)
        )
        self.standin.add_meter_values(
            pk,
            [
                {"value": str(wh), "valueTimestamp": iso(start + timedelta(minutes=n))}
                for n, wh in enumerate([3000, 4000, 10, 500, 900], start=1)
            ],
        )
        return pk

    def test_a_manual_stop_after_a_meter_reset_adds_no_energy(self) -> None:
        # SteVe's manual stop takes the last reading of the first rising streak: a
        # reading from before the reset, older than the ones already counted.
        self.sync()
        start = datetime.now(UTC) - timedelta(minutes=30)
        pk = self.start_with_a_meter_reset(start)
        self.sync()
        row = self.row(pk)
        # 1000 -> 4000, then the reset to 10 -> 900.
        self.assertEqual(row.kwh_delivered, Decimal("3.890"))
        self.steve.stop_transaction(pk)
        (stopped,) = self.steve.list_transactions(transaction_pks=[pk])
        self.assertEqual(
            (stopped.stop_event_actor, stopped.stop_value_wh), ("manual", 4000)
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row.refresh_from_db()
        self.assertTrue(row.is_finalized)
        self.assertTrue(row.is_stop_estimated)
        self.assertEqual(row.kwh_delivered, Decimal("3.890"))
        self.assert_energy_adds_up()
        assert_rollups_exact(self)
        again = self.sync()
        self.assertEqual((again.updated_count, again.events_count), (0, 0))

    def test_a_manual_stop_counts_readings_skipped_behind_a_clock_jump(
        self,
    ) -> None:
        # The station's clock ran an hour ahead, then was set right: the readings
        # after that are older than the last one counted. SteVe's manual stop takes
        # the last of them, energy Polaris has not counted yet.
        pk, start = self.start_charge(start_value=1000, minutes_ago=30)
        ahead = start + timedelta(hours=1)
        self.standin.add_meter_values(
            pk, [{"value": "2000", "valueTimestamp": iso(ahead)}]
        )
        self.sync()
        self.standin.add_meter_values(
            pk,
            [
                {"value": str(wh), "valueTimestamp": iso(start + timedelta(minutes=n))}
                for n, wh in enumerate([4000, 5000, 6000], start=1)
            ],
        )
        self.sync()
        self.steve.stop_transaction(pk)
        (stopped,) = self.steve.list_transactions(transaction_pks=[pk])
        self.assertEqual(stopped.stop_value_wh, 6000)
        self.sync()
        row = self.row(pk)
        self.assertEqual(row.kwh_delivered, Decimal("5.000"))
        self.assert_energy_adds_up()

    def test_a_station_stop_replacing_a_manual_stop_below_it_is_saved(
        self,
    ) -> None:
        # The station's stop (and its Transaction.End reading) is below the manual
        # stop's pre-reset value: one correction, not a duplicate that fails every
        # run from then on.
        self.sync()
        start = datetime.now(UTC) - timedelta(minutes=30)
        pk = self.start_with_a_meter_reset(start)
        self.sync()
        self.steve.stop_transaction(pk)
        self.sync()
        stop_at = iso(start + timedelta(minutes=9))
        self.standin.add_meter_values(
            pk,
            [
                {
                    "value": "1200",
                    "valueTimestamp": stop_at,
                    "readingContext": "Transaction.End",
                }
            ],
        )
        replaced = self.standin.station_stop(pk, 1200, stop_timestamp=stop_at)
        self.assertTrue(replaced["accepted"], replaced)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertEqual((row.stop_event_actor, row.meter_last_wh), ("station", 1200))
        self.assertTrue(row.meter_reset_seen)
        self.assertEqual(row.events.filter(event_type="corrected").count(), 2)
        self.assertGreaterEqual(row.kwh_delivered, Decimal("3.890"))
        self.assert_energy_adds_up()
        assert_rollups_exact(self)
        again = self.sync()
        self.assertEqual(again.status, SyncRun.Status.SUCCEEDED, again.error)
        self.assertEqual((again.updated_count, again.events_count), (0, 0))

    def test_a_station_stop_repeating_a_drop_stored_runs_before_is_saved(
        self,
    ) -> None:
        # The drop to 3,000 Wh is stored as a correction; a manual stop follows,
        # then the station's own stop at that very reading. The same observation
        # is stored once, not a duplicate that fails every run from then on.
        pk, start = self.start_charge(start_value=1000, minutes_ago=30)
        drop_at = start + timedelta(minutes=2)
        self.standin.add_meter_values(
            pk,
            [
                {"value": "5000", "valueTimestamp": iso(start + timedelta(minutes=1))},
                {"value": "3000", "valueTimestamp": iso(drop_at)},
            ],
        )
        self.sync()
        self.steve.stop_transaction(pk)
        self.sync()
        replaced = self.standin.station_stop(pk, 3000, stop_timestamp=iso(drop_at))
        self.assertTrue(replaced["accepted"], replaced)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertEqual(
            (row.stop_event_actor, row.stopped_at, row.kwh_delivered),
            ("station", drop_at, Decimal("4.000")),
        )
        self.assertEqual(
            row.events.filter(
                event_type="corrected", reading_at=row.stopped_at, meter_wh=3000
            ).count(),
            1,
        )
        self.assert_energy_adds_up()
        assert_rollups_exact(self)
        again = self.sync()
        self.assertEqual(again.status, SyncRun.Status.SUCCEEDED, again.error)
        self.assertEqual((again.updated_count, again.events_count), (0, 0))

    def test_an_id_steve_gives_anew_to_another_charge_is_not_merged(self) -> None:
        # SteVe restored from an older backup numbers new charges from ids
        # Polaris already holds: here the stored one ran on CP-OLD a day ago.
        pk, _ = self.start_charge(start_value=2_000_000, minutes_ago=30)
        self.sync()
        started_earlier = self.row(pk).started_at - timedelta(days=1)
        TransactionSyncState.objects.filter(steve_transaction_id=pk).update(
            charge_box_id="CP-OLD", started_at=started_earlier
        )
        stored = TransactionSyncState.objects.filter(steve_transaction_id=pk)
        events = SyncedTransactionEvent.objects.filter(transaction__in=stored)
        before = (list(stored.values()), list(events.values()))
        self.standin.add_meter_values(
            pk, [{"value": "2004000", "valueTimestamp": iso(datetime.now(UTC))}]
        )
        for _ in range(2):  # every run says so, until someone acts
            run = self.sync()
            self.assertEqual(run.status, SyncRun.Status.PARTIAL, run.error)
            self.assertIn(
                f"Transaction {pk}: SteVe now gives this id to another charge",
                run.error,
            )
            self.assertEqual((list(stored.values()), list(events.values())), before)

    def test_a_stop_below_the_start_leaves_the_session_active(self) -> None:
        self.sync()
        (pk,) = self.standin.scenario("negative_stop_left_active")
        row = self.row(pk)
        self.assertFalse(row.is_finalized)
        self.assertIsNone(row.stopped_at)
        self.assertGreaterEqual(row.kwh_delivered, 0)

    def test_a_zombie_followed_by_a_newer_transaction_is_flagged_stuck(self) -> None:
        self.sync()
        zombie, newer = self.standin.scenario("zombie")
        self.assertTrue(self.row(zombie).is_suspected_stuck)
        self.assertFalse(self.row(zombie).is_finalized)
        self.assertFalse(self.row(newer).is_suspected_stuck)
        # The station stops it after all: closed, it is no longer suspected.
        self.assertTrue(self.standin.station_stop(zombie)["accepted"])
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(zombie)
        self.assertEqual((row.is_finalized, row.is_suspected_stuck), (True, False))
        again = self.sync()
        self.assertEqual((again.updated_count, again.events_count), (0, 0))

    def test_a_start_stamped_ahead_is_suspected_stuck_not_the_charges_after_it(
        self,
    ) -> None:
        # A station whose clock ran two days ahead left a charge SteVe keeps open
        # (it refuses a stop stamped before the start): the charge after it on
        # that connector is the newer one, whatever the stamps say.
        self.sync()
        ahead = datetime.now(UTC) + timedelta(days=2)
        zombie = self.standin.add_transaction(
            "CP-004", 2, "TAG-0002", start_value=1000, start_timestamp=iso(ahead)
        )
        self.sync()
        self.assertFalse(self.row(zombie).is_suspected_stuck)
        # With no reading since, it is as old as the sync's first sight of it.
        later = timedelta(hours=settings.SYNC_STUCK_AFTER_HOURS, minutes=1)
        with time_machine.travel(later):
            self.sync()
        self.assertTrue(self.row(zombie).is_suspected_stuck)
        charge = self.standin.add_transaction(
            "CP-004", 2, "TAG-0003", start_timestamp=iso(datetime.now(UTC) + later)
        )
        with time_machine.travel(later):
            self.sync()
        self.assertTrue(self.row(zombie).is_suspected_stuck)
        self.assertFalse(self.row(charge).is_suspected_stuck)

    def test_a_session_silent_for_hours_is_flagged_stuck_until_it_reads_again(
        self,
    ) -> None:
        self.sync()
        start = datetime.now(UTC) - timedelta(hours=13)
        # The fleet's last session on CP-004/2 started more than a day ago.
        pk = self.standin.add_transaction(
            "CP-004", 2, "TAG-0002", start_value=1000, start_timestamp=iso(start)
        )
        self.sync()
        self.assertTrue(self.row(pk).is_suspected_stuck)
        self.standin.add_meter_values(
            pk, [{"value": "2500", "valueTimestamp": iso(datetime.now(UTC))}]
        )
        self.sync()
        row = self.row(pk)
        self.assertFalse(row.is_suspected_stuck)
        self.assertTrue(TransactionSyncState.objects.charging().filter(pk=row.pk))
        again = self.sync()
        self.assertEqual((again.updated_count, again.events_count), (0, 0))
        self.assertEqual(self.row(pk).updated_at, row.updated_at)
        assert_rollups_exact(self)

    def test_a_session_the_sync_comes_to_suspect_stuck_is_an_update_pages_hear_of(
        self,
    ) -> None:
        self.sync()
        start = datetime.now(UTC) - timedelta(hours=11)
        pk = self.standin.add_transaction(
            "CP-004", 2, "TAG-0002", start_value=1000, start_timestamp=iso(start)
        )
        self.sync()
        self.assertFalse(self.row(pk).is_suspected_stuck)
        announced: list[int] = []

        def hear(**kwargs: Any) -> None:
            announced.extend(kwargs["transaction_ids"])

        sessions_changed.connect(hear)
        try:
            # Two hours on, with nothing new from the station.
            with time_machine.travel(timedelta(hours=2)):
                run = self.sync()
        finally:
            sessions_changed.disconnect(hear)
        row = self.row(pk)
        self.assertTrue(row.is_suspected_stuck)
        self.assertIn(row.pk, announced)
        self.assertEqual(run.updated_count, len(set(announced)))

    def test_a_full_car_left_plugged_in_is_not_taken_for_stuck(self) -> None:
        self.sync()
        start = (datetime.now(UTC) - timedelta(hours=15)).replace(microsecond=0)
        pk = self.standin.add_transaction(
            "CP-004", 2, "TAG-0002", start_value=1000, start_timestamp=iso(start)
        )
        # 20 kWh in two hours, then full: the station reports every quarter hour
        # on, its register flat, until a minute ago.
        full_at = start + timedelta(hours=2)
        flat_until = datetime.now(UTC) - timedelta(minutes=1)
        readings = [full_at + timedelta(minutes=15 * n) for n in range(60)]
        self.standin.add_meter_values(
            pk,
            [
                {"value": "21000", "valueTimestamp": iso(at)}
                for at in readings
                if at < flat_until
            ],
        )
        self.sync()
        row = self.row(pk)
        self.assertFalse(row.is_suspected_stuck)
        self.assertTrue(TransactionSyncState.objects.charging().filter(pk=row.pk))
        self.assertEqual(row.kwh_delivered, Decimal("20.000"))
        assert row.last_reading_at is not None
        self.assertGreater(row.last_reading_at, flat_until - timedelta(minutes=45))
        self.assert_energy_adds_up()

    def test_an_unknown_tag_is_synced_with_its_tag(self) -> None:
        self.sync()
        (pk,) = self.standin.scenario("unknown_tag")
        row = self.row(pk)
        self.assertEqual(row.stop_reason, "DeAuthorized")
        steve_row = self.steve.list_transactions(transaction_pks=[pk])[0]
        self.assertEqual(row.ocpp_id_tag, steve_row.ocpp_id_tag)
        self.assertIsNone(steve_row.user_id)

    def test_any_idtag_and_stop_reason_a_station_sends_are_stored(self) -> None:
        """A station may send what PostgreSQL refuses as text (a NUL byte) and a
        stop reason as long as SteVe's column: the session is still stored and
        closed, the NUL read as U+FFFD."""
        self.sync()
        pk = self.standin.add_transaction("CP-003", 1, "NUL\x00TAG")
        reason = "R" * 255
        self.assertTrue(self.standin.station_stop(pk, stop_reason=reason)["accepted"])
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertEqual(row.ocpp_id_tag, "NUL\ufffdTAG")
        self.assertEqual(row.stop_reason, reason)
        self.assertTrue(row.is_finalized)

    def test_a_late_offline_upload_with_an_old_start_is_found_by_pk(self) -> None:
        self.sync()
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        pk = self.standin.add_transaction(
            "CP-004", 2, "TAG-0002", start_timestamp=iso(two_days_ago)
        )
        self.standin.station_stop(
            pk, stop_timestamp=iso(two_days_ago + timedelta(hours=1))
        )
        run = self.sync()
        self.assertEqual(run.created_count, 1)
        row = self.row(pk)
        self.assertEqual(
            row.started_at, two_days_ago.replace(microsecond=row.started_at.microsecond)
        )
        self.assertTrue(row.is_finalized)
        (late,) = self.standin.scenario("late_offline_start")
        self.assertTrue(
            TransactionSyncState.objects.filter(steve_transaction_id=late).exists()
        )

    def add_late_upload_and_a_newer_transaction(self) -> tuple[int, int]:
        """A late offline upload (stopped, started days ago) and, above its pk, a
        transaction that started and stopped just now; neither synced yet."""
        five_days_ago = datetime.now(UTC) - timedelta(days=5)
        late = self.standin.add_transaction(
            "CP-004", 2, "TAG-0002", start_timestamp=iso(five_days_ago)
        )
        self.standin.station_stop(
            late, stop_timestamp=iso(five_days_ago + timedelta(hours=1))
        )
        newer = self.standin.add_transaction("CP-003", 1, "TAG-0001")
        self.standin.tick(60)
        self.standin.station_stop(newer)
        return late, newer

    def test_a_backfill_does_not_hide_a_late_upload_below_its_newest_pk(
        self,
    ) -> None:
        self.sync()
        late, newer = self.add_late_upload_and_a_newer_transaction()
        run = services.sync_run_backfill(
            since=date.today() - timedelta(days=1), trigger="command", client=self.steve
        )
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.sync()
        self.assertTrue(self.row(newer).is_finalized)
        self.assertTrue(self.row(late).is_finalized)
        self.assert_energy_adds_up()

    def test_a_resync_of_a_new_transaction_does_not_hide_older_new_ones(
        self,
    ) -> None:
        self.sync()
        late, newer = self.add_late_upload_and_a_newer_transaction()
        run = services.sync_run_transaction(
            steve_transaction_id=newer, trigger="manual", client=self.steve
        )
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.sync()
        self.assertTrue(self.row(newer).is_finalized)
        self.assertTrue(self.row(late).is_finalized)
        self.assert_energy_adds_up()

    def delete_more_than_a_window_of_pks(self) -> None:
        """Transactions gone from SteVe before any run saw them: a run of pks
        with nothing in it, longer than the pk search's window."""
        for _ in range(PK_WINDOW + 1):
            self.standin.delete_transaction(
                self.standin.add_transaction("CP-004", 2, "TAG-0002")
            )

    def test_more_than_a_window_of_deleted_pks_does_not_hide_newer_ones(
        self,
    ) -> None:
        self.sync()
        self.delete_more_than_a_window_of_pks()
        newer = self.standin.add_transaction("CP-003", 1, "TAG-0001")
        self.standin.tick(60)
        self.standin.station_stop(newer)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(run.created_count, 1)
        self.assertTrue(self.row(newer).is_finalized)
        self.assert_energy_adds_up()

    def test_a_late_upload_above_more_than_a_window_of_deleted_pks_is_found(
        self,
    ) -> None:
        self.sync()
        self.delete_more_than_a_window_of_pks()
        # Above the gap: a late upload, found by pk alone, then a charge begun
        # now, which the run lists by start time and which says the pks go on.
        late, newer = self.add_late_upload_and_a_newer_transaction()
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(run.created_count, 2)
        self.assertTrue(self.row(late).is_finalized)
        self.assertTrue(self.row(newer).is_finalized)

    def test_a_transaction_that_vanished_from_steve_is_kept_and_flagged(self) -> None:
        pk = self.standin.add_transaction("CP-004", 2, "TAG-0002")
        self.sync()
        self.standin.delete_transaction(pk)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED)
        row = self.row(pk)
        self.assertTrue(row.is_deleted_in_steve)
        self.assertTrue(row.is_finalized)
        self.assertTrue(row.is_stop_estimated)
        self.assert_energy_adds_up()

    def test_the_command_says_how_far_a_long_backfill_got(self) -> None:
        # A year of a real fleet takes minutes; a few dozen transactions stand in
        # for it here, with progress every 10 instead of every 1,000.
        out = StringIO()
        with (
            mock.patch.object(runs, "PROGRESS_EVERY", 10),
            mock.patch.object(runs, "WRITE_BATCH", 10),
            override_settings(**self.standin.polaris_settings()),
        ):
            call_command(
                "sync", "backfill", "--since", "2000-01-01", stdout=out, stderr=out
            )
        listed = len(self.standin.state()["transactions"])
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], "Syncing backfill from SteVe…")
        self.assertEqual(
            lines[1],
            f"  {listed} transactions listed; reading their meter values and saving "
            "them 10 at a time…",
        )
        self.assertEqual(lines[2], f"  Transactions read and saved: 10 of {listed}…")
        self.assertIn(f"  Transactions read and saved: {listed} of {listed}…", lines)
        self.assertTrue(lines[-1].startswith("Run #"), lines)

    def test_a_backfill_takes_starts_a_station_clock_dated_ahead(self) -> None:
        ahead = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_value=1000, start_timestamp=iso(ahead)
        )
        run = services.sync_run_backfill(
            since=date.today() - timedelta(days=1), trigger="command", client=self.steve
        )
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(self.row(pk).started_at, ahead)

    def test_a_backfill_flags_stopped_transactions_steve_deleted(self) -> None:
        self.sync()
        (pk,) = self.standin.scenario("deleted")
        kwh_before = self.row(pk).kwh_delivered
        self.standin.delete_transaction(pk)
        run = services.sync_run_backfill(
            since=date.today() - timedelta(days=30),
            trigger="command",
            client=self.steve,
        )
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        row = self.row(pk)
        self.assertTrue(row.is_deleted_in_steve)
        self.assertEqual(row.kwh_delivered, kwh_before)

    def test_a_backfill_asks_steve_from_midnight_of_polaris_time_zone_in_utc(
        self,
    ) -> None:
        # SteVe reads every timestamp as UTC: Berlin's midnight of 1 January is
        # 23:00 the day before, and a charge begun at 23:30 UTC is in the period.
        begun = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
        pk = self.standin.add_transaction(
            "CP-003", 1, "TAG-0002", start_timestamp=iso(begun)
        )
        self.standin.station_stop(pk, stop_timestamp=iso(begun + timedelta(hours=1)))
        with override_settings(
            TIME_ZONE="Europe/Berlin", **self.standin.polaris_settings()
        ):
            call_command("sync", "backfill", "--since", "2026-01-01", stdout=StringIO())
        period_starts = [
            query["from"]
            for target in self.standin.state()["apiRequests"]
            if "from" in (query := parse_qs(urlsplit(target).query))
        ]
        self.assertEqual(period_starts, [["2025-12-31T23:00:00.000Z"]])
        self.assertTrue(self.row(pk).is_finalized)

    def test_a_dry_run_writes_nothing(self) -> None:
        run = services.sync_run_transactions(
            trigger="command", client=self.steve, dry_run=True
        )
        self.assertGreater(run.created_count, 0)
        self.assertIsNone(run.pk)
        self.assertFalse(TransactionSyncState.objects.exists())
        self.assertFalse(SyncRun.objects.exists())

    def test_resync_of_one_transaction(self) -> None:
        self.sync()
        (pk,) = self.standin.scenario("kwh_readings")
        run = services.sync_run_transaction(
            steve_transaction_id=pk, trigger="manual", client=self.steve
        )
        self.assertEqual(run.kind, SyncRun.Kind.TRANSACTION)
        self.assertEqual(
            (run.status, run.fetched_count, run.updated_count), ("succeeded", 1, 0)
        )
        self.assertEqual(SyncRun.objects.resyncs_of(pk).get(), run)
        # Nothing had changed, and yet it was read from SteVe: its Last synced
        # says when, and its last update stays the session's own.
        row = TransactionSyncState.objects.get(steve_transaction_id=pk)
        self.assertGreaterEqual(row.last_synced_at, run.started_at)
        self.assertLessEqual(row.last_synced_at, run.finished_at)
        self.assertLess(row.updated_at, run.started_at)

    def test_a_resync_of_a_transaction_nobody_has_fails_with_a_sentence(
        self,
    ) -> None:
        self.sync()
        run = services.sync_run_transaction(
            steve_transaction_id=987654, trigger="manual", client=self.steve
        )
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            "Neither SteVe nor Polaris has transaction 987654; there is nothing to "
            "resync.",
        )

    def test_chargers_are_created_when_first_seen(self) -> None:
        self.sync()
        boxes = {b["chargeBoxId"] for b in self.standin.state()["chargeBoxes"]}
        seen = set(Charger.objects.values_list("charge_box_id", flat=True))
        self.assertLessEqual(seen, boxes)
        self.assertTrue(seen)
        charger = Charger.objects.first()
        assert charger is not None
        self.assertEqual(charger.friendly_name, charger.charge_box_id)
        self.assertFalse(TransactionSyncState.objects.filter(charger=None).exists())


class MeterDropTests(SyncTestCase):
    """A reading below the last one is only a meter reset once the next reading
    (or the stop) confirms it; after any drop the station's own stop - start is
    the session's total when SteVe has a valid one."""

    def read(self, pk: int, start: datetime, minute: int, *wh: int) -> None:
        self.standin.add_meter_values(
            pk,
            [
                {
                    "value": str(value),
                    "valueTimestamp": iso(start + timedelta(minutes=n)),
                }
                for n, value in enumerate(wh, start=minute)
            ],
        )

    def energy_events(self, pk: int) -> list[tuple[str, Decimal]]:
        return list(
            self.row(pk)
            .events.order_by("reading_at", "id")
            .values_list("event_type", "kwh_delta")
        )

    def test_a_single_glitch_reading_counts_no_energy(self) -> None:
        pk, start = self.start_charge(start_value=100_000, minutes_ago=30)
        self.read(pk, start, 1, 101_000, 0, 102_000)
        stopped = self.standin.station_stop(
            pk, 103_000, stop_timestamp=iso(start + timedelta(minutes=4))
        )
        self.assertTrue(stopped["accepted"], stopped)
        self.sync()
        row = self.row(pk)
        self.assertEqual(row.kwh_delivered, Decimal("3.000"))
        self.assertTrue(row.meter_reset_seen)
        self.assertEqual(
            self.energy_events(pk),
            [
                ("started", Decimal("0.000")),
                ("progress", Decimal("1.000")),
                ("corrected", Decimal("0.000")),
                ("progress", Decimal("1.000")),
                ("stopped", Decimal("1.000")),
            ],
        )
        self.assert_energy_adds_up()
        assert_rollups_exact(self)

    def test_readings_counted_from_zero_bill_the_station_register(self) -> None:
        # The station's MeterValues count from 0 each session, while its
        # meterStart and meterStop are the absolute register.
        pk, start = self.start_charge(start_value=874_164, minutes_ago=30)
        self.read(pk, start, 1, 0, 2000, 4000)
        stopped = self.standin.station_stop(
            pk, 878_164, stop_timestamp=iso(start + timedelta(minutes=4))
        )
        self.assertTrue(stopped["accepted"], stopped)
        self.sync()
        row = self.row(pk)
        self.assertEqual(row.kwh_delivered, Decimal("4.000"))
        self.assertTrue(row.meter_reset_seen)
        self.assert_energy_adds_up()

    def test_a_drop_at_the_end_of_a_run_waits_for_the_next_reading(self) -> None:
        pk, start = self.start_charge(start_value=100_000, minutes_ago=30)
        self.read(pk, start, 1, 101_000, 0)
        self.sync()
        row = self.row(pk)
        self.assertEqual(
            (row.kwh_delivered, row.meter_last_wh, row.meter_dip_wh),
            (Decimal("1.000"), 101_000, 0),
        )
        self.assertTrue(row.meter_reset_seen)
        self.read(pk, start, 3, 102_000)
        self.sync()
        row = self.row(pk)
        self.assertEqual(
            (row.kwh_delivered, row.meter_last_wh, row.meter_dip_wh),
            (Decimal("2.000"), 102_000, None),
        )
        self.assert_energy_adds_up()
        again = self.sync()
        self.assertEqual((again.updated_count, again.events_count), (0, 0))

    def test_a_reset_confirmed_by_the_next_reading_is_counted(self) -> None:
        # The register restarts near 0: its readings are counted from the first
        # one after the drop, and the station's stop, below its start, is refused.
        pk, start = self.start_charge(start_value=100_000, minutes_ago=30)
        self.read(pk, start, 1, 101_000, 500)
        self.sync()
        self.read(pk, start, 3, 1500)
        self.sync()
        refused = self.standin.station_stop(
            pk, 2000, stop_timestamp=iso(start + timedelta(minutes=4))
        )
        self.assertFalse(refused["accepted"], refused)
        self.sync()
        row = self.row(pk)
        self.assertFalse(row.is_finalized)
        self.assertEqual(
            (row.kwh_delivered, row.meter_last_wh, row.meter_dip_wh),
            (Decimal("2.000"), 1500, None),
        )
        self.assertTrue(row.meter_reset_seen)
        self.assert_energy_adds_up()


class SyncFaultTests(SyncTestCase):
    """SteVe failing: the run is marked failed, nothing is half-written, the next run
    catches up."""

    def add_new_activity(self) -> int:
        pk = self.standin.add_transaction("CP-003", 1, "TAG-0002", start_value=960_000)
        soon = iso(datetime.now(UTC) + timedelta(seconds=1))
        self.standin.add_meter_values(pk, [{"value": "961200", "valueTimestamp": soon}])
        return pk

    def assert_recovers(self, before: object, new_pk: int) -> None:
        self.assertEqual(self.snapshot(), before)
        self.standin.clear_faults()
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertTrue(self.row(new_pk).events.filter(event_type="progress").exists())
        self.assert_energy_adds_up()

    def test_failing_midway_through_a_run_writes_nothing(self) -> None:
        self.sync()
        new_pk = self.add_new_activity()
        before = self.snapshot()
        # The list calls answer; the per-transaction detail calls break off, as
        # when SteVe goes down between them.
        self.standin.set_fault("cut", count=-1, path_contains="transactions/")
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(run.error, "SteVe's answer was cut off.")
        self.assert_recovers(before, new_pk)

    def test_a_transaction_steve_cannot_serve_holds_up_no_other(self) -> None:
        # SteVe answers everything but one transaction's meter values: the others
        # are synced, new ones above it included, and the next run reads it
        # although its search for new pks starts above them now.
        self.sync()
        unreadable = self.add_new_activity()
        newer = self.add_new_activity()
        self.standin.set_fault(
            "error", status=500, count=-1, path_contains=f"/transactions/{unreadable}?"
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.PARTIAL)
        self.assertEqual(
            run.error,
            f"Transaction {unreadable}: SteVe could not serve the meter values (SteVe "
            "failed with HTTP 500.) The others were synced. The next run reads it "
            "again.",
        )
        self.assertEqual(
            (run.errors_count, run.unread_transaction_ids), (1, [unreadable])
        )
        self.assertTrue(self.row(newer).events.filter(event_type="progress").exists())
        # Known from its list row at once (a charge going on, for the portal and
        # the Sessions API), with its energy still to come.
        stored = self.row(unreadable)
        self.assertEqual((stored.is_finalized, stored.kwh_delivered), (False, 0))
        self.assertEqual(
            list(stored.events.values_list("event_type", flat=True)), ["started"]
        )
        # A run that fails in between (SteVe down) does not lose it.
        self.standin.set_fault("unauthorized", count=-1)
        self.assertEqual(self.sync().status, SyncRun.Status.FAILED)
        self.standin.clear_faults()
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(run.unread_transaction_ids, [])
        self.assertTrue(
            self.row(unreadable).events.filter(event_type="progress").exists()
        )
        self.assert_energy_adds_up()

    def test_a_transaction_the_database_refuses_holds_up_no_other(self) -> None:
        # An idTag longer than its column (SteVe's own holds 255 characters too,
        # so only a broken SteVe sends one): the rest of the batch is saved, and
        # the refused one is named and read again by the next runs.
        self.sync()
        refused = self.standin.add_transaction("CP-003", 1, "T" * 300)
        newer = self.add_new_activity()
        with self.assertLogs("sync.services.runs", "ERROR"):
            run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.PARTIAL)
        self.assertEqual(
            run.error,
            f"Transaction {refused}: Polaris could not store what SteVe sent (see "
            "logs). The others were synced. The next run reads it again.",
        )
        self.assertEqual((run.errors_count, run.unread_transaction_ids), (1, [refused]))
        self.assertTrue(self.row(newer).events.filter(event_type="progress").exists())
        self.assertEqual(run.created_count, 1)
        self.assert_energy_adds_up()
        with self.assertLogs("sync.services.runs", "ERROR"):
            again = self.sync()
        self.assertEqual(again.unread_transaction_ids, [refused], again.error)
        # Alone in its batch now: no "others" to speak of.
        self.assertEqual(
            again.error,
            f"Transaction {refused}: Polaris could not store what SteVe sent (see "
            "logs). The next run reads it again.",
        )

    def test_a_failure_keeps_the_batches_saved_before_it_and_the_next_run_goes_on(
        self,
    ) -> None:
        pks = sorted(t["id"] for t in self.standin.state()["transactions"])
        # The second batch's first meter values break off, every time they are
        # asked.
        self.standin.set_fault(
            "cut", count=-1, path_contains=f"/transactions/{pks[10]}?"
        )
        with mock.patch.object(runs, "WRITE_BATCH", 10):
            failed = self.sync()
            self.assertEqual(failed.status, SyncRun.Status.FAILED)
            self.assertEqual(
                failed.error,
                "SteVe's answer was cut off. The 10 sessions it saved before that "
                "stay saved.",
            )
            self.assertEqual(
                sorted(
                    TransactionSyncState.objects.values_list(
                        "steve_transaction_id", flat=True
                    )
                ),
                pks[:10],
            )
            self.standin.clear_faults()
            # The next run carries on above the highest stored pk: it does not
            # take the first ten again.
            run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        self.assertEqual(run.created_count, len(pks) - 10)
        self.assertEqual(TransactionSyncState.objects.count(), len(pks))
        self.assert_energy_adds_up()
        events = SyncedTransactionEvent.objects.count()
        self.assertEqual(self.sync().events_count, 0)
        self.assertEqual(SyncedTransactionEvent.objects.count(), events)

    def test_an_unforeseen_error_ends_the_run_as_failed(self) -> None:
        # Not a SteVe fault: a bug, or data no check foresaw. The run must not stay
        # "running" until the next one calls it interrupted.
        class Broken(SteveClient):
            def transaction_details(self, pk: int) -> Any:
                raise RuntimeError("unforeseen")

        self.sync()
        new_pk = self.add_new_activity()
        before = self.snapshot()
        broken = Broken(
            base_url=self.standin.base_url,
            username=self.standin.username,
            password=self.standin.password,
        )
        with broken, self.assertLogs("sync.services.runs", "ERROR"):
            run = services.sync_run_transactions(trigger="command", client=broken)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error, "Polaris could not process what SteVe sent; see logs."
        )
        self.assertFalse(SyncRun.objects.running().exists())
        self.assert_recovers(before, new_pk)

    def test_steve_slower_than_the_timeout(self) -> None:
        self.sync()
        new_pk = self.add_new_activity()
        before = self.snapshot()
        self.standin.set_fault("slow", delay=3, count=-1)
        run = self.sync()
        self.assertEqual(run.status, "failed")
        # Each try's timeout, and how long all of them took (the run's duration).
        self.assertRegex(
            run.error, r"^SteVe did not answer within 2 s\. Tried 3 times in \d+ s\.$"
        )
        self.assert_recovers(before, new_pk)

    def test_steve_rejecting_our_credentials(self) -> None:
        self.sync()
        new_pk = self.add_new_activity()
        before = self.snapshot()
        self.standin.set_fault("unauthorized", count=-1)
        run = self.sync()
        self.assertEqual(
            run.error,
            "SteVe rejected Polaris's credentials (HTTP 401). Check STEVE_USERNAME and "
            "STEVE_PASSWORD: they must be a SteVe web user and that user's API "
            "password, not its sign-in password.",
        )
        self.assert_recovers(before, new_pk)

    def test_steve_sending_malformed_json(self) -> None:
        self.sync()
        new_pk = self.add_new_activity()
        before = self.snapshot()
        self.standin.set_fault("malformed", count=-1)
        run = self.sync()
        self.assertEqual(run.error, "SteVe sent a response that is not valid JSON.")
        self.assert_recovers(before, new_pk)

    def test_steve_cutting_its_answers_off(self) -> None:
        # The connection drops mid-body (SteVe restarting, a proxy timing out).
        self.sync()
        new_pk = self.add_new_activity()
        before = self.snapshot()
        self.standin.set_fault("cut", count=-1)
        run = self.sync()
        self.assertEqual(
            (run.status, run.error), ("failed", "SteVe's answer was cut off.")
        )
        self.assertIsNotNone(run.finished_at)
        self.assert_recovers(before, new_pk)

    def test_an_answer_cut_off_once_is_retried_within_the_run(self) -> None:
        self.standin.set_fault("cut", count=1)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)

    def test_a_transient_5xx_is_retried_within_the_run(self) -> None:
        self.standin.set_fault("error", status=503, count=2)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)

    def test_a_transaction_vanishing_between_list_and_details(self) -> None:
        self.sync()
        new_pk = self.add_new_activity()
        self.standin.set_fault(
            "error", status=404, count=-1, path_contains=f"transactions/{new_pk}"
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.PARTIAL)
        self.assertIn(f"Transaction {new_pk} disappeared", run.error)
        self.assertFalse(
            TransactionSyncState.objects.filter(steve_transaction_id=new_pk).exists()
        )
        self.standin.clear_faults()
        self.assertEqual(self.sync().status, SyncRun.Status.SUCCEEDED)
        self.assertTrue(self.row(new_pk).events.exists())
        self.assert_energy_adds_up()

    def test_a_404_on_the_list_says_which_request_steve_refused(self) -> None:
        self.standin.set_fault(
            "error", status=404, count=-1, path_contains="/api/v1/transactions?"
        )
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertIn(
            "SteVe answered GET /api/v1/transactions with HTTP 404", run.error
        )

    def test_steve_down(self) -> None:
        down = SteveClient(
            base_url="http://127.0.0.1:9/steve",
            username="u",
            password="p",
            retry_delays=(),
        )
        run = services.sync_run_transactions(trigger="beat", client=down)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            "SteVe cannot be reached at http://127.0.0.1:9/steve: the connection was "
            "refused, so nothing listens there. Check that SteVe is running and that "
            "STEVE_URL's host and port are its address.",
        )
        self.assertIsNotNone(run.finished_at)

    def test_a_steve_url_with_the_wrong_context_path(self) -> None:
        wrong = self.client_at_a_wrong_context_path()
        run = services.sync_run_transactions(trigger="command", client=wrong)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            f"There is no SteVe API at {wrong.base_url} (HTTP 404): check STEVE_URL, "
            "context path included (e.g. /steve).",
        )


class SyncChargersTests(SyncTestCase):
    def test_stations_that_answer_the_heartbeat_probe_check_in(self) -> None:
        self.sync()
        Charger.objects.update(last_check_in_at=None)
        self.standin.set_online("CP-001", False)
        run = services.sync_run_chargers(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED)
        checked_in = set(
            Charger.objects.filter(last_check_in_at__isnull=False).values_list(
                "charge_box_id", flat=True
            )
        )
        self.assertNotIn("CP-001", checked_in)
        self.assertIn("CP-002", checked_in)

    def test_a_station_that_answers_without_accepting_checks_in(self) -> None:
        # Rejected, or a CallError from a station without RemoteTrigger: either
        # way the station answered, so it is connected.
        self.sync()
        Charger.objects.update(last_check_in_at=None)
        self.standin.set_trigger_answer("CP-001", "Rejected")
        self.standin.set_trigger_answer("CP-002", "NotImplemented")
        run = services.sync_run_chargers(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        checked_in = set(
            Charger.objects.filter(last_check_in_at__isnull=False).values_list(
                "charge_box_id", flat=True
            )
        )
        self.assertLessEqual({"CP-001", "CP-002"}, checked_in)

    def test_a_probe_steve_refuses_fails_the_run(self) -> None:
        # SteVe's chargeBoxId check refuses the whole request for one bad id; that
        # is not "no station online".
        self.sync()
        Charger.objects.create(
            charge_box_id="CP(7)", connector_id=1, friendly_name="Typo"
        )
        run = services.sync_run_chargers(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            "SteVe refused the heartbeat probe (Error understanding the request). "
            "One charge box id it cannot accept, such as one with = / ( ) < or >, "
            "makes it refuse them all: check the chargers' ids.",
        )
        # It read nothing from SteVe, whatever it meant to probe.
        self.assertEqual((run.fetched_count, run.updated_count), (0, 0))

    def test_the_command_names_the_silent_charge_boxes(self) -> None:
        self.sync()
        self.standin.set_online("CP-001", False)
        out = StringIO()
        with override_settings(**self.standin.polaris_settings()):
            call_command("sync", "chargers", stdout=out)
        boxes = set(Charger.objects.values_list("charge_box_id", flat=True))
        offline = sorted(
            box["chargeBoxId"]
            for box in self.standin.state()["chargeBoxes"]
            if not box["online"] and box["chargeBoxId"] in boxes
        )
        self.assertIn("CP-001", offline)
        self.assertIn(
            f"{len(boxes) - len(offline)} of {len(boxes)} charge boxes answered; "
            f"silent: {', '.join(offline)}.",
            out.getvalue(),
        )

    def test_the_command_says_where_chargers_come_from_before_any_is_known(
        self,
    ) -> None:
        out = StringIO()
        with override_settings(**self.standin.polaris_settings()):
            call_command("sync", "chargers", stdout=out)
        self.assertRegex(
            out.getvalue(),
            r"Run #\d+ succeeded: no charger is known yet, so none was probed; "
            r"`manage.py sync transactions` finds them\.",
        )

    def test_no_station_online_is_not_a_failure(self) -> None:
        self.sync()
        Charger.objects.update(last_check_in_at=None)
        for box in self.standin.state()["chargeBoxes"]:
            self.standin.set_online(box["chargeBoxId"], False)
        run = services.sync_run_chargers(trigger="command", client=self.steve)
        self.assertEqual((run.status, run.updated_count), ("succeeded", 0))


class RollupTests(SyncTestCase):
    """The trigger-kept counts and energy rollups always equal their base tables."""

    def test_inserts_finalizing_upserts_and_vanished_sessions(self) -> None:
        self.sync()
        assert_rollups_exact(self)
        active = TransactionSyncState.objects.active().filter(is_suspected_stuck=False)
        first = active.first()
        assert first is not None
        self.standin.station_stop(first.steve_transaction_id)
        pk = self.standin.add_transaction("CP-003", 1, "TAG-0002")
        self.standin.tick(900)
        self.sync()
        assert_rollups_exact(self)
        self.standin.delete_transaction(pk)
        self.sync()
        assert_rollups_exact(self)
        TransactionSyncState.objects.filter(pk=first.pk).delete()
        assert_rollups_exact(self)


class MappingLetterCaseTests(SyncTestCase):
    def test_a_mapping_typed_before_its_cards_first_session_is_spelled_as_steve(
        self,
    ) -> None:
        # Saved before any session of the card synced, the mapping could not
        # learn SteVe's letter case then; sessions link to it by the exact tag.
        steve_tag = self.steve.list_transactions(type="ALL")[0].ocpp_id_tag
        typed = steve_tag.lower()
        self.assertNotEqual(typed, steve_tag)
        mapping = UserMappingFactory(steve_ocpp_id_tag=typed)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        mapping.refresh_from_db()
        self.assertEqual(mapping.steve_ocpp_id_tag, steve_tag)
        entry = AuditEntry.objects.get(object_type="user_mapping", source="sync")
        self.assertEqual(entry.before["steveOcppIdTag"], typed)
        self.assertEqual(entry.after["steveOcppIdTag"], steve_tag)
        linked = TransactionSyncState.objects.filter(ocpp_id_tag=steve_tag)
        self.assertTrue(linked.exists())
        self.assertEqual(
            set(linked.values_list("mapping__user", flat=True)), {mapping.user_id}
        )
        # A second run has nothing left to respell.
        self.sync()
        self.assertEqual(
            AuditEntry.objects.filter(object_type="user_mapping").count(), 1
        )

    def test_a_card_steve_knows_in_two_spellings_keeps_the_one_with_sessions(
        self,
    ) -> None:
        # OCPP idTags compare case-insensitively, so a card can reach SteVe in
        # two spellings; respelling each time would cut its customer off from the
        # other spelling's sessions, back and forth.
        first = self.steve.list_transactions(type="ALL")[0]
        mapping = UserMappingFactory(steve_ocpp_id_tag=first.ocpp_id_tag)
        self.sync()
        pk = self.charge_in_lower_case(first)
        run = self.sync()
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        mapping.refresh_from_db()
        self.assertEqual(mapping.steve_ocpp_id_tag, first.ocpp_id_tag)
        self.assertFalse(AuditEntry.objects.filter(source="sync").exists())
        # The other spelling's session is stored in the mapping's, so it is the
        # customer's: linked, with its events and its energy.
        self.assertFalse(
            TransactionSyncState.objects.filter(
                ocpp_id_tag=first.ocpp_id_tag.lower()
            ).exists()
        )
        self.assertFalse(
            SyncedTransactionEvent.objects.filter(
                ocpp_id_tag=first.ocpp_id_tag.lower()
            ).exists()
        )
        newest = TransactionSyncState.objects.get(steve_transaction_id=pk)
        self.assertEqual(newest.mapping, mapping)
        self.assertEqual(newest.kwh_delivered, Decimal("2.500"))
        assert_rollups_exact(self)
        # Compared in that spelling, the session is not changed by every run.
        self.assertEqual(self.sync().updated_count, 0)

    def card_synced_in_two_spellings(self) -> str:
        """Sync an unmapped card's sessions in two letter cases; its SteVe tag."""
        first = self.steve.list_transactions(type="ALL")[0]
        tag = first.ocpp_id_tag
        self.assertFalse(
            UserMapping.objects.filter(steve_ocpp_id_tag__iexact=tag).exists()
        )
        self.charge_in_lower_case(first)
        self.sync()
        return tag

    def charge_in_lower_case(self, card_of: SteveTransaction) -> int:
        """A charge of 2.5 kWh on `card_of`'s connector by its card, spelled in
        lower case; SteVe's pk."""
        start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
        pk = self.standin.add_transaction(
            card_of.charge_box_id,
            card_of.connector_id,
            card_of.ocpp_id_tag.lower(),
            start_value=1_000_000,
            start_timestamp=iso(start),
        )
        at = iso(start + timedelta(minutes=5))
        self.standin.add_meter_values(pk, [{"value": "1002500", "valueTimestamp": at}])
        return pk

    def assert_every_session_linked(self, tag: str, mapping: UserMapping) -> None:
        """Every session of the card, in whatever letter case, links to `mapping`."""
        sessions = TransactionSyncState.objects.filter(ocpp_id_tag__iexact=tag)
        self.assertEqual(
            set(sessions.values_list("mapping__pk", flat=True)), {mapping.pk}
        )

    def test_mapping_a_card_synced_in_two_spellings_links_the_sessions_of_both(
        self,
    ) -> None:
        tag = self.card_synced_in_two_spellings()
        spellings = set(
            TransactionSyncState.objects.filter(ocpp_id_tag__iexact=tag).values_list(
                "ocpp_id_tag", flat=True
            )
        )
        self.assertEqual(spellings, {tag, tag.lower()})
        mapping = user_mapping_create(
            actor=None, steve_ocpp_id_tag=tag.title(), user=UserFactory()
        )
        self.assert_every_session_linked(tag, mapping)
        self.assertEqual(
            set(
                SyncedTransactionEvent.objects.filter(
                    ocpp_id_tag__iexact=tag
                ).values_list("ocpp_id_tag", flat=True)
            ),
            {mapping.steve_ocpp_id_tag},
        )
        assert_rollups_exact(self)
        self.assertEqual(self.sync().updated_count, 0)

    def test_an_imported_mapping_links_its_cards_sessions_in_every_spelling(
        self,
    ) -> None:
        tag = self.card_synced_in_two_spellings()
        result = user_mapping_import_text(
            actor=None,
            text=f"steveOcppIdTag,email,label\n{tag.lower()},new@example.com,Van\n",
        )
        self.assertEqual(result.created, 1, result.rejected)
        mapping = UserMapping.objects.get(steve_ocpp_id_tag__iexact=tag)
        self.assert_every_session_linked(tag, mapping)
        assert_rollups_exact(self)


class TableMaintenanceTests(TestCase):
    def test_sessions_are_vacuumed_by_their_count_of_dead_rows(self) -> None:
        # Each sync rewrites the charging sessions; waiting for a fifth of a
        # million-row table to die left reads of the open ones visiting every
        # dead version (sync/migrations/0022).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reloptions FROM pg_class WHERE relname = %s",
                [TransactionSyncState._meta.db_table],
            )
            (options,) = cursor.fetchone()
        self.assertEqual(
            set(options),
            {"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=2000"},
        )
