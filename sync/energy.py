"""Turning what SteVe reports about one transaction into sync events.

Pure functions, no database: given what Polaris stored last time and what SteVe says
now, `plan_transaction` returns the new field values and the events to append. The
energy rules live here:

- kWh come from the Wh-normalised, phase-less energy register readings, counted
  from a baseline (meterLastWh, the last reading counted);
- a reading below the baseline is a drop: a `corrected` event with zero energy
  records it and flags the session (meterResetSeen), and it waits as a dip
  (meterDipWh) for the next reading to say what it was. A reading back at or above
  the baseline makes it a glitch: energy counts on from the baseline. One above
  the dip but below the baseline makes it a meter reset: energy counts from the
  dip, which becomes the baseline. One equal to the dip waits on; one below it is
  a deeper dip. So a
  single bad reading never bills the climb back from it, and energy never goes
  negative;
- the stop value closes the session. After any drop, a stop at or above the start
  makes the station's own stop - start the session's total (the readings may count
  on another register than meterStart and meterStop, such as a meter that counts
  each session from 0): the stop adds what that total has beyond the energy
  counted, and nothing when the count already reaches it, as energy counted is
  never taken back. Otherwise the stop counts on from the baseline, or from a dip
  it confirms as a reset. A stop SteVe later replaces (a manual stop overtaken by
  the station's own) gives a `corrected` event, and one below the stop it replaces
  keeps the energy counted and flags the session; a manual stop dated before the
  last reading counted adds no energy after a drop (SteVe took it from a
  reading, maybe one from before the reset), nor, below the readings counted
  since, without one: the count stays where the readings took it;
- readings after a manual stop count no energy until the station's own stop
  replaces it, but say that the station is still charging there;
- a flat register adds nothing, and moves lastReadingAt every half hour: a full
  car left plugged in is alive, not a session SteVe will never close;
- energy beyond what the charger could deliver since the session's start (its
  maximum power, or DEFAULT_MAX_POWER_KW when not known, with room to spare) is
  not energy: a glitching meter's spike, or readings on another register than
  the start's. Such a reading gives a `corrected` event with zero energy, flags
  the session, and the count goes on from the last reading counted; such a stop
  closes the session where its readings stood, flagged.
"""

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sync.client import SteveTransaction

WH_PER_KWH = Decimal(1000)
# How often a flat register moves lastReadingAt.
FLAT_READING_NEWS_EVERY = timedelta(minutes=30)
# A station's clock may run a little ahead of ours. A reading stamped later than
# this after our clock is not taken yet: counted now, it would hold back every
# reading stamped before it (the count goes by time), date its energy in a
# period still to come, and keep its charger online until then.
READINGS_AHEAD_AT_MOST = timedelta(minutes=5)
# What a charger whose maximum power Polaris does not know may deliver: more
# than the fastest public chargers most cars meet. Faster ones need their
# maximum power set: energy beyond the bound is not counted.
DEFAULT_MAX_POWER_KW = Decimal(350)
# Room above a charger's rated power, and for station clocks (a start stamped
# late, a clock set forward mid-charge).
POWER_MARGIN = Decimal("1.25")
RISE_SLACK_WH = 50_000
SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True, slots=True)
class StoredState:
    """The parts of a `transaction_sync_state` row the planner needs."""

    started_at: datetime
    meter_start_wh: int
    meter_last_wh: int
    meter_dip_wh: int | None
    last_reading_at: datetime | None
    kwh_delivered: Decimal
    is_finalized: bool
    stopped_at: datetime | None
    stop_reason: str
    stop_event_actor: str
    meter_reset_seen: bool
    is_stop_estimated: bool
    is_deleted_in_steve: bool
    last_reading_after_stop_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    event_type: str
    meter_wh: int
    reading_at: datetime
    kwh_delta: Decimal


@dataclass(slots=True)
class TransactionPlan:
    """What one sync run will write for one SteVe transaction."""

    transaction: SteveTransaction
    fields: dict[str, object]
    events: list[PlannedEvent] = field(default_factory=list)
    is_new: bool = False
    changed: bool = False
    latest_reading_at: datetime | None = None


