"""Saving a run's plans: each batch in one database transaction (one by one should
the database refuse a transaction's data), the rows SteVe lost, the chargers seen
for the first time, their check-ins, and the stuck-session flags."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.utils import timezone

from sync.energy import TransactionPlan, plan_vanished
from sync.models import (
    CHECK_IN_VALID_FOR,
    Charger,
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
)
from sync.services.mappings import (
    id_tags_as_stored,
    lock_tag_spellings,
    sessions_respell,
    user_mappings_spell_as_synced,
)
from sync.services.runs.lifecycle import RunTally, leave_unread
from sync.services.runs.planning import stored_state

logger = logging.getLogger(__name__)

STATE_FIELDS = [
    "charge_box_id",
    "connector_id",
    "charger",
    "ocpp_id_tag",
    "started_at",
    "stopped_at",
    "meter_start_wh",
    "meter_last_wh",
    "meter_dip_wh",
    "last_reading_at",
    "kwh_delivered",
    "is_finalized",
    "stop_reason",
    "stop_event_actor",
    "is_stop_estimated",
    "last_reading_after_stop_at",
    "meter_reset_seen",
    "is_deleted_in_steve",
    "last_synced_at",
    "updated_at",
]

# What the database says of data it will not hold, as opposed to being down.
REFUSED_DATA = (DataError, IntegrityError)


class SaveFailed(Exception):
    """Saving failed (the cause is chained): Polaris's side, not SteVe's."""


def count_plans(plans: list[TransactionPlan], tally: RunTally) -> None:
    for plan in plans:
        tally.created += plan.is_new
        tally.updated += not plan.is_new
        tally.events += len(plan.events)


@contextmanager
def saving() -> Iterator[None]:
    """One database transaction whose failure raises SaveFailed; the soft time
    limit stays itself."""
    try:
        with transaction.atomic():
            yield
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        raise SaveFailed from error


def save_batch(run: SyncRun, plans: list[TransactionPlan], tally: RunTally) -> None:
    """Save a batch in one database transaction. Should the database refuse one
    transaction's data (a value out of its range, say), the batch is saved one by
    one instead: the others are stored, and the refused ones are named and read
    again by the next runs, rather than every run failing on them for ever."""
    try:
        _save_plans(run, plans, tally)
    except SaveFailed as failure:
        if not isinstance(failure.__cause__, REFUSED_DATA):
            raise
        logger.warning("Sync run %s: batch refused, saving one by one", run.pk)
        refused: dict[int, DatabaseError] = {}
        for plan in plans:
            try:
                _save_plans(run, [plan], tally)
            except SaveFailed as one_failure:
                if not isinstance(one_failure.__cause__, REFUSED_DATA):
                    raise
                logger.error(
                    "Sync run %s: transaction %s refused",
                    run.pk,
                    plan.transaction.id,
                    exc_info=one_failure.__cause__,
                )
                refused[plan.transaction.id] = one_failure.__cause__
        if refused:
            leave_unread(
                tally,
                sorted(refused),
                "Polaris could not store what SteVe sent (see logs).",
                others_done=len(refused) < len(plans),
            )


def _save_plans(run: SyncRun, plans: list[TransactionPlan], tally: RunTally) -> None:
    with saving():
        chargers = _ensure_chargers(plans)
        written = _write_batch(run, plans, chargers)
        _check_in_from_readings(plans, chargers)
    # Counted once committed: a batch saved again one by one is counted once.
    tally.created += written.created
    tally.updated += written.updated
    tally.events += written.events
    tally.changed_ids.extend(written.changed_ids)


@dataclass(frozen=True, slots=True)
class _Written:
    created: int
    updated: int
    events: int
    changed_ids: list[int]


def _write_batch(
    run: SyncRun,
    plans: list[TransactionPlan],
    chargers: dict[tuple[str, int], int],
) -> _Written:
    now = timezone.now()
    # Under the lock a mapping's save takes: each of its card's sessions, this
    # batch's and those stored before, in the spelling the mapping has now.
    lock_tag_spellings()
    spellings = id_tags_as_stored([plan.transaction.ocpp_id_tag for plan in plans])
    sessions_respell(spellings)
    tags = {}
    rows = []
    for plan in plans:
        t = plan.transaction
        tags[t.id] = spellings.get(t.ocpp_id_tag, t.ocpp_id_tag)
        row = TransactionSyncState(
            steve_transaction_id=t.id,
            charger_id=chargers.get((t.charge_box_id, t.connector_id)),
            last_synced_at=now,
            updated_at=now,
            **{**plan.fields, "ocpp_id_tag": tags[t.id]},
        )
        rows.append(row)
    saved = TransactionSyncState.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["steve_transaction_id"],
        update_fields=STATE_FIELDS,
    )
    ids = {row.steve_transaction_id: row.pk for row in saved}
    # A session closed at last is no longer suspected stuck: its stop came.
    closed = [ids[plan.transaction.id] for plan in plans if plan.fields["is_finalized"]]
    if closed:
        TransactionSyncState.objects.filter(
            pk__in=closed, is_suspected_stuck=True
        ).update(is_suspected_stuck=False)
    events = [
        SyncedTransactionEvent(
            transaction_id=ids[plan.transaction.id],
            sync_run=run,
            event_type=event.event_type,
            meter_wh=event.meter_wh,
            reading_at=event.reading_at,
            kwh_delta=event.kwh_delta,
            ocpp_id_tag=tags[plan.transaction.id],
            synced_at=now,
        )
        for plan in plans
        for event in plan.events
    ]
    SyncedTransactionEvent.objects.bulk_create(events)
    user_mappings_spell_as_synced(
        tags=[tags[plan.transaction.id] for plan in plans if plan.is_new]
    )
    return _Written(
        created=sum(plan.is_new for plan in plans),
        updated=sum(not plan.is_new for plan in plans),
        events=len(events),
        changed_ids=list(ids.values()),
    )


def write_vanished(
    run: SyncRun, rows: list[TransactionSyncState], tally: RunTally
) -> None:
    """Flag stored rows SteVe lost; open ones are closed where they stood.

    One INSERT for the stop events and one UPDATE per kind of row, however many.
    """
    now = timezone.now()
    events = []
    closed_fields: set[str] = set()
    for row in rows:
        if row.is_finalized:
            row.is_deleted_in_steve = True
        else:
            fields = plan_vanished(stored_state(row))
            closed_fields.update(fields)
            for name, value in fields.items():
                setattr(row, name, value)
            # plan_vanished closed the row where it stood.
            assert row.stopped_at is not None
            events.append(
                SyncedTransactionEvent(
                    transaction=row,
                    sync_run=run,
                    event_type=SyncedTransactionEvent.EventType.STOPPED,
                    meter_wh=row.meter_last_wh,
                    reading_at=row.stopped_at,
                    kwh_delta=Decimal("0.000"),
                    ocpp_id_tag=row.ocpp_id_tag,
                    synced_at=now,
                )
            )
        row.last_synced_at = now
        row.updated_at = now
    closed = {event.transaction_id for event in events}
    SyncedTransactionEvent.objects.bulk_create(events)
    TransactionSyncState.objects.bulk_update(
        [row for row in rows if row.pk in closed],
        [*sorted(closed_fields), "last_synced_at", "updated_at"],
    )
    TransactionSyncState.objects.bulk_update(
        [row for row in rows if row.pk not in closed],
        ["is_deleted_in_steve", "last_synced_at", "updated_at"],
    )
    tally.events += len(events)
    tally.updated += len(rows)
    tally.changed_ids.extend(row.pk for row in rows)


def _ensure_chargers(plans: list[TransactionPlan]) -> dict[tuple[str, int], int]:
    """Create a charger for every connector seen for the first time; return ids.

    Usually every connector is known already, so one SELECT answers.
    """
    keys = {(p.transaction.charge_box_id, p.transaction.connector_id) for p in plans}
    if not keys:
        return {}
    boxes = {box for box, _ in keys}

    def known() -> dict[tuple[str, int], int]:
        return {
            (box, connector): pk
            for pk, box, connector in Charger.objects.filter(
                charge_box_id__in=boxes
            ).values_list("pk", "charge_box_id", "connector_id")
        }

    ids = known()
    new = sorted(keys - ids.keys())
    if not new:
        return ids
    Charger.objects.bulk_create(
        [
            Charger(charge_box_id=box, connector_id=connector, friendly_name=box)
            for box, connector in new
        ],
        ignore_conflicts=True,
    )
    return known()


def flag_suspected_stuck() -> list[int]:
    """Flag open sessions SteVe will never close by itself (CONTRACT §11), and
    clear the flag of open ones that proved alive: a fresh reading came, and no
    newer session is on their connector.

    A charge began no later than the sync first stored it (`createdAt`, our
    clock), whatever a station clock running ahead stamped: a start stamped
    tomorrow is neither newer than every charge after it nor, with no reading
    since (lastReadingAt is then its start), fresh for a day. Its readings are
    as far ahead as its start was (`readings_due_until`).

    Only rows whose flag changes are written, so a run with nothing new changes
    no row. Returns the ids of those it changed.
    """
    now = timezone.now()
    stale_before = now - timedelta(hours=settings.SYNC_STUCK_AFTER_HOURS)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE transaction_sync_state AS t
               SET "isSuspectedStuck" = NOT t."isSuspectedStuck", "updatedAt" = %s
              FROM (SELECT id, LEAST("startedAt", "createdAt") AS began,
                           GREATEST("startedAt" - "createdAt", interval '0') AS ahead
                      FROM transaction_sync_state WHERE NOT "isFinalized") AS open
             WHERE t.id = open.id
               AND t."isSuspectedStuck" <> (
                   COALESCE(NULLIF(t."lastReadingAt", t."startedAt") - open.ahead,
                            open.began) < %s
                   OR EXISTS (SELECT 1 FROM transaction_sync_state AS newer
                               WHERE newer."chargeBoxId" = t."chargeBoxId"
                                 AND newer."connectorId" = t."connectorId"
                                 AND newer."startedAt" > open.began
                                 AND newer."createdAt" > open.began))
            RETURNING t.id
            """,
            [now, stale_before],
        )
        return [pk for (pk,) in cursor.fetchall()]


