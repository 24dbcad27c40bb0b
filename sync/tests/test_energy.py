"""The energy rules of the sync, on plain values (no SteVe, no database)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sync.client import SteveTransaction
from sync.energy import StoredState, plan_transaction

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
        assert kinds == [
            ("started", Decimal("0.000")),
            ("progress", Decimal("1.000")),
            ("corrected", Decimal("0.000")),
            ("progress", Decimal("0.400")),
            ("stopped", Decimal("0.300")),
        ]
        assert plan.fields["kwh_delivered"] == Decimal("1.700")
        assert plan.fields["meter_reset_seen"] is True
        assert all(e.kwh_delta >= 0 for e in plan.events)

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
