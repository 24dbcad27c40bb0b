"""The station side of the fleet: sessions, meters and answers to OCPP calls.

``Simulation`` owns one seeded fleet: SteVe's database (``store``) and the
stations that report into it. It decides what a station answers and what it
sends on its own (StartTransaction, MeterValues, StopTransaction, heartbeats).
Not thread-safe: ``Fleet`` calls it under its lock.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sync.standin.history import SeededFleet
from sync.standin.records import (
    SAMPLE_PERIODIC,
    CallError,
    EvseKey,
    OperationResult,
    Reading,
    Reservation,
)
from sync.standin.stations import ChargingSession, Connector, PendingStart, Station
from sync.standin.store import tag_key

logger = logging.getLogger(__name__)

# Live sessions send a MeterValues.req every 10 s of charging.
SAMPLE_INTERVAL_S = 10.0
HEARTBEAT_INTERVAL_S = 60.0
# Live mode: the chance per second that a driver plugs in at an idle connector.
_PLUG_IN_PER_SECOND = 1 / 1800


class UnknownStation(LookupError):
    """A charge box or connector the fleet does not have."""


@dataclass(frozen=True)
class TickReport:
    """Transactions started and stopped by one tick."""

    started: tuple[int, ...]
    stopped: tuple[int, ...]


class Simulation:
    """One seeded fleet and the clock that drives it."""

    def __init__(self, seeded: SeededFleet, *, seed: int, start_delay: float) -> None:
        self.store = seeded.store
        self.stations = seeded.stations
        self.scenarios = seeded.scenarios
        self.pending: list[PendingStart] = []
        self._rng = random.Random(seed)
        self._start_delay = start_delay
        self._elapsed_s = 0.0
        self._task_ids = itertools.count(1)

    # -- lookups ------------------------------------------------------------------

    def connector(
        self, charge_box_id: str, connector_id: int
    ) -> tuple[Station, Connector]:
        """Return a station and one of its connectors. Raises ``UnknownStation``."""
        station = self.stations.get(charge_box_id)
        connector = station.connectors.get(connector_id) if station else None
        if station is None or connector is None:
            raise UnknownStation(f"Unknown connector {charge_box_id}/{connector_id}")
        return station, connector

    def online_stations(self) -> list[Station]:
        """The stations that are connected to SteVe right now."""
        return [s for s in self.stations.values() if s.online]

    def running(self, pk: int) -> tuple[Connector, ChargingSession] | None:
        """The connector whose station is charging transaction ``pk``, if any."""
        for station in self.stations.values():
            for connector in station.connectors.values():
                session = connector.session
                if session is not None and session.transaction_pk == pk:
                    return connector, session
        return None

    # -- answers to OCPP operations -------------------------------------------------

    def send(
        self,
        stations: list[Station],
        answered: bool,
        answer: Callable[[Station], str | CallError],
    ) -> OperationResult:
        """Deliver an operation; unanswered means SteVe's wait times out."""
        task_id = next(self._task_ids)
        if not answered:
            return OperationResult(task_id, finished=False)
        answers = [(s.charge_box_id, answer(s)) for s in stations]
        return OperationResult(
            task_id,
            finished=True,
            responses=tuple((box, a) for box, a in answers if isinstance(a, str)),
            call_errors=tuple(
                (box, a.code) for box, a in answers if isinstance(a, CallError)
            ),
        )

    def answer_remote_start(
        self, station: Station, connector_id: int | None, id_tag: str, now: datetime
    ) -> str:
        """Accept when a connector is free; the start follows ``start_delay`` later.

        connectorId 0 or null: SteVe sends none and the station picks (§7).
        """
        if station.reject_remote_start:
            return "Rejected"
        connectors = station.idle_connectors()
        if connector_id:
            connectors = [c for c in connectors if c.evse[1] == connector_id]
        pending = {p.evse for p in self.pending}
        for connector in connectors:
            if connector.evse not in pending and not self._reserved_for_other(
                connector.evse, id_tag, now
            ):
                due = self._elapsed_s + self._start_delay
                self.pending.append(PendingStart(connector.evse, id_tag, due))
                return "Accepted"
        return "Rejected"

    def answer_remote_stop(self, station: Station, pk: int, now: datetime) -> str:
        """Stop the session right away (reason ``Remote``) if this station runs it."""
        running = self.running(pk)
        if running is None or running[0].evse[0] != station.charge_box_id:
            # SteVe still lists it as active, but the station is not running it:
            # a zombie, or a transaction whose StopTransaction was refused.
            return "Rejected"
        self.end_session(station, *running, now, "Remote")
        return "Accepted"

    def answer_reserve_now(
        self, station: Station, connector_id: int, now: datetime
    ) -> str:
        """Accepted when the connector (any, for 0) is free, else Occupied."""
        if connector_id == 0:
            connectors = list(station.connectors.values())
        elif connector_id in station.connectors:
            connectors = [station.connectors[connector_id]]
        else:
            return "Rejected"
        if any(
            c.session is None and not self._reserved(c.evse, now) for c in connectors
        ):
            return "Accepted"
        return "Occupied"

    def answer_trigger(
        self, station: Station, message: str, connector_id: int | None, now: datetime
    ) -> str | CallError:
        """Accept the trigger; a Heartbeat or BootNotification follows at once.

        A station set to reject triggers answers Rejected, one without the
        RemoteTrigger feature a NotImplemented CallError; neither sends anything.
        """
        if station.trigger_answer == "NotImplemented":
            return CallError("NotImplemented")
        if station.trigger_answer == "Rejected":
            return "Rejected"
        if connector_id is not None and connector_id not in station.connectors:
            return "Rejected"
        if message in ("Heartbeat", "BootNotification"):
            self.heartbeat(station, now)
        return "Accepted"

    def heartbeat(self, station: Station, now: datetime) -> None:
        """SteVe stores server time as the last heartbeat (CONTRACT §9)."""
        self.store.charge_boxes[station.charge_box_id].last_heartbeat = now

    def _active_reservations(self, evse: EvseKey, now: datetime) -> list[Reservation]:
        """Active reservations of this connector or of its whole station (id 0)."""
        whole_station = (evse[0], 0)
        return [
            r
            for r in self.store.reservations.values()
            if r.evse in (evse, whole_station) and r.is_active(now)
        ]

    def _reserved(self, evse: EvseKey, now: datetime) -> bool:
        return bool(self._active_reservations(evse, now))

    def _reserved_for_other(self, evse: EvseKey, id_tag: str, now: datetime) -> bool:
        return any(r.id_tag != id_tag for r in self._active_reservations(evse, now))

    # -- sessions -------------------------------------------------------------------

    def begin_session(
        self,
        station: Station,
        connector: Connector,
        id_tag: str,
        now: datetime,
        *,
        started_at: datetime | None = None,
        remaining_s: float | None = None,
    ) -> ChargingSession:
        """StartTransaction: SteVe records it and a matching reservation is used.

        A session already running on the connector is abandoned without a
        StopTransaction, which is how zombies arise.
        """
        record = self.store.record_start(
            evse=connector.evse,
            id_tag=id_tag,
            start_timestamp=started_at or now,
            start_value=int(connector.register_wh),
            event_timestamp=now,
        )
        for reservation in self._active_reservations(connector.evse, now):
            if tag_key(reservation.id_tag) == tag_key(id_tag):
                reservation.status, reservation.status_timestamp = "USED", now
                reservation.transaction_pk = record.pk
                break
        session = ChargingSession(
            transaction_pk=record.pk,
            power_w=station.session_power(self._rng),
            soc=self._rng.uniform(15, 60),
            remaining_s=remaining_s,
        )
        connector.session = session
        return session

    def plug_in(
        self,
        station: Station,
        connector: Connector,
        id_tag: str,
        now: datetime,
        remaining_s: float,
    ) -> int:
        """A driver starts charging: StartTransaction plus a Transaction.Begin
        reading; in live mode the session ends by itself after ``remaining_s``."""
        session = self.begin_session(
            station, connector, id_tag, now, remaining_s=remaining_s
        )
        self._sample(station, connector, session, now, "Transaction.Begin")
        return session.transaction_pk

    def end_session(
        self,
        station: Station,
        connector: Connector,
        session: ChargingSession,
        now: datetime,
        reason: str,
    ) -> None:
        """The station ends its session and sends StopTransaction."""
        connector.session = None
        self._sample(station, connector, session, now, "Transaction.End")
        failure = self.store.record_station_stop(
            transaction_pk=session.transaction_pk,
            charge_box_id=station.charge_box_id,
            stop_timestamp=now,
            stop_value=int(connector.register_wh),
            stop_reason=reason,
            event_timestamp=now,
        )
        if failure is not None:
            logger.info(
                "tx=%s station stop refused: %s", session.transaction_pk, failure
            )

    def follow_register(self, connector: Connector, pk: int, reading: Reading) -> None:
        """Keep the simulated register in line with a total-energy reading the
        control API injected for the running session."""
        session = connector.session
        running = session is not None and session.transaction_pk == pk
        if running and reading.phase is None and reading.is_energy_value():
            connector.register_wh = reading.wh()

    def _sample(
        self,
        station: Station,
        connector: Connector,
        session: ChargingSession,
        at: datetime,
        context: str = SAMPLE_PERIODIC,
    ) -> None:
        readings = station.profile.readings(
            at,
            register_wh=connector.register_wh,
            power_w=session.power_w,
            soc=session.soc,
            context=context,
        )
        pk = session.transaction_pk if station.profile.sends_transaction_id else None
        self.store.record_readings(connector.evse, pk, readings)

    # -- time -----------------------------------------------------------------------

    def tick(self, seconds: float, now: datetime, *, autonomous: bool) -> TickReport:
        """Advance by ``seconds`` of charging, stamped ``now``; see ``Fleet.tick``."""
        self._elapsed_s += seconds
        stopped = self._advance_sessions(seconds, now, autonomous)
        started = self._start_due_remote_starts(now)
        if autonomous:
            started += self._plug_in_drivers(seconds, now)
            self._send_heartbeats(seconds, now)
        return TickReport(tuple(started), tuple(stopped))

    def _advance_sessions(
        self, seconds: float, now: datetime, autonomous: bool
    ) -> list[int]:
        stopped: list[int] = []
        if seconds <= 0:
            return stopped
        for station in self.online_stations():
            for connector in station.connectors.values():
                session = connector.session
                if session is None:
                    continue
                connector.register_wh += session.charge(seconds, self._rng)
                session.since_sample_s += seconds
                if session.since_sample_s >= SAMPLE_INTERVAL_S or not autonomous:
                    session.since_sample_s = 0.0
                    self._sample(station, connector, session, now)
                if autonomous and session.remaining_s is not None:
                    session.remaining_s -= seconds
                    if session.remaining_s <= 0:
                        self.end_session(
                            station, connector, session, now, "EVDisconnected"
                        )
                        stopped.append(session.transaction_pk)
        return stopped

    def _start_due_remote_starts(self, now: datetime) -> list[int]:
        due = [p for p in self.pending if p.due_at_s <= self._elapsed_s]
        self.pending = [p for p in self.pending if p.due_at_s > self._elapsed_s]
        started = []
        for pending in due:
            station, connector = self.connector(*pending.evse)
            if connector.session is None and station.online:
                remaining = self._rng.uniform(20, 90) * 60
                started.append(
                    self.plug_in(station, connector, pending.id_tag, now, remaining)
                )
        return started

    def _plug_in_drivers(self, seconds: float, now: datetime) -> list[int]:
        started = []
        for station in self.online_stations():
            for connector in station.idle_connectors():
                if self._rng.random() >= seconds * _PLUG_IN_PER_SECOND:
                    continue
                allowed = [
                    tag
                    for tag in (record.id_tag for record in self.store.tags.values())
                    if self.store.tag_authorizes(tag, now, check_limit=True)
                    and not self._reserved_for_other(connector.evse, tag, now)
                ]
                if allowed:
                    id_tag = self._rng.choice(allowed)
                    remaining = self._rng.uniform(15, 90) * 60
                    started.append(
                        self.plug_in(station, connector, id_tag, now, remaining)
                    )
        return started

    def _send_heartbeats(self, seconds: float, now: datetime) -> None:
        for station in self.online_stations():
            station.since_heartbeat_s += seconds
            if station.since_heartbeat_s >= HEARTBEAT_INTERVAL_S:
                station.since_heartbeat_s = 0.0
                self.heartbeat(station, now)