def _check_in_from_readings(
    plans: list[TransactionPlan], chargers: dict[tuple[str, int], int]
) -> None:
    """A charger that sent meter values recently (CHECK_IN_VALID_FOR) has checked in.

    One UPDATE for all of them; a check-in is only ever moved forward, so a newer
    one (from the heartbeat probe) is never overwritten.
    """
    now = timezone.now()
    fresh_after = now - CHECK_IN_VALID_FOR
    latest: dict[int, datetime] = {}
    for plan in plans:
        key = (plan.transaction.charge_box_id, plan.transaction.connector_id)
        charger_id = chargers.get(key)
        if plan.latest_reading_at is None or charger_id is None:
            continue
        # Not later than now: a station clock running ahead would keep its
        # charger online for as long after it went away.
        at = min(plan.latest_reading_at, now)
        if at < fresh_after:
            continue
        latest[charger_id] = max(at, latest.get(charger_id, at))
    if not latest:
        return
    # Table and column names come from the model; the values are parameters.
    meta = Charger._meta
    pk, column = meta.pk.column, meta.get_field("last_check_in_at").column
    values = ", ".join(["(%s, %s::timestamptz)"] * len(latest))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE "{meta.db_table}" AS c
               SET "{column}" = v.at
              FROM (VALUES {values}) AS v(id, at)
             WHERE c."{pk}" = v.id AND (c."{column}" IS NULL OR c."{column}" < v.at)
            """,
            [param for item in latest.items() for param in item],
        )


def mark_read(*, steve_transaction_id: int, at: datetime) -> None:
    """A resync read this transaction from SteVe at `at`, changed or not: its Last
    synced says so. (A fleet run writes only the sessions that changed; the run
    itself says when it confirmed the others.)"""
    TransactionSyncState.objects.filter(
        steve_transaction_id=steve_transaction_id, last_synced_at__lt=at
    ).update(last_synced_at=at)
