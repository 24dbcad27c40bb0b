"""The seeded fleet: stations, tags, three days of history and the §11 scenarios.

Everything except wall-clock times is a pure function of ``(fleet_size, seed,
scenarios)``: the same arguments give the same charge points, tags, pks and
scenario pks on every run.

Sessions are planned per connector in time order, so each connector's energy
register only ever rises (except in the ``meter_reset`` scenario). They are then
stored in the order SteVe *received* them, which is what gives a late offline
start its new, high pk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum, auto

from sync.standin.records import EvseKey, Reading
from sync.standin.stations import PROFILES, ChargingSession, Connector, Station
from sync.standin.store import FleetStore

HISTORY = timedelta(hours=72)
SAMPLE_INTERVAL = timedelta(minutes=5)
OFFLINE_SINCE = timedelta(hours=20)
BLOCKED_TAG = "TAG-BLOCKED"
EXPIRED_TAG = "TAG-EXPIRED"

_MAX_POWERS_W = (3_700.0, 7_400.0, 11_000.0, 22_000.0)
_STOP_REASONS = ("EVDisconnected", "EVDisconnected", "Local", "Remote")
# Regular sessions keep clear of scenario sessions on the same connector.
_MARGIN = timedelta(minutes=15)
# The last regular history session ends this long before reset.
_QUIET_BEFORE_NOW = timedelta(minutes=90)


class Ending(Enum):
    """How a planned session ends, from SteVe's point of view."""

    STATION_STOP = auto()  # StopTransaction accepted
    STILL_CHARGING = auto()  # the station's current session
    LOST_STOP = auto()  # StopTransaction never reached SteVe: a zombie
    INVALID_STOP = auto()  # firmware sends session energy as meterStop: refused


@dataclass
class SessionPlan:
    """One session to put into the history; the meter fields are filled by
    ``_run_meter`` and ``session.transaction_pk`` when it is stored."""

    evse: EvseKey
    id_tag: str
    start: datetime
    duration: timedelta
    session: ChargingSession
    ending: Ending = Ending.STATION_STOP
    stop_reason: str | None = "EVDisconnected"
    scenario: str | None = None
    # When SteVe received the StartTransaction; None means at the start.
    received: datetime | None = None
    manual_stop: bool = False
    meter_drop: bool = False
    start_value: int = 0
    stop_value: int = 0
    readings: list[Reading] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        """When the station ended (or, while charging, last sampled) the session."""
        return self.start + self.duration

    def overlaps(self, other: SessionPlan) -> bool:
        """Whether both plans use the same connector at (nearly) the same time."""
        return (
            self.evse == other.evse
            and self.start < other.busy_until() + _MARGIN
            and other.start < self.busy_until() + _MARGIN
        )

    def busy_until(self) -> datetime:
        """The end of the session, or far ahead while it is still charging."""
        if self.ending is Ending.STILL_CHARGING:
            return self.end + timedelta(days=1)
        return self.end


@dataclass
class SeededFleet:
    """A freshly built fleet; ``scenarios`` maps scenario name → transaction pks."""

    store: FleetStore
    stations: dict[str, Station]
    scenarios: dict[str, list[int]]


def seed_fleet(
    *,
    fleet_size: int,
    seed: int,
    scenarios: bool,
    now: datetime,
    first_transaction_pk: int = 1,
) -> SeededFleet:
    """Build the stations, tags and history for one reset of the stand-in."""
    rng = random.Random(seed)
    store = FleetStore(first_transaction_pk=first_transaction_pk)
    stations = _add_stations(store, rng, fleet_size, now)
    tags = _TagPools.create(store, fleet_size, now)
    plans = _regular_plans(rng, stations, tags, now)
    if scenarios:
        scenario_plans = _Scenarios(rng, stations, tags, now).plans()
        plans = [p for p in plans if not any(p.overlaps(s) for s in scenario_plans)]
        plans += scenario_plans
    _run_meters(rng, stations, plans)
    _record(store, stations, plans, now)
    named: dict[str, list[int]] = {}
    for plan in plans:
        if plan.scenario is not None:
            named.setdefault(plan.scenario, []).append(plan.session.transaction_pk)
    return SeededFleet(store, stations, named)