def readings_due_until(
    *, now: datetime, started_at: datetime, first_stored_at: datetime
) -> datetime:
    """The latest stamp of a charge's readings taken `now`: READINGS_AHEAD_AT_MOST
    after it, and as much again as the station stamped the charge's start ahead
    of when a sync first stored it (a clock that runs ahead all along)."""
    ahead = max(timedelta(0), started_at - first_stored_at)
    return now + ahead + READINGS_AHEAD_AT_MOST


def kwh(wh: int) -> Decimal:
    """Whole Wh as kWh with exactly three decimals (so sums stay exact)."""
    return (Decimal(wh) / WH_PER_KWH).quantize(Decimal("0.001"))


@dataclass(slots=True)
class _Count:
    """A transaction's energy counted reading by reading: the baseline (the last
    reading counted), a dip waiting for the next reading to say what it was, when
    the last reading was taken, the kWh delivered and whether a drop was seen; with
    the events the count plans."""

    baseline: int
    dip: int | None
    last_at: datetime
    delivered: Decimal
    reset_seen: bool
    # What bounds the energy a session can have: its start and its charger.
    started_at: datetime
    max_power_kw: Decimal
    events: list[PlannedEvent] = field(default_factory=list)

    @classmethod
    def starting(cls, transaction: SteveTransaction, max_power_kw: Decimal) -> "_Count":
        """The count of a transaction seen for the first time, at its start."""
        count = cls(
            baseline=transaction.start_value_wh,
            dip=None,
            last_at=transaction.start_timestamp,
            delivered=Decimal("0.000"),
            reset_seen=False,
            started_at=transaction.start_timestamp,
            max_power_kw=max_power_kw,
        )
        count.events.append(
            PlannedEvent(
                "started", count.baseline, transaction.start_timestamp, count.delivered
            )
        )
        return count

    @classmethod
    def stored(cls, state: StoredState, max_power_kw: Decimal) -> "_Count":
        """The count where the last run left it."""
        return cls(
            baseline=state.meter_last_wh,
            dip=state.meter_dip_wh,
            last_at=state.last_reading_at or state.started_at,
            delivered=state.kwh_delivered,
            reset_seen=state.meter_reset_seen,
            started_at=state.started_at,
            max_power_kw=max_power_kw,
        )

    def _could_deliver(self, more: Decimal, at: datetime) -> bool:
        """Whether the charger could have delivered the energy counted and `more`
        kWh between the session's start and `at`. The whole session is measured,
        not the time since the last reading, so that neither a station clock
        set back nor readings queued offline and stamped when sent hold back
        energy a charger did deliver."""
        hours = Decimal((at - self.started_at).total_seconds()) / SECONDS_PER_HOUR
        most = self.max_power_kw * POWER_MARGIN * max(hours, Decimal(0))
        return self.delivered + more <= most + kwh(RISE_SLACK_WH)

    def read(self, reading_at: datetime, wh: int) -> bool:
        """Count a reading up to the stop; False for one not after the last
        reading counted, which says nothing new."""
        if reading_at <= self.last_at:
            return False
        if wh >= self.baseline:
            counted_from = self.baseline
        elif self.dip is not None and wh == self.dip:
            # The same low value again (a meter reporting 0 while it is away)
            # says nothing yet: only a rise from the dip makes it a reset.
            self.last_at = reading_at
            return True
        elif self.dip is not None and wh > self.dip:
            counted_from = self.dip
        else:
            self.reset_seen = True
            self.dip = wh
            self.events.append(
                PlannedEvent("corrected", wh, reading_at, Decimal("0.000"))
            )
            self.last_at = reading_at
            return True
        if wh > counted_from and not self._could_deliver(
            kwh(wh - counted_from), reading_at
        ):
            # A spike: recorded without energy, as a drop is, and the count
            # goes on from the last reading counted.
            self.reset_seen = True
            self.events.append(
                PlannedEvent("corrected", wh, reading_at, Decimal("0.000"))
            )
            self.last_at = reading_at
            return True
        if wh == self.baseline and self.dip is None:
            # A flat register (a full car left plugged in) adds nothing, and
            # rewriting the session at each reading would only churn updatedAt;
            # but now and then it moves lastReadingAt, as the session is alive,
            # not stuck (the sync suspects one with no reading for
            # SYNC_STUCK_AFTER_HOURS, at least an hour).
            if reading_at - self.last_at >= FLAT_READING_NEWS_EVERY:
                self.last_at = reading_at
            return True
        self.dip = None
        if wh > counted_from:
            delta = kwh(wh - counted_from)
            self.delivered += delta
            self.events.append(PlannedEvent("progress", wh, reading_at, delta))
        self.baseline = wh
        self.last_at = reading_at
        return True

    def stop(
        self,
        transaction: SteveTransaction,
        stop_at: datetime,
        state: StoredState | None,
        stored_corrections: Collection[tuple[datetime, int]],
    ) -> None:
        """Close the count at the transaction's stop (`stop_at`). A stop stored
        before counts again only where SteVe replaced it."""
        # A stop value no meter could read closes the session where its readings
        # stood.
        stop_wh = (
            self.baseline
            if transaction.stop_value_wh is None
            else transaction.stop_value_wh
        )
        # SteVe estimates a manual stop from the readings. Dated before the last
        # reading counted, it can be a reading from before energy Polaris counted
        # since: without a reset, one below the baseline is that (no reset), and
        # the count stays where it was, so that what a replacing stop brings is
        # counted from there, not again from the estimate.
        behind_the_count = (
            transaction.is_stopped_manually
            and stop_at < self.last_at
            and not self.reset_seen
            and stop_wh < self.baseline
        )
        closes_at = self.baseline if behind_the_count else stop_wh
        # After a meter reset, such a stop can be a reading from before the reset,
        # and counting up to it again would count that energy twice. (Without a
        # reset the baseline is the highest reading counted, so a stop above it is
        # energy Polaris skipped, e.g. behind a station clock jump.)
        restated = behind_the_count or (
            transaction.is_stopped_manually
            and stop_at < self.last_at
            and self.reset_seen
        )
        delta = (
            Decimal("0.000")
            if restated
            else self._energy_at_stop(stop_wh, transaction.start_value_wh)
        )
        # A stop value beyond what the charger could deliver (a manual stop SteVe
        # took from a spike, a glitching meter at the stop) closes the session
        # where its readings stood.
        beyond_the_charger = not self._could_deliver(delta, stop_at)
        if beyond_the_charger:
            delta, closes_at = Decimal("0.000"), self.baseline
        stored_stop = state if state is not None and state.is_finalized else None
        if stored_stop is not None and (
            stored_stop.meter_last_wh,
            stored_stop.stopped_at,
            stored_stop.stop_event_actor,
        ) == (closes_at, stop_at, transaction.stop_event_actor or ""):
            return
        already_stopped = stored_stop is not None
        if beyond_the_charger or closes_at < self.baseline:
            self.reset_seen = True
        event_type = "corrected" if already_stopped else "stopped"
        stop_event = PlannedEvent(event_type, stop_wh, stop_at, delta)
        # A replacing stop below the baseline comes with the station's
        # Transaction.End reading, recorded as this very correction (with no
        # energy), in this run or an earlier one: the same observation is stored
        # once, and counted once.
        repeated = any(_same_observation(stop_event, e) for e in self.events) or (
            already_stopped and (stop_at, stop_wh) in stored_corrections
        )
        if not repeated:
            self.events.append(stop_event)
            self.delivered += delta
        self.baseline = closes_at
        self.dip = None
        self.last_at = max(self.last_at, stop_at)

    def _energy_at_stop(self, stop_wh: int, start_wh: int) -> Decimal:
        """The energy a stop adds to the kWh counted before it."""
        if self.reset_seen and stop_wh >= start_wh:
            # After a drop the readings can be on another register than the
            # station's meterStart and meterStop (a glitch, a meter counting each
            # session from 0): its own count is the total, as SteVe's would be,
            # minus what was counted.
            return max(Decimal("0.000"), kwh(stop_wh - start_wh) - self.delivered)
        if self.dip is not None and self.dip <= stop_wh < self.baseline:
            return kwh(stop_wh - self.dip)
        return kwh(max(0, stop_wh - self.baseline))

    def fields(self) -> dict[str, object]:
        """The count as `transaction_sync_state` stores it."""
        return {
            "meter_last_wh": self.baseline,
            "meter_dip_wh": self.dip,
            "last_reading_at": self.last_at,
            "kwh_delivered": self.delivered,
            "meter_reset_seen": self.reset_seen,
        }


