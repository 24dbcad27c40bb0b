"""The simulated fleet behind the stand-in: SteVe plus the stations it manages.

``Fleet`` is what the HTTP layer talks to. It answers REST reads as SteVe's
repositories do (``store.py``), runs SteVe's pre-checks for the OCPP operations
before handing them to the stations (``simulation.py``), and moves time forward.
Every public method takes one lock, so request threads and the live ticker never
see a half-applied change. Pure Python: no Django, no I/O.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sync.standin.history import seed_fleet
from sync.standin.records import (
    BadRequest,
    OperationResult,
    Reading,
    Reservation,
    TagQuery,
    TagRow,
    TransactionDetails,
    TransactionQuery,
    TransactionRow,
)
from sync.standin.simulation import Simulation, TickReport, UnknownStation
from sync.standin.snapshot import simulation_snapshot
from sync.standin.stations import Station
from sync.standin.timestamps import utc_now

logger = logging.getLogger(__name__)

TAG_NOT_ELIGIBLE = (
    "Requested OCPP Tag is not eligible for this operation. "
    "Ensure that the OCPP Tag is registered and active."
)
NO_ELIGIBLE_STATIONS = (
    "No stations are eligible for communication. "
    "Ensure that the chargeBox IDs are correct and the stations are online."
)


class Fleet:
    """A deterministic, thread-safe SteVe plus the charge points it manages.

    The OCPP operation methods take ``answered``: False models a station that
    never replies (the timeout fault), so SteVe's own side effects happen and
    the station's do not.
    """

    def __init__(
        self,
        *,
        fleet_size: int = 6,
        seed: int = 1,
        scenarios: bool = True,
        start_delay: float = 3.0,
        first_transaction_pk: int = 1,
    ) -> None:
        self._lock = threading.RLock()
        self._start_delay = start_delay
        self._first_transaction_pk = first_transaction_pk
        self._simulation = self._seeded(fleet_size, seed, scenarios)

    def reset(self, *, fleet_size: int, seed: int, scenarios: bool) -> None:
        """Replace the whole fleet and its history with a freshly seeded one."""
        simulation = self._seeded(fleet_size, seed, scenarios)
        with self._lock:
            self._simulation = simulation

    def _seeded(self, fleet_size: int, seed: int, scenarios: bool) -> Simulation:
        seeded = seed_fleet(
            fleet_size=fleet_size,
            seed=seed,
            scenarios=scenarios,
            now=utc_now(),
            first_transaction_pk=self._first_transaction_pk,
        )
        logger.info(
            "Seeded fleet: %s charge boxes, %s transactions (seed=%s)",
            len(seeded.stations),
            len(seeded.store.transactions),
            seed,
        )
        return Simulation(seeded, seed=seed, start_delay=self._start_delay)

    # -- SteVe REST reads and the manual stop -------------------------------------

    def transactions(self, query: TransactionQuery) -> list[TransactionRow]:
        """``GET /transactions``: every match, newest pk first."""
        with self._lock:
            return self._simulation.store.transaction_rows(query, utc_now())

    def transaction_details(
        self, pk: int, *, energy_values_only: bool
    ) -> TransactionDetails:
        """``GET /transactions/{pk}``. Raises ``NotFound``."""
        with self._lock:
            store = self._simulation.store
            return store.details(pk, energy_values_only=energy_values_only)

    def stop_manually(self, pk: int) -> None:
        """``PATCH /transactions/{pk}/stop``: bookkeeping only, the station is not
        told (CONTRACT §6). Raises ``NotFound``."""
        with self._lock:
            self._simulation.store.manual_stop(pk, utc_now())

    def tags(self, query: TagQuery) -> list[TagRow]:
        """``GET /ocppTags``."""
        with self._lock:
            return self._simulation.store.tag_rows(query, utc_now())

    # -- OCPP operations: SteVe's pre-checks, then the station's answer -------------

    def remote_start(
        self,
        charge_box_id: str,
        *,
        id_tag: str,
        connector_id: int | None,
        charging_profile_pk: int | None,
        answered: bool = True,
    ) -> OperationResult:
        """RemoteStartTransaction; an accepted start begins after ``start_delay``
        seconds of ticks. Raises ``BadRequest`` for the §7 pre-checks."""
        now = utc_now()
        with self._lock:
            simulation = self._simulation
            if not simulation.store.tag_authorizes(id_tag, now, check_limit=True):
                raise BadRequest(TAG_NOT_ELIGIBLE)
            if charging_profile_pk is not None:
                # The stand-in has no charging profiles, so every pk is unknown.
                raise BadRequest("chargingProfilePk is unknown.")
            station = self._reachable(charge_box_id)
            return simulation.send(
                [station],
                answered,
                lambda s: simulation.answer_remote_start(s, connector_id, id_tag, now),
            )

    def remote_stop(
        self, charge_box_id: str, *, transaction_id: int, answered: bool = True
    ) -> OperationResult:
        """RemoteStopTransaction of a transaction SteVe lists as active at this
        box; the station stops it at once. Raises ``BadRequest``."""
        now = utc_now()
        with self._lock:
            simulation = self._simulation
            active = simulation.store.active_transaction_pks(charge_box_id)
            if transaction_id not in active:
                raise BadRequest("This transaction is not active at this station.")
            station = self._reachable(charge_box_id)
            return simulation.send(
                [station],
                answered,
                lambda s: simulation.answer_remote_stop(s, transaction_id, now),
            )

    def reserve_now(
        self,
        charge_box_id: str,
        *,
        connector_id: int,
        expiry: datetime,
        id_tag: str,
        answered: bool = True,
    ) -> OperationResult:
        """ReserveNow: SteVe inserts a WAITING row before sending; Accepted makes
        it ACCEPTED, any other answer deletes it, a timeout leaves it WAITING."""
        now = utc_now()
        with self._lock:
            simulation = self._simulation
            store = simulation.store
            if not store.tag_authorizes(id_tag, now, check_limit=False):
                raise BadRequest(TAG_NOT_ELIGIBLE)
            station = self._reachable(charge_box_id)
            reservation = Reservation(
                pk=store.new_reservation_pk(),
                evse=(charge_box_id, connector_id),
                id_tag=id_tag,
                start_datetime=now,
                expiry_datetime=expiry,
                status="WAITING",
                status_timestamp=now,
            )
            store.reservations[reservation.pk] = reservation

            def answer(station: Station) -> str:
                status = simulation.answer_reserve_now(station, connector_id, now)
                if status == "Accepted":
                    reservation.status, reservation.status_timestamp = "ACCEPTED", now
                else:
                    del store.reservations[reservation.pk]
                return status

            return simulation.send([station], answered, answer)

    def cancel_reservation(
        self, charge_box_id: str, *, reservation_id: int, answered: bool = True
    ) -> OperationResult:
        """CancelReservation of an ACCEPTED, unexpired reservation at this box."""
        now = utc_now()
        with self._lock:
            simulation = self._simulation
            reservation = simulation.store.reservations.get(reservation_id)
            if (
                reservation is None
                or reservation.evse[0] != charge_box_id
                or not reservation.is_active(now)
            ):
                raise BadRequest("This reservation is not active at this station.")
            station = self._reachable(charge_box_id)

            def answer(_: Station) -> str:
                reservation.status, reservation.status_timestamp = "CANCELLED", now
                return "Accepted"

            return simulation.send([station], answered, answer)

    def trigger_message(
        self,
        charge_box_ids: Iterable[str],
        *,
        message: str,
        connector_id: int | None,
        answered: bool = True,
    ) -> OperationResult:
        """TriggerMessage to every online station of the list; offline and unknown
        ones are skipped, as SteVe's ``fetchChargePoints`` does."""
        now = utc_now()
        with self._lock:
            simulation = self._simulation
            reachable = [
                station
                for box in dict.fromkeys(charge_box_ids)
                if (station := simulation.stations.get(box)) and station.online
            ]
            if not reachable:
                raise BadRequest(NO_ELIGIBLE_STATIONS)
            return simulation.send(
                reachable,
                answered,
                lambda s: simulation.answer_trigger(s, message, connector_id, now),
            )

    def _reachable(self, charge_box_id: str) -> Station:
        """``prepareAndCheck``: only connected stations can be sent to (§7)."""
        station = self._simulation.stations.get(charge_box_id)
        if station is None or not station.online:
            raise BadRequest(NO_ELIGIBLE_STATIONS)
        return station

    # -- station-originated events (the control API) -------------------------------

    def start_transaction(
        self,
        *,
        charge_box_id: str,
        connector_id: int,
        id_tag: str,
        start_timestamp: datetime | None = None,
        start_value: int | None = None,
    ) -> int:
        """The station sends StartTransaction and charges until stopped.

        No readings are recorded: the caller sends exactly the MeterValues it
        wants. A session already running on that connector is abandoned, which
        makes it a zombie. Raises ``UnknownStation``.
        """
        now = utc_now()
        with self._lock:
            station, connector = self._simulation.connector(charge_box_id, connector_id)
            if start_value is not None:
                connector.register_wh = float(start_value)
            session = self._simulation.begin_session(
                station, connector, id_tag, now, started_at=start_timestamp
            )
            return session.transaction_pk

    def add_readings(
        self, pk: int, readings: Iterable[tuple[Reading, bool]]
    ) -> tuple[int, int]:
        """MeterValues on transaction ``pk``'s connector; each flag says whether
        the station named the transaction. Returns (stored, dropped).

        Since 3.12 SteVe drops readings naming a station-stopped transaction
        (CONTRACT §11). Raises ``NotFound``.
        """
        with self._lock:
            simulation = self._simulation
            record = simulation.store.transaction(pk)
            _, connector = simulation.connector(*record.evse)
            stopped_by_station = (
                record.stop is not None and record.stop.actor == "station"
            )
            stored = dropped = 0
            for reading, names_transaction in readings:
                if names_transaction and stopped_by_station:
                    dropped += 1
                    continue
                filed_under = pk if names_transaction else None
                simulation.store.record_readings(record.evse, filed_under, [reading])
                simulation.follow_register(connector, pk, reading)
                stored += 1
            return stored, dropped

    def stop_by_station(
        self,
        pk: int,
        *,
        stop_value: int | None = None,
        stop_timestamp: datetime | None = None,
        stop_reason: str | None = "Local",
    ) -> str | None:
        """The station sends StopTransaction for ``pk`` and considers it over.

        ``stop_value`` defaults to the connector's register when the station is
        running ``pk``, else to the start value. Returns None when SteVe stored
        the stop, else why it was refused (§11). Raises ``NotFound``.
        """
        now = utc_now()
        with self._lock:
            simulation = self._simulation
            record = simulation.store.transaction(pk)
            running = simulation.running(pk)
            if running is not None:
                connector, _ = running
                connector.session = None
                default_value = int(connector.register_wh)
            else:
                default_value = int(record.start_value)
            return simulation.store.record_station_stop(
                transaction_pk=pk,
                charge_box_id=record.evse[0],
                stop_timestamp=stop_timestamp or now,
                stop_value=default_value if stop_value is None else stop_value,
                stop_reason=stop_reason,
                event_timestamp=now,
            )

    def delete_transaction(self, pk: int) -> bool:
        """Remove ``pk`` as SteVe's FK cascade would; returns whether it existed."""
        with self._lock:
            running = self._simulation.running(pk)
            if running is not None:
                running[0].session = None
            return self._simulation.store.delete_transaction(pk)

    def configure_station(
        self,
        charge_box_id: str,
        *,
        online: bool | None = None,
        reject_remote_start: bool | None = None,
        trigger_answer: str | None = None,
    ) -> None:
        """Connect or disconnect a station, make it reject remote starts, or set
        how it answers TriggerMessage (Accepted, Rejected or NotImplemented).

        Coming online counts as a BootNotification, which sets the heartbeat.
        Raises ``UnknownStation``.
        """
        with self._lock:
            station = self._simulation.stations.get(charge_box_id)
            if station is None:
                raise UnknownStation(f"Unknown charge box {charge_box_id!r}")
            if online and not station.online:
                self._simulation.heartbeat(station, utc_now())
            if online is not None:
                station.online = online
            if reject_remote_start is not None:
                station.reject_remote_start = reject_remote_start
            if trigger_answer is not None:
                station.trigger_answer = trigger_answer

    # -- time and inspection --------------------------------------------------------

    def tick(self, seconds: float, *, autonomous: bool = False) -> TickReport:
        """Advance the fleet by ``seconds`` of charging, stamped with the real clock.

        Sessions on online stations gain energy and report a sample (every 10 s
        when ``autonomous``, else once per tick); due remote starts begin. Only
        ``autonomous`` ticks (live mode) end sessions, plug in new drivers and
        send heartbeats, so tests stay in control. Offline stations are paused.
        """
        with self._lock:
            return self._simulation.tick(seconds, utc_now(), autonomous=autonomous)

    def snapshot(self) -> dict[str, Any]:
        """The control API's view of the whole simulation."""
        with self._lock:
            return simulation_snapshot(self._simulation, utc_now())


class LiveTicker:
    """Live mode: a daemon thread that ticks the fleet once a second."""

    def __init__(self, fleet: Fleet, interval_s: float = 1.0) -> None:
        self._fleet = fleet
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="standin-live", daemon=True
        )

    def start(self) -> None:
        """Start ticking in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and wait for the thread to finish its current tick."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._fleet.tick(self._interval_s, autonomous=True)
            except Exception:
                # One bad tick must not end the demo's activity for good.
                logger.exception("Live tick failed")
