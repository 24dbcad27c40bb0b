"""The physical side of the simulation: charge points, their meters and sessions.

SteVe's database (``store.py``) only knows what stations reported. What a station
*believes* can differ: a station whose StopTransaction was lost or rejected is idle
while SteVe still lists the transaction as active (CONTRACT §11). Keeping the two
apart is what lets zombies and rejected stops arise naturally.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sync.standin.records import ENERGY_REGISTER, SAMPLE_PERIODIC, EvseKey, Reading

# A typical EV battery for the SoC readings; only the shape of the curve matters.
_BATTERY_WH = 60_000.0
_MAINS_VOLTAGE = 230.0
_PHASES = ("L1", "L2", "L3")


@dataclass(frozen=True)
class MeterProfile:
    """What a station's firmware puts into ``MeterValues.req``.

    The profiles cover the shapes a client must handle (CONTRACT §5): Wh and kWh
    registers, per-phase rows next to the phase-less total, power in W or kW, SoC,
    and readings sent without a transactionId (attributed by time window).
    """

    energy_unit: Literal["Wh", "kWh"]
    per_phase: bool
    power_unit: Literal["W", "kW"]
    reports_soc: bool
    sends_transaction_id: bool

    def readings(
        self,
        at: datetime,
        *,
        register_wh: float,
        power_w: float,
        soc: float | None,
        context: str = SAMPLE_PERIODIC,
    ) -> list[Reading]:
        """Return the sampled values of one ``MeterValue`` taken at ``at``.

        Transaction.Begin/End samples carry the energy register only, as most
        stations configure ``StopTxnSampledData`` that way.
        """
        rows = [self._energy(at, register_wh, context, phase=None)]
        if self.per_phase:
            share = register_wh / len(_PHASES)
            rows += [self._energy(at, share, context, phase) for phase in _PHASES]
        if context != SAMPLE_PERIODIC:
            return rows
        rows.append(self._power(at, power_w))
        rows += self._currents(at, power_w)
        if self.reports_soc and soc is not None:
            rows.append(
                Reading(
                    value=f"{soc:.0f}",
                    value_timestamp=at,
                    measurand="SoC",
                    location="EV",
                    unit="Percent",
                )
            )
        return rows

    def _energy(
        self, at: datetime, wh: float, context: str, phase: str | None
    ) -> Reading:
        # The register counts whole Wh; meterStart/meterStop read the same
        # register, so a kWh reading never disagrees with them by rounding.
        whole = int(wh)
        value = (
            f"{whole // 1000}.{whole % 1000:03d}"
            if self.energy_unit == "kWh"
            else f"{whole}"
        )
        return Reading(
            value=value,
            value_timestamp=at,
            reading_context=context,
            measurand=ENERGY_REGISTER,
            unit=self.energy_unit,
            phase=phase,
        )

    def _power(self, at: datetime, power_w: float) -> Reading:
        value = f"{power_w / 1000:.2f}" if self.power_unit == "kW" else f"{power_w:.0f}"
        return Reading(
            value=value,
            value_timestamp=at,
            measurand="Power.Active.Import",
            unit=self.power_unit,
        )

    def _currents(self, at: datetime, power_w: float) -> list[Reading]:
        phases: tuple[str | None, ...] = _PHASES if self.per_phase else (None,)
        amps = power_w / _MAINS_VOLTAGE / len(phases)
        return [
            Reading(
                value=f"{amps:.1f}",
                value_timestamp=at,
                measurand="Current.Import",
                unit="A",
                phase=phase,
            )
            for phase in phases
        ]


# Station i of the fleet uses PROFILES[i % len(PROFILES)], so any fleet of four or
# more stations shows every shape.
PROFILES = (
    MeterProfile("Wh", False, "W", False, True),
    MeterProfile("kWh", True, "kW", True, True),
    MeterProfile("Wh", False, "kW", False, False),
    MeterProfile("kWh", False, "W", True, True),
)


@dataclass
class ChargingSession:
    """A session as the station sees it: it ends when the station says so."""

    transaction_pk: int
    power_w: float
    soc: float | None
    # Seconds until the EV is done; None charges until stopped from outside.
    remaining_s: float | None
    since_sample_s: float = 0.0

    def charge(self, seconds: float, rng: random.Random) -> float:
        """Return the energy (Wh) delivered in ``seconds``, with a little jitter."""
        energy_wh = self.power_w * rng.uniform(0.95, 1.05) * seconds / 3600
        if self.soc is not None:
            self.soc = min(100.0, self.soc + energy_wh / _BATTERY_WH * 100)
        return energy_wh


@dataclass
class Connector:
    """A connector and its lifetime-cumulative energy register."""

    evse: EvseKey
    register_wh: float
    session: ChargingSession | None = None


@dataclass
class Station:
    """A charge point: its connection state, meter profile and connectors."""

    charge_box_id: str
    profile: MeterProfile
    max_power_w: float
    connectors: dict[int, Connector] = field(default_factory=dict)
    online: bool = True
    reject_remote_start: bool = False
    # How it answers TriggerMessage: Accepted, Rejected or NotImplemented.
    trigger_answer: str = "Accepted"
    since_heartbeat_s: float = 0.0

    def session_power(self, rng: random.Random) -> float:
        """Pick what an EV draws here: 55-100 % of the station's power, ≥ 3 kW."""
        return max(3_000.0, self.max_power_w * rng.uniform(0.55, 1.0))

    def idle_connectors(self) -> list[Connector]:
        """Return the connectors without a session, lowest connectorId first."""
        return [c for _, c in sorted(self.connectors.items()) if c.session is None]


@dataclass(frozen=True)
class PendingStart:
    """A RemoteStart the station accepted; it starts once the delay has passed."""

    evse: EvseKey
    id_tag: str
    due_at_s: float
