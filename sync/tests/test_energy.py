"""The energy rules of the sync, on plain values (no SteVe, no database)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sync.client import SteveTransaction
from sync.energy import StoredState, TransactionPlan, plan_transaction

START = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def transaction(**overrides: object) -> SteveTransaction:
    values: dict[str, object] = {
        "id": 10,
        "charge_box_id": "CP-001",
        "connector_id": 1,
        "ocpp_id_tag": "TAG-0001",
        "start_timestamp": START,
        "start_value_wh": 1000,
        "stop_timestamp": None,
        "stop_value_wh": None,
        "stop_reason": None,
        "stop_event_actor": None,
        "user_id": None,
    }
    values.update(overrides)
    return SteveTransaction(**values)  # type: ignore[arg-type]


def minutes(n: int) -> datetime:
    return START + timedelta(minutes=n)


def event_rows(plan: TransactionPlan) -> list[tuple[str, int, Decimal]]:
    """Each planned event as (type, meter Wh, kWh delta)."""
    return [(e.event_type, e.meter_wh, e.kwh_delta) for e in plan.events]


def stored_from(plan_fields: dict[str, object]) -> StoredState:
    names = StoredState.__dataclass_fields__
    return StoredState(**{name: plan_fields[name] for name in names})  # type: ignore[arg-type]


class PlanTransactionTests:
    def test_it_starts_with_a_zero_energy_started_event(self) -> None:
        plan = plan_transaction(None, transaction(), [])
        assert [e.event_type for e in plan.events] == ["started"]
        assert plan.fields["kwh_delivered"] == Decimal("0.000")

    def test_it_adds_progress_events_that_sum_to_the_delivered_energy(self) -> None:
        readings = [(minutes(10), 1500), (minutes(20), 2750), (minutes(30), 2750)]
        plan = plan_transaction(None, transaction(), readings)
        progress = [e for e in plan.events if e.event_type == "progress"]
        assert [e.kwh_delta for e in progress] == [Decimal("0.500"), Decimal("1.250")]
        assert plan.fields["kwh_delivered"] == Decimal("1.750")
        assert plan.fields["meter_last_wh"] == 2750

    def test_it_treats_a_decrease_as_a_meter_reset_without_negative_energy(
        self,
    ) -> None:
        readings = [(minutes(10), 2000), (minutes(20), 500), (minutes(30), 900)]
        plan = plan_transaction(
            None,
            transaction(stop_timestamp=minutes(40), stop_value_wh=1200),
            readings,
        )
        kinds = [(e.event_type, e.kwh_delta) for e in plan.events]
        # 900 rises from the drop to 500: a reset, counted from 500. The station's
        # own 1200 - 1000 is below the 1.4 kWh counted: the stop adds nothing.
        assert kinds == [
            ("started", Decimal("0.000")),
            ("progress", Decimal("1.000")),
            ("corrected", Decimal("0.000")),
            ("progress", Decimal("0.400")),
            ("stopped", Decimal("0.000")),
        ]
        assert plan.fields["kwh_delivered"] == Decimal("1.400")
        assert plan.fields["meter_reset_seen"] is True
        assert all(e.kwh_delta >= 0 for e in plan.events)

    def test_a_reading_back_above_the_baseline_makes_a_drop_a_glitch(self) -> None:
        readings = [(minutes(10), 2000), (minutes(20), 0), (minutes(30), 2500)]
        plan = plan_transaction(None, transaction(), readings)
        kinds = event_rows(plan)
        assert kinds == [
            ("started", 1000, Decimal("0.000")),
            ("progress", 2000, Decimal("1.000")),
            ("corrected", 0, Decimal("0.000")),
            ("progress", 2500, Decimal("0.500")),
        ]
        assert (plan.fields["meter_last_wh"], plan.fields["meter_dip_wh"]) == (
            2500,
            None,
        )
        assert plan.fields["meter_reset_seen"] is True

    def test_the_same_low_value_twice_still_waits_to_be_explained(self) -> None:
        # A meter reporting 0 while it is away does so more than once: only a rise
        # from the dip makes it a reset, so the climb back is not billed.
        readings = [
            (minutes(10), 2000),
            (minutes(20), 0),
            (minutes(30), 0),
            (minutes(40), 2500),
        ]
        plan = plan_transaction(None, transaction(), readings)
        kinds = event_rows(plan)
        assert kinds == [
            ("started", 1000, Decimal("0.000")),
            ("progress", 2000, Decimal("1.000")),
            ("corrected", 0, Decimal("0.000")),
            ("progress", 2500, Decimal("0.500")),
        ]
        assert plan.fields["kwh_delivered"] == Decimal("1.500")

    def test_a_drop_waits_for_the_next_reading_across_runs(self) -> None:
        steve = transaction()
        first = plan_transaction(None, steve, [(minutes(10), 2000), (minutes(20), 300)])
        assert (first.fields["meter_last_wh"], first.fields["meter_dip_wh"]) == (
            2000,
            300,
        )
        assert first.fields["kwh_delivered"] == Decimal("1.000")
        second = plan_transaction(
            stored_from(first.fields), steve, [(minutes(30), 700)]
        )
        assert [(e.event_type, e.kwh_delta) for e in second.events] == [
            ("progress", Decimal("0.400"))
        ]
        assert (second.fields["meter_last_wh"], second.fields["meter_dip_wh"]) == (
            700,
            None,
        )

    def test_a_reading_below_the_dip_is_a_deeper_dip(self) -> None:
        readings = [(minutes(10), 2000), (minutes(20), 800), (minutes(30), 300)]
        plan = plan_transaction(None, transaction(), [*readings, (minutes(40), 600)])
        kinds = event_rows(plan)
        assert kinds[2:] == [
            ("corrected", 800, Decimal("0.000")),
            ("corrected", 300, Decimal("0.000")),
            ("progress", 600, Decimal("0.300")),
        ]
        assert plan.fields["kwh_delivered"] == Decimal("1.300")

    def test_after_a_drop_the_stations_own_count_is_the_total(self) -> None:
        # MeterValues counting from 0 each session; meterStart/Stop the register.
        plan = plan_transaction(
            None,
            transaction(
                start_value_wh=874_164,
                stop_timestamp=minutes(40),
                stop_value_wh=878_164,
                stop_event_actor="station",
            ),
            [(minutes(10), 0), (minutes(20), 2000), (minutes(30), 4000)],
        )
        assert plan.fields["kwh_delivered"] == Decimal("4.000")
        assert plan.fields["meter_reset_seen"] is True

    def test_a_stop_replacing_a_manual_one_after_a_drop_tops_up_to_its_count(
        self,
    ) -> None:
        readings = [(minutes(10), 101_000), (minutes(20), 0)]
        manual = transaction(
            start_value_wh=100_000,
            stop_timestamp=minutes(10),
            stop_value_wh=101_000,
            stop_event_actor="manual",
        )
        first = plan_transaction(None, manual, readings)
        assert first.fields["kwh_delivered"] == Decimal("1.000")
        station = transaction(
            start_value_wh=100_000,
            stop_timestamp=minutes(30),
            stop_value_wh=103_000,
            stop_event_actor="station",
        )
        second = plan_transaction(stored_from(first.fields), station, readings)
        # The drop, after the manual stop, belongs to the station's session.
        assert [(e.event_type, e.meter_wh, e.kwh_delta) for e in second.events] == [
            ("corrected", 0, Decimal("0.000")),
            ("corrected", 103_000, Decimal("2.000")),
        ]
        assert second.fields["kwh_delivered"] == Decimal("3.000")
        assert second.fields["meter_dip_wh"] is None

    def test_a_stop_below_the_start_counts_on_from_the_reset(self) -> None:
        # Old SteVe stored such a stop; with no valid count of its own, the
        # station's register after the reset is counted from the readings.
        readings = [(minutes(10), 101_000), (minutes(20), 500), (minutes(30), 1500)]
        plan = plan_transaction(
            None,
            transaction(
                start_value_wh=100_000, stop_timestamp=minutes(40), stop_value_wh=2000
            ),
            readings,
        )
        assert plan.fields["kwh_delivered"] == Decimal("2.500")

    def test_a_stop_below_the_start_confirms_a_pending_dip(self) -> None:
        readings = [(minutes(10), 101_000), (minutes(20), 500)]
        plan = plan_transaction(
            None,
            transaction(
                start_value_wh=100_000, stop_timestamp=minutes(40), stop_value_wh=1500
            ),
            readings,
        )
        assert plan.events[-1].event_type == "stopped"
        assert plan.events[-1].kwh_delta == Decimal("1.000")
        assert plan.fields["kwh_delivered"] == Decimal("2.000")
        assert (plan.fields["meter_last_wh"], plan.fields["meter_dip_wh"]) == (
            1500,
            None,
        )

    def test_a_spike_no_charger_could_deliver_is_not_energy(self) -> None:
        # 2 GWh five minutes after 1 kWh: a glitching meter, not a charge.
        readings = [
            (minutes(10), 2000),
            (minutes(15), 2_000_000_000),
            (minutes(20), 3000),
            (minutes(30), 4000),
        ]
        steve = transaction(stop_timestamp=minutes(40), stop_value_wh=4000)
        plan = plan_transaction(None, steve, readings)
        assert event_rows(plan) == [
            ("started", 1000, Decimal("0.000")),
            ("progress", 2000, Decimal("1.000")),
            ("corrected", 2_000_000_000, Decimal("0.000")),
            ("progress", 3000, Decimal("1.000")),
            ("progress", 4000, Decimal("1.000")),
            ("stopped", 4000, Decimal("0.000")),
        ]
        assert plan.fields["kwh_delivered"] == Decimal("3.000")
        assert plan.fields["meter_reset_seen"] is True

    def test_readings_on_another_register_than_the_start_count_at_the_stop(
        self,
    ) -> None:
        # meterStart and meterStop count each session from 0, the readings are
        # the station's lifetime register: 500 kWh in 5 minutes at 22 kW, and
        # again in the 10 and 20 minutes after that.
        readings = [
            (minutes(5), 500_100),
            (minutes(15), 500_600),
            (minutes(35), 501_500),
        ]
        steve = transaction(
            start_value_wh=0, stop_timestamp=minutes(36), stop_value_wh=1500
        )
        plan = plan_transaction(None, steve, readings, max_power_kw=Decimal(22))
        assert plan.fields["kwh_delivered"] == Decimal("1.500")
        assert plan.fields["meter_reset_seen"] is True

    def test_a_rise_the_charger_could_deliver_counts(self) -> None:
        # 80 kWh in an hour is too much for a 22 kW charger, not for a 50 kW one;
        # but a second reading on, the whole session is measured, not the time
        # since the reading before (a clock set back, readings queued offline).
        readings = [(minutes(60), 81_000)]
        slow = plan_transaction(None, transaction(), readings, max_power_kw=Decimal(22))
        fast = plan_transaction(None, transaction(), readings, max_power_kw=Decimal(50))
        assert (slow.fields["kwh_delivered"], fast.fields["kwh_delivered"]) == (
            Decimal("0.000"),
            Decimal("80.000"),
        )

    def test_a_flat_register_is_no_spike_past_what_the_charger_could_deliver(
        self,
    ) -> None:
        # Counted before staff gave the charger a smaller maximum power: the
        # register standing still is no energy, and no spike either.
        counted = plan_transaction(None, transaction(), [(minutes(60), 61_000)])
        flat = plan_transaction(
            stored_from(counted.fields),
            transaction(),
            [(minutes(90), 61_000)],
            max_power_kw=Decimal("3.7"),
        )
        assert (flat.events, flat.fields["meter_reset_seen"]) == ([], False)

    def test_readings_stamped_close_together_count_what_the_session_could_draw(
        self,
    ) -> None:
        # Two hours of 40 kW queued offline and stamped as sent, a minute apart.
        readings = [(minutes(119), 41_000), (minutes(120), 81_000)]
        plan = plan_transaction(None, transaction(), readings, max_power_kw=Decimal(50))
        assert plan.fields["kwh_delivered"] == Decimal("80.000")
        assert plan.fields["meter_reset_seen"] is False

    def test_a_manual_stop_taken_from_a_spike_adds_nothing(self) -> None:
        # SteVe dates and values a manual stop as the last reading: here a spike.
        readings = [(minutes(10), 2000), (minutes(15), 2_000_000_000)]
        manual = transaction(
            stop_timestamp=minutes(15),
            stop_value_wh=2_000_000_000,
            stop_event_actor="manual",
        )
        first = plan_transaction(None, manual, readings)
        assert first.fields["kwh_delivered"] == Decimal("1.000")
        assert first.fields["meter_reset_seen"] is True
        again = plan_transaction(stored_from(first.fields), manual, readings)
        assert not again.changed
        # The station's own stop replaces it: its stop - start is the total.
        station = transaction(stop_timestamp=minutes(30), stop_value_wh=3500)
        replaced = plan_transaction(stored_from(first.fields), station, readings)
        assert replaced.fields["kwh_delivered"] == Decimal("2.500")

    def test_it_ignores_readings_after_the_stop(self) -> None:
        plan = plan_transaction(
            None,
            transaction(stop_timestamp=minutes(20), stop_value_wh=1800),
            [(minutes(10), 1400), (minutes(25), 9000)],
        )
        assert plan.fields["kwh_delivered"] == Decimal("0.800")

    def test_it_plans_nothing_when_nothing_changed(self) -> None:
        steve = transaction()
        first = plan_transaction(None, steve, [(minutes(10), 1500)])
        second = plan_transaction(
            stored_from(first.fields), steve, [(minutes(10), 1500)]
        )
        assert second.events == []
        assert second.changed is False

    def test_a_flat_register_moves_the_last_reading_only_now_and_then(self) -> None:
        # A full car left plugged in: the station goes on reporting, flat.
        steve = transaction()
        charged = plan_transaction(None, steve, [(minutes(10), 1500)])
        flat = [(minutes(n), 1500) for n in (25, 35)]
        soon = plan_transaction(stored_from(charged.fields), steve, flat)
        assert soon.changed is False
        assert soon.fields["last_reading_at"] == minutes(10)
        later = plan_transaction(
            stored_from(charged.fields), steve, [*flat, (minutes(40), 1500)]
        )
        assert later.changed is True
        assert later.events == []
        assert later.fields["last_reading_at"] == minutes(40)
        assert later.fields["kwh_delivered"] == Decimal("0.500")

    def test_it_corrects_a_manual_stop_replaced_by_the_station(self) -> None:
        manual = transaction(
            stop_timestamp=minutes(10), stop_value_wh=1500, stop_event_actor="manual"
        )
        first = plan_transaction(None, manual, [(minutes(10), 1500)])
        assert first.fields["is_stop_estimated"] is True
        station = transaction(
            stop_timestamp=minutes(30),
            stop_value_wh=2600,
            stop_event_actor="station",
            stop_reason="EVDisconnected",
        )
        second = plan_transaction(stored_from(first.fields), station, [])
        assert [(e.event_type, e.kwh_delta) for e in second.events] == [
            ("corrected", Decimal("1.100"))
        ]
        assert second.fields["kwh_delivered"] == Decimal("1.600")
        assert second.fields["is_stop_estimated"] is False
        assert second.fields["stop_event_actor"] == "station"

    def test_it_never_lowers_energy_when_a_replaced_stop_is_lower(self) -> None:
        manual = transaction(
            stop_timestamp=minutes(10), stop_value_wh=1500, stop_event_actor="manual"
        )
        first = plan_transaction(None, manual, [])
        lower = transaction(
            stop_timestamp=minutes(12), stop_value_wh=1200, stop_event_actor="station"
        )
        second = plan_transaction(stored_from(first.fields), lower, [])
        assert second.fields["kwh_delivered"] == Decimal("0.500")
        assert all(e.kwh_delta >= 0 for e in second.events)

    def test_a_manual_stop_dated_behind_readings_counted_since_adds_nothing(
        self,
    ) -> None:
        # A run counted readings up to 6000 Wh; then staff stopped the charge in
        # SteVe, which dated and valued the stop at an older reading (4000 Wh).
        counted = plan_transaction(
            None,
            transaction(),
            [(minutes(10), 2000), (minutes(30), 4000), (minutes(50), 6000)],
        )
        manual = transaction(
            stop_timestamp=minutes(30), stop_value_wh=4000, stop_event_actor="manual"
        )
        stopped = plan_transaction(stored_from(counted.fields), manual, [])
        assert event_rows(stopped) == [("stopped", 4000, Decimal("0.000"))]
        assert stopped.fields["kwh_delivered"] == Decimal("5.000")
        assert stopped.fields["meter_reset_seen"] is False
        # Seen again, it is no news.
        again = plan_transaction(stored_from(stopped.fields), manual, [])
        assert (again.events, again.changed) == ([], False)
        # The station's own stop replaces it: what came after counts from 6000 Wh.
        station = transaction(
            stop_timestamp=minutes(80), stop_value_wh=9000, stop_event_actor="station"
        )
        replaced = plan_transaction(
            stored_from(stopped.fields),
            station,
            [(minutes(60), 7000), (minutes(70), 8000)],
        )
        assert replaced.fields["kwh_delivered"] == Decimal("8.000")
        assert replaced.fields["meter_reset_seen"] is False