def _add_stations(
    store: FleetStore, rng: random.Random, fleet_size: int, now: datetime
) -> dict[str, Station]:
    """``CP-001``…: with three or more stations the last one is offline and the
    one before it rejects remote starts."""
    stations: dict[str, Station] = {}
    for index in range(fleet_size):
        charge_box_id = f"CP-{index + 1:03d}"
        station = Station(
            charge_box_id=charge_box_id,
            profile=PROFILES[index % len(PROFILES)],
            max_power_w=rng.choice(_MAX_POWERS_W),
            online=not (fleet_size >= 3 and index == fleet_size - 1),
            reject_remote_start=fleet_size >= 3 and index == fleet_size - 2,
        )
        for connector_id in range(1, rng.choice((1, 2)) + 1):
            evse = (charge_box_id, connector_id)
            station.connectors[connector_id] = Connector(
                evse, register_wh=rng.uniform(150_000, 900_000)
            )
        silent_for = timedelta(seconds=rng.uniform(0, 60))
        heartbeat = now - (silent_for if station.online else OFFLINE_SINCE)
        store.add_charge_box(charge_box_id, heartbeat)
        stations[charge_box_id] = station
    return stations


@dataclass
class _TagPools:
    """The tags, grouped by what the history may use them for.

    Every fourth ``TAG-nnnn`` is a fleet card: no user, unlimited concurrent
    transactions. User 1's tags (``TAG-0001``, ``TAG-0002``) never have an active
    transaction at reset, so a remote start with them is always allowed.
    """

    user_tags: list[str]
    fleet_cards: list[str]

    @classmethod
    def create(cls, store: FleetStore, fleet_size: int, now: datetime) -> _TagPools:
        """Insert the tags (plus a blocked and an expired one) and pool them."""
        pools = cls([], [])
        # Two per charge point, and at least one fleet card even in tiny fleets.
        for number in range(1, max(2 * fleet_size, 4) + 1):
            id_tag = f"TAG-{number:04d}"
            if number % 4 == 0:
                store.add_tag(
                    id_tag, max_active_transaction_count=-1, note="Fleet card"
                )
                pools.fleet_cards.append(id_tag)
            else:
                parent = "TAG-0001" if number == 2 else None
                store.add_tag(id_tag, user_pk=(number + 1) // 2, parent_id_tag=parent)
                pools.user_tags.append(id_tag)
        store.add_tag(
            BLOCKED_TAG, user_pk=1, max_active_transaction_count=0, note="Reported lost"
        )
        store.add_tag(EXPIRED_TAG, user_pk=2, expiry_date=now - timedelta(days=30))
        return pools

    @property
    def any(self) -> list[str]:
        """Tags a finished history session may have used."""
        return self.user_tags + self.fleet_cards

    def for_charging(self, taken: set[str]) -> list[str]:
        """Tags that may start one more concurrent session."""
        users = [t for t in self.user_tags[2:] if t not in taken]
        return users + self.fleet_cards

    def fleet_card(self, index: int) -> str:
        """A tag without a concurrency limit, for transactions left active."""
        return self.fleet_cards[index % len(self.fleet_cards)]


def _regular_plans(
    rng: random.Random, stations: dict[str, Station], tags: _TagPools, now: datetime
) -> list[SessionPlan]:
    """Finished sessions over the last three days plus a few charging right now."""
    plans: list[SessionPlan] = []
    taken: set[str] = set()
    for station in stations.values():
        until = now - (_QUIET_BEFORE_NOW if station.online else OFFLINE_SINCE)
        for connector in station.connectors.values():
            plans += _finished_sessions(rng, station, connector, tags, now, until)
            if not station.online or rng.random() >= 0.4:
                continue
            candidates = tags.for_charging(taken)
            if candidates:
                id_tag = rng.choice(candidates)
                taken.add(id_tag)
                start = now - timedelta(minutes=rng.uniform(10, 80))
                plans.append(
                    _charging_plan(rng, station, connector.evse, id_tag, start, now)
                )
    return plans


def _finished_sessions(
    rng: random.Random,
    station: Station,
    connector: Connector,
    tags: _TagPools,
    now: datetime,
    until: datetime,
) -> list[SessionPlan]:
    plans: list[SessionPlan] = []
    cursor = now - HISTORY + timedelta(minutes=rng.uniform(0, 240))
    while True:
        start = cursor + timedelta(minutes=rng.uniform(45, 540))
        duration = timedelta(minutes=rng.uniform(20, 180))
        if start + duration > until:
            return plans
        plans.append(
            SessionPlan(
                evse=connector.evse,
                id_tag=rng.choice(tags.any),
                start=start,
                duration=duration,
                session=_new_session(rng, station),
                stop_reason=rng.choice(_STOP_REASONS),
            )
        )
        cursor = start + duration


def _charging_plan(
    rng: random.Random,
    station: Station,
    evse: EvseKey,
    id_tag: str,
    start: datetime,
    now: datetime,
    scenario: str | None = None,
) -> SessionPlan:
    session = _new_session(rng, station)
    session.remaining_s = rng.uniform(10, 90) * 60
    return SessionPlan(
        evse=evse,
        id_tag=id_tag,
        start=start,
        duration=now - start,
        session=session,
        ending=Ending.STILL_CHARGING,
        stop_reason=None,
        scenario=scenario,
    )


def _new_session(rng: random.Random, station: Station) -> ChargingSession:
    # transaction_pk is known once SteVe stored the start (see _record).
    return ChargingSession(
        transaction_pk=0,
        power_w=station.session_power(rng),
        soc=rng.uniform(15, 60),
        remaining_s=None,
    )


class _Scenarios:
    """The CONTRACT §11 cases, each in its own time slot so they never collide.

    Scenarios needing a particular meter profile (kWh, per phase) are left out
    when no online station has it.
    """

    def __init__(
        self,
        rng: random.Random,
        stations: dict[str, Station],
        tags: _TagPools,
        now: datetime,
    ) -> None:
        self._rng = rng
        self._online = [s for s in stations.values() if s.online]
        self._tags = tags
        self._now = now

    def plans(self) -> list[SessionPlan]:
        """Return the scenario sessions, tagged with their scenario names."""
        now, tags = self._now, self._tags
        user_tag = tags.user_tags[-1]
        first = self._online[0]
        manual = _charging_plan(
            self._rng,
            first,
            (first.charge_box_id, 1),
            tags.fleet_card(1),
            now - timedelta(minutes=50),
            now,
            scenario="manual_stop_replaced",
        )
        manual.manual_stop = True
        # In live mode the station's own stop replaces the manual one within
        # minutes, so a demo shows it happen.
        manual.session.remaining_s = self._rng.uniform(2, 5) * 60
        meter_reset = self._plan("meter_reset", 3, 16, 120, user_tag)
        meter_reset.meter_drop = True
        late = self._plan("late_offline_start", 4, 8, 45, user_tag, reason="Local")
        # Arrives after every other history session, so it gets the highest pk.
        late.received = now - timedelta(minutes=1)
        return [
            manual,
            self._plan("zombie", 2, 40, 60, tags.fleet_card(0), Ending.LOST_STOP),
            self._plan("zombie", 2, 38, 50, user_tag),
            self._plan(
                "negative_stop_left_active",
                3,
                30,
                70,
                tags.fleet_card(1),
                Ending.INVALID_STOP,
            ),
            self._plan(
                "unknown_tag", 1, 12, 2, self._unknown_tag(), reason="DeAuthorized"
            ),
            self._plan("deleted", 0, 20, 40, user_tag),
            meter_reset,
            late,
            *self._profile_plans(user_tag),
        ]

    def _profile_plans(self, id_tag: str) -> list[SessionPlan]:
        plans = []
        kwh = [s for s in self._online if s.profile.energy_unit == "kWh"]
        if kwh:
            plans.append(self._plan("kwh_readings", 0, 26, 60, id_tag, station=kwh[0]))
        phased = [s for s in self._online if s.profile.per_phase]
        if phased:
            plans.append(self._plan("per_phase", 0, 24, 60, id_tag, station=phased[0]))
        return plans

    def _plan(
        self,
        scenario: str,
        station_index: int,
        hours_ago: float,
        minutes: float,
        id_tag: str,
        ending: Ending = Ending.STATION_STOP,
        *,
        reason: str = "EVDisconnected",
        station: Station | None = None,
    ) -> SessionPlan:
        chosen = station or self._online[station_index % len(self._online)]
        return SessionPlan(
            evse=(chosen.charge_box_id, 1),
            id_tag=id_tag,
            start=self._now - timedelta(hours=hours_ago),
            duration=timedelta(minutes=minutes),
            session=_new_session(self._rng, chosen),
            ending=ending,
            stop_reason=reason,
            scenario=scenario,
        )

    def _unknown_tag(self) -> str:
        """An RFID UID SteVe has never seen, as a real card would show up."""
        return "04" + "".join(self._rng.choice("0123456789ABCDEF") for _ in range(12))


def _run_meters(
    rng: random.Random,
    stations: dict[str, Station],
    plans: list[SessionPlan],
) -> None:
    """Advance each connector's register through its sessions in time order."""
    for plan in sorted(plans, key=lambda p: p.start):
        station = stations[plan.evse[0]]
        connector = station.connectors[plan.evse[1]]
        connector.register_wh = _run_meter(rng, station, connector.register_wh, plan)


def _run_meter(
    rng: random.Random, station: Station, register_wh: float, plan: SessionPlan
) -> float:
    """Fill the plan's start/stop values and readings; return the new register."""
    profile, session = station.profile, plan.session
    plan.start_value = int(register_wh)
    plan.readings = profile.readings(
        plan.start,
        register_wh=register_wh,
        power_w=0,
        soc=session.soc,
        context="Transaction.Begin",
    )
    drop_at = plan.start + plan.duration / 2 if plan.meter_drop else None
    moment = plan.start
    while moment < plan.end:
        step = min(SAMPLE_INTERVAL, plan.end - moment)
        moment += step
        register_wh += session.charge(step.total_seconds(), rng)
        if drop_at is not None and moment >= drop_at:
            # A reboot restored an older register checkpoint: the value falls
            # mid-session and then rises again (the meter_reset scenario).
            register_wh -= 0.4 * (register_wh - plan.start_value)
            drop_at = None
        if step == SAMPLE_INTERVAL or plan.ending is Ending.STILL_CHARGING:
            plan.readings += profile.readings(
                moment,
                register_wh=register_wh,
                power_w=session.power_w,
                soc=session.soc,
            )
    if plan.ending in (Ending.STATION_STOP, Ending.INVALID_STOP):
        plan.readings += profile.readings(
            plan.end,
            register_wh=register_wh,
            power_w=0,
            soc=session.soc,
            context="Transaction.End",
        )
    plan.stop_value = int(register_wh)
    return register_wh


def _record(
    store: FleetStore,
    stations: dict[str, Station],
    plans: list[SessionPlan],
    now: datetime,
) -> None:
    """Store the plans in the order SteVe received them, then apply manual stops."""
    for plan in sorted(plans, key=lambda p: p.received or p.start):
        station = stations[plan.evse[0]]
        received = plan.received or plan.start
        record = store.record_start(
            evse=plan.evse,
            id_tag=plan.id_tag,
            start_timestamp=plan.start,
            start_value=plan.start_value,
            event_timestamp=received,
        )
        plan.session.transaction_pk = record.pk
        filed_under = record.pk if station.profile.sends_transaction_id else None
        store.record_readings(plan.evse, filed_under, plan.readings)
        _finish(store, station, plan, max(plan.end, received))
    for plan in plans:
        if plan.manual_stop:
            store.manual_stop(plan.session.transaction_pk, now)


def _finish(
    store: FleetStore, station: Station, plan: SessionPlan, received: datetime
) -> None:
    """Apply what happened at the end of the session."""
    if plan.ending is Ending.STILL_CHARGING:
        station.connectors[plan.evse[1]].session = plan.session
        return
    if plan.ending is Ending.LOST_STOP:
        return
    stop_value = plan.stop_value
    if plan.ending is Ending.INVALID_STOP:
        stop_value -= plan.start_value
    store.record_station_stop(
        transaction_pk=plan.session.transaction_pk,
        charge_box_id=station.charge_box_id,
        stop_timestamp=plan.end,
        stop_value=stop_value,
        stop_reason=plan.stop_reason,
        event_timestamp=received,
    )