def plan_transaction(
    state: StoredState | None,
    transaction: SteveTransaction,
    readings: list[tuple[datetime, int]] | None,
    stored_corrections: Collection[tuple[datetime, int]] = (),
    *,
    id_tag: str | None = None,
    max_power_kw: Decimal | None = None,
) -> TransactionPlan:
    """Compare SteVe's view of a transaction with the stored one.

    `readings` are (timestamp, Wh) energy register readings, oldest first, or None
    when they were not fetched (only the stop data is compared then).
    `stored_corrections` are the (readingAt, meterWh) of the transaction's stored
    `corrected` events, which a replacing stop may repeat. `id_tag` is the
    spelling its card's sessions are stored in, when not SteVe's. `max_power_kw`
    is its charger's, when Polaris knows it.
    """
    power = max_power_kw or DEFAULT_MAX_POWER_KW
    count = (
        _Count.starting(transaction, power)
        if state is None
        else _Count.stored(state, power)
    )
    latest_reading_at: datetime | None = None
    after_stop_at: datetime | None = None
    stop_at = transaction.stop_timestamp
    for reading_at, wh in readings or []:
        if stop_at is not None and reading_at > stop_at:
            # Not the session's energy (the stop value closes it), but a station
            # still running it after a manual stop.
            after_stop_at = max(reading_at, after_stop_at or reading_at)
        elif count.read(reading_at, wh):
            latest_reading_at = reading_at

    fields: dict[str, object] = {
        "charge_box_id": transaction.charge_box_id,
        "connector_id": transaction.connector_id,
        "ocpp_id_tag": id_tag or transaction.ocpp_id_tag,
        "started_at": transaction.start_timestamp,
        "meter_start_wh": transaction.start_value_wh,
        "is_deleted_in_steve": False,
    }
    if stop_at is not None:
        count.stop(transaction, stop_at, state, stored_corrections)
        if not transaction.is_stopped_manually:
            after_stop_at = None
        elif readings is None and state is not None:
            after_stop_at = state.last_reading_after_stop_at  # not read this time
        fields.update(
            stopped_at=stop_at,
            stop_reason=transaction.stop_reason or "",
            stop_event_actor=transaction.stop_event_actor or "",
            is_finalized=True,
            is_stop_estimated=transaction.is_stopped_manually,
            last_reading_after_stop_at=after_stop_at,
        )
    else:
        after_stop_at = None
        fields.update(
            stopped_at=None,
            stop_reason="",
            stop_event_actor="",
            is_finalized=False,
            is_stop_estimated=False,
            last_reading_after_stop_at=None,
        )
    fields.update(count.fields())

    plan = TransactionPlan(
        transaction=transaction,
        fields=fields,
        events=count.events,
        is_new=state is None,
        # Any reading says the station is there, one after a stop included.
        latest_reading_at=max(
            (at for at in (latest_reading_at, after_stop_at) if at is not None),
            default=None,
        ),
    )
    plan.changed = state is None or bool(count.events) or _differs(state, fields)
    return plan


def _same_observation(one: PlannedEvent, other: PlannedEvent) -> bool:
    """Whether two events share the unique key of synced_transaction_events."""
    return (one.event_type, one.reading_at, one.meter_wh) == (
        other.event_type,
        other.reading_at,
        other.meter_wh,
    )


def _differs(state: StoredState, fields: dict[str, object]) -> bool:
    stored = {name: getattr(state, name) for name in fields if hasattr(state, name)}
    return any(stored[name] != fields[name] for name in stored)


def plan_vanished(state: StoredState) -> dict[str, object]:
    """Fields for an open transaction SteVe lost: closed where it stood, kept."""
    return {
        "is_deleted_in_steve": True,
        "is_finalized": True,
        "is_suspected_stuck": False,
        "is_stop_estimated": True,
        "stopped_at": state.last_reading_at or state.started_at,
    }
