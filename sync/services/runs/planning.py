"""What changed in a batch: the meter values it needs, read from SteVe in
parallel, and each transaction planned against its row as stored. Reads only;
the plans are saved by `writing`."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from sync.client import (
    SteveBadResponse,
    SteveClient,
    SteveError,
    SteveNotFound,
    SteveTransaction,
)
from sync.energy import (
    StoredState,
    TransactionPlan,
    plan_transaction,
    readings_due_until,
)
from sync.models import (
    CHECK_IN_VALID_FOR,
    Charger,
    SyncedTransactionEvent,
    TransactionSyncState,
)
from sync.services.mappings import id_tags_as_stored
from sync.services.runs.lifecycle import RunTally, leave_unread

logger = logging.getLogger(__name__)

DETAIL_WORKERS = 8


def plan_batch(
    steve: SteveClient,
    tally: RunTally,
    transactions: list[SteveTransaction],
    *,
    force_details: bool = False,
) -> list[TransactionPlan]:
    """What changed in `transactions`, planned against their rows as stored now
    (under the run's lock, so after any batch saved before). Raises SteveError."""
    stored = {
        row.steve_transaction_id: row
        for row in TransactionSyncState.objects.filter(
            steve_transaction_id__in=[t.id for t in transactions]
        )
    }
    others = {
        t.id
        for t in transactions
        if (state := stored.get(t.id)) and _is_another_charge(state, t)
    }
    if others:
        leave_unread(
            tally,
            sorted(others),
            ANOTHER_CHARGE,
            others_done=len(others) < len(transactions),
        )
        transactions = [t for t in transactions if t.id not in others]
    # A manual stop touched within this window may have a station charging on.
    watched_since = timezone.now() - CHECK_IN_VALID_FOR
    needs_details = [
        t
        for t in transactions
        if force_details or _needs_details(stored.get(t.id), t, watched_since)
    ]
    readings = _readings_due(
        _fetch_readings(steve, tally, needs_details), needs_details, stored
    )
    unread = set(tally.unread_pks)
    corrections = _stored_corrections(
        [
            state.pk
            for t in transactions
            if (state := stored.get(t.id))
            and state.is_finalized
            and _stop_moved(state, t)
        ]
    )
    # Compared in the spelling it is stored in, or a card SteVe writes in another
    # letter case than its mapping would change on every run.
    spellings = id_tags_as_stored([t.ocpp_id_tag for t in transactions])
    powers = _max_powers(transactions)
    plans: list[TransactionPlan] = []
    for t in transactions:
        state = stored.get(t.id)
        # A new transaction whose meter values SteVe could not serve is stored from
        # its list row (its start, and its stop and stop value once stopped): the
        # charge is known at once, and its readings follow in a later run. A stored
        # open one keeps what it has until then.
        if t.id not in readings and not (
            (state is None and t.id in unread) or (state and state.is_finalized)
        ):
            continue  # vanished mid-run, or open and unread: the next run retries
        plan = plan_transaction(
            stored_state(state) if state else None,
            t,
            readings.get(t.id),
            corrections.get(state.pk, ()) if state else (),
            id_tag=spellings.get(t.ocpp_id_tag),
            max_power_kw=powers.get((t.charge_box_id, t.connector_id)),
        )
        if plan.changed:
            plans.append(plan)
    return plans


def stored_state(row: TransactionSyncState) -> StoredState:
    return StoredState(
        started_at=row.started_at,
        meter_start_wh=row.meter_start_wh,
        meter_last_wh=row.meter_last_wh,
        meter_dip_wh=row.meter_dip_wh,
        last_reading_at=row.last_reading_at,
        kwh_delivered=row.kwh_delivered,
        is_finalized=row.is_finalized,
        stopped_at=row.stopped_at,
        stop_reason=row.stop_reason,
        stop_event_actor=row.stop_event_actor,
        meter_reset_seen=row.meter_reset_seen,
        is_stop_estimated=row.is_stop_estimated,
        is_deleted_in_steve=row.is_deleted_in_steve,
        last_reading_after_stop_at=row.last_reading_after_stop_at,
    )


ANOTHER_CHARGE = (
    "SteVe now gives this id to another charge than the one Polaris stored (another "
    "charger, connector, start or start value), as a SteVe restored from an older "
    "backup or replaced by a new one does. Polaris keeps its copy and merges "
    "nothing into it; docs/operations.md says what to do."
)


def _is_another_charge(state: TransactionSyncState, t: SteveTransaction) -> bool:
    """Whether SteVe's transaction `t` is not the one stored under its pk: SteVe
    never changes a transaction's charger, connector, start or start value, so
    one that differs had its pk given anew."""
    return (
        state.charge_box_id != t.charge_box_id
        or state.connector_id != t.connector_id
        or state.started_at != t.start_timestamp
        or state.meter_start_wh != t.start_value_wh
    )


def _needs_details(
    state: TransactionSyncState | None, t: SteveTransaction, watched_since: datetime
) -> bool:
    # Finalized rows only need a look when SteVe's stop data changed under them,
    # or, for a manual stop, to see whether the station still sends readings (it
    # charges on until it stops the session itself). A station that goes on sends
    # them within the check-in window, and each one moves updatedAt; a manual stop
    # untouched for longer is left alone, rather than read every run for 48 hours.
    if state is None or not state.is_finalized:
        return True
    if t.is_stopped_manually and state.updated_at >= watched_since:
        return True
    return _stop_moved(state, t)


def _stop_moved(state: TransactionSyncState, t: SteveTransaction) -> bool:
    """Whether SteVe's stop data differs from the stored stop (a replaced stop)."""
    return (
        state.stopped_at != t.stop_timestamp
        or (t.stop_value_wh is not None and state.meter_last_wh != t.stop_value_wh)
        or state.stop_event_actor != (t.stop_event_actor or "")
    )


def _stored_corrections(state_ids: list[int]) -> dict[int, set[tuple[datetime, int]]]:
    """The (readingAt, meterWh) of the stored `corrected` events of these rows,
    which a replacing stop may repeat (see `plan_transaction`)."""
    found: dict[int, set[tuple[datetime, int]]] = {}
    if not state_ids:
        return found
    rows = (
        SyncedTransactionEvent.objects.corrections_of(state_ids)
        .order_by()
        .values_list("transaction_id", "reading_at", "meter_wh")
    )
    for state_id, reading_at, meter_wh in rows:
        found.setdefault(state_id, set()).add((reading_at, meter_wh))
    return found


def _max_powers(
    transactions: list[SteveTransaction],
) -> dict[tuple[str, int], Decimal]:
    """The maximum power staff gave the chargers of `transactions`, by
    (chargeBoxId, connectorId)."""
    rows = Charger.objects.filter(
        charge_box_id__in={t.charge_box_id for t in transactions}
    ).values_list("charge_box_id", "connector_id", "max_power_kw")
    return {
        (box, connector): power for box, connector, power in rows if power is not None
    }


def _readings_due(
    readings: dict[int, list[tuple[datetime, int]]],
    transactions: list[SteveTransaction],
    stored: dict[int, TransactionSyncState],
) -> dict[int, list[tuple[datetime, int]]]:
    """The readings whose time has come (`readings_due_until`): a later one
    counts in the first run after its time, while the charge is still read."""
    now = timezone.now()
    due: dict[int, list[tuple[datetime, int]]] = {}
    for t in transactions:
        if t.id not in readings:
            continue
        state = stored.get(t.id)
        until = readings_due_until(
            now=now,
            started_at=t.start_timestamp,
            first_stored_at=state.created_at if state else now,
        )
        due[t.id] = [reading for reading in readings[t.id] if reading[0] <= until]
    return due


def _fetch_readings(
    steve: SteveClient, tally: RunTally, transactions: list[SteveTransaction]
) -> dict[int, list[tuple[datetime, int]]]:
    """Energy readings per transaction pk, fetched in parallel.

    A transaction that vanished between the list and its details is left out (the
    next run sees it missing), and so is one SteVe cannot serve (`_unreadable`):
    the rest of the batch is saved, and the run is partial. Other errors abort the
    batch, so none of it is written.
    """

    def fetch(
        t: SteveTransaction,
    ) -> tuple[int, list[tuple[datetime, int]] | SteveError]:
        try:
            details = steve.transaction_details(t.id, given_up=given_up)
            return t.id, details.energy_readings()
        except SteveError as error:
            if isinstance(error, SteveNotFound) or _unreadable(error):
                return t.id, error
            raise

    results: dict[int, list[tuple[datetime, int]]] = {}
    unreadable: dict[int, SteveError] = {}
    if not transactions:
        return results
    given_up = threading.Event()
    pool = ThreadPoolExecutor(max_workers=DETAIL_WORKERS)
    try:
        for pk, readings in pool.map(fetch, transactions):
            if isinstance(readings, SteveNotFound):
                tally.fail_one(f"Transaction {pk} disappeared from SteVe mid-run.")
            elif isinstance(readings, SteveError):
                unreadable[pk] = readings
            else:
                results[pk] = readings
    finally:
        # Cut off (the time limit, a failed read), the run must end now: the
        # queued reads are dropped and the few in flight are not waited for, or
        # the task would run into the hard time limit and be killed unrecorded.
        # Those end with their current try: a failed run calls SteVe no more, and
        # `manage.py sync` exits without waiting out their retries.
        given_up.set()
        pool.shutdown(wait=False, cancel_futures=True)
    if unreadable:
        _report_unreadable(tally, unreadable, others_read=bool(results))
    return results


def _unreadable(error: SteveError) -> bool:
    """SteVe answered a transaction's details with a server error (after the
    client's retries) or with a body Polaris cannot read, while it answered the
    run's list requests: a fault of that transaction's data, which must not hold
    up every other transaction on every run."""
    return isinstance(error, SteveBadResponse) or (error.status or 0) >= 500


def _report_unreadable(
    tally: RunTally, unreadable: dict[int, SteveError], *, others_read: bool
) -> None:
    pks = sorted(unreadable)
    reason = unreadable[pks[0]].message
    leave_unread(
        tally,
        pks,
        f"SteVe could not serve the meter values ({reason})",
        others_done=others_read,
    )
