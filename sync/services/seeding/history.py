"""Transactions and events, the bulk of the history: their slices made by worker
processes and streamed with COPY, then the rollups and session counts that their
triggers would have kept had COPY not skipped them."""

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.pool import AsyncResult
from typing import Any

from sync.rollups import ORIGIN
from sync.seeding_rows import (
    Slice,
    TransactionPlan,
    make_planned_slice,
    make_slice,
    use_plan,
)

logger = logging.getLogger(__name__)

# Transactions per slice a worker makes (~30 MB of COPY text with 10 events each),
# and how many workers: with two, generation keeps up with what one Postgres
# backend ingests.
SLICE_TRANSACTIONS = 25_000
SLICE_WORKERS = 2

Progress = Callable[[str], None]

_TRANSACTION_COPY = (
    'COPY transaction_sync_state (id, "steveTransactionId", "chargeBoxId", '
    '"connectorId", "chargerId", "ocppIdTag", "startedAt", "stoppedAt", '
    '"meterStartWh", "meterLastWh", "lastReadingAt", "kwhDelivered", '
    '"isFinalized", "stopReason", "stopEventActor", "isSuspectedStuck", '
    '"isStopEstimated", "meterResetSeen", "isDeletedInSteve", "lastSyncedAt", '
    '"createdAt", "updatedAt") FROM STDIN'
)
_EVENT_COPY = (
    'COPY synced_transaction_events (id, "transactionId", "syncRunId", '
    '"eventType", "meterWh", "readingAt", "kwhDelta", "ocppIdTag", "syncedAt") '
    "FROM STDIN"
)


def copy_transactions(
    cursor: Any, plan: TransactionPlan, *, freeze: bool, say: Progress
) -> tuple[int, int]:
    """COPY transactions, then their events; returns (events, active sessions).

    Each slice's events follow its transactions, so the foreign key (when
    checked) always finds its parent. With `freeze` the rows are written frozen
    and all-visible: no hint-bit rewrite on first read, and VACUUM skips them.
    """
    options = " WITH (FREEZE)" if freeze else ""
    events = active = done = 0
    for rows in _slices(plan):
        with cursor.copy(_TRANSACTION_COPY + options) as copy:
            copy.write(rows.transactions)
        with cursor.copy(_EVENT_COPY + options) as copy:
            copy.write(rows.events)
        events += rows.event_count
        active += rows.active
        done += rows.count
        if done % 200_000 < rows.count or done == plan.count:
            say(f"  {done} transactions, {events} events")
    return events, active


def _slices(plan: TransactionPlan) -> Iterator[Slice]:
    """The plan's slices in order, made a few slices ahead by worker processes
    while the caller COPYs (Postgres ingests on another core meanwhile)."""
    bounds = [
        (first, min(SLICE_TRANSACTIONS, plan.count - first))
        for first in range(0, plan.count, SLICE_TRANSACTIONS)
    ]
    if len(bounds) == 1:
        yield make_slice(plan, *bounds[0])
        return
    # spawn, not fork: the parent has threads (the connection pool's).
    context = multiprocessing.get_context("spawn")
    with context.Pool(SLICE_WORKERS, initializer=use_plan, initargs=(plan,)) as pool:
        pending: deque[AsyncResult[Slice]] = deque()
        for bound in bounds:
            pending.append(pool.apply_async(make_planned_slice, bound))
            if len(pending) > 2 * SLICE_WORKERS:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def fill_event_rollups(
    cursor: Any, *, first_transaction: int, first_event: int | None
) -> None:
    """The event rollups of migration 0006 (COPY in replica mode skips their
    triggers), summed from the events in SQL.

    With `first_event`, from that event on, added to the buckets already there.
    Without (after a reset: every event is new and the rollups are empty), no
    filter, which lets the tag rollup read its covering index alone, and no ON
    CONFLICT, which costs ~40% more per row.
    """
    where = "WHERE id >= %(first_event)s" if first_event else ""
    # Buckets are counted from the triggers' date_bin origin.
    params = {"first_event": first_event, "origin": ORIGIN}

    def adding(key: str) -> str:
        if not first_event:
            return ""
        return f" ON CONFLICT ({key}) DO UPDATE SET kwh = r.kwh + EXCLUDED.kwh"

    # Room to hash the 35k quarter hours of a year instead of sorting 10M rows.
    cursor.execute("SET LOCAL work_mem = '256MB'")
    cursor.execute(
        "INSERT INTO energy_by_quarter_hour AS r (bucket, kwh)"
        " SELECT date_bin('15 minutes', \"readingAt\", %(origin)s),"
        f' SUM("kwhDelta") FROM synced_transaction_events {where} GROUP BY 1'
        + adding("bucket"),
        params,
    )
    # In key order, so the primary key fills left to right.
    cursor.execute(
        'INSERT INTO tag_energy_by_hour AS r ("ocppIdTag", hour, kwh)'
        ' SELECT "ocppIdTag", date_bin(\'1 hour\', "readingAt", %(origin)s),'
        f' SUM("kwhDelta") FROM synced_transaction_events {where}'
        " GROUP BY 1, 2 ORDER BY 1, 2" + adding('"ocppIdTag", hour'),
        params,
    )
    # Each seeded transaction's lastReadingAt is its last event's readingAt.
    cursor.execute(
        'INSERT INTO session_last_readings ("transactionId", "lastReadingAt")'
        ' SELECT id, "lastReadingAt" FROM transaction_sync_state'
        ' WHERE id >= %s AND "lastReadingAt" IS NOT NULL',
        [first_transaction],
    )


def recount_sessions(cursor: Any) -> None:
    """Bring the session counts up to date; COPY in replica mode skips their
    triggers."""
    cursor.execute(
        "UPDATE session_counts AS c SET sessions = (SELECT count(*)"
        ' FROM transaction_sync_state AS t WHERE t."isFinalized" = c."isFinalized")'
    )
    cursor.execute("DELETE FROM session_counts_by_quarter_hour")
    cursor.execute(
        'INSERT INTO session_counts_by_quarter_hour (bucket, "isFinalized", sessions)'
        " SELECT date_bin('15 minutes', \"updatedAt\", TIMESTAMPTZ '2000-01-01Z'),"
        ' "isFinalized", count(*) FROM transaction_sync_state GROUP BY 1, 2'
    )
