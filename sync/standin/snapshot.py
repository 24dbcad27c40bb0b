"""``GET /_standin/state``: everything the simulation knows, as JSON.

This includes what SteVe's REST API hides (connection state, heartbeats,
reservations, refused stops) and the scenario pks tests look up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sync.standin.simulation import Simulation
from sync.standin.stations import Station
from sync.standin.store import tag_key
from sync.standin.timestamps import format_timestamp


def simulation_snapshot(simulation: Simulation, now: datetime) -> dict[str, Any]:
    """Render the whole simulation; call it under the fleet's lock."""
    store = simulation.store
    active = store.active_counts()
    return {
        "now": format_timestamp(now),
        "chargeBoxes": [
            _charge_box(simulation, station) for station in simulation.stations.values()
        ],
        "tags": [
            {
                "idTag": tag.id_tag,
                "ocppTagPk": tag.pk,
                "userId": tag.user_pk,
                "blocked": tag.blocked,
                "expired": tag.is_expired(now),
                "maxActiveTransactionCount": tag.max_active_transaction_count,
                "activeTransactionCount": active.get(tag_key(tag.id_tag), 0),
            }
            for tag in store.tags.values()
        ],
        "transactions": [
            {
                "id": record.pk,
                "chargeBoxId": record.evse[0],
                "connectorId": record.evse[1],
                "idTag": record.id_tag,
                "active": record.is_active,
                "startValue": record.start_value,
                "stopValue": record.stop.stop_value if record.stop else None,
                "stopEventActor": record.stop.actor if record.stop else None,
                "stopReason": record.stop.stop_reason if record.stop else None,
            }
            for record in store.transactions.values()
        ],
        "reservations": [
            {
                "reservationId": reservation.pk,
                "chargeBoxId": reservation.evse[0],
                "connectorId": reservation.evse[1],
                "idTag": reservation.id_tag,
                "status": reservation.status,
                "expiry": format_timestamp(reservation.expiry_datetime),
                "transactionPk": reservation.transaction_pk,
            }
            for reservation in store.reservations.values()
        ],
        "pendingRemoteStarts": [
            {"chargeBoxId": p.evse[0], "connectorId": p.evse[1], "idTag": p.id_tag}
            for p in simulation.pending
        ],
        "failedStops": [
            {
                "transactionPk": failed.transaction_pk,
                "stopValue": failed.stop_value,
                "failReason": failed.fail_reason,
            }
            for failed in store.failed_stops
        ],
        "scenarios": {name: list(pks) for name, pks in simulation.scenarios.items()},
    }


def _charge_box(simulation: Simulation, station: Station) -> dict[str, Any]:
    box = simulation.store.charge_boxes[station.charge_box_id]
    profile = station.profile
    return {
        "chargeBoxId": station.charge_box_id,
        "chargeBoxPk": box.pk,
        "online": station.online,
        "rejectRemoteStart": station.reject_remote_start,
        "triggerAnswer": station.trigger_answer,
        "lastHeartbeat": (
            format_timestamp(box.last_heartbeat) if box.last_heartbeat else None
        ),
        "meterProfile": {
            "energyUnit": profile.energy_unit,
            "perPhase": profile.per_phase,
            "powerUnit": profile.power_unit,
            "reportsSoc": profile.reports_soc,
            "sendsTransactionId": profile.sends_transaction_id,
        },
        "connectors": [
            {
                "connectorId": connector_id,
                "meterWh": int(connector.register_wh),
                "transactionPk": (
                    connector.session.transaction_pk if connector.session else None
                ),
            }
            for connector_id, connector in sorted(station.connectors.items())
        ],
    }
