"""Fill the database with a year of realistic charging history, fast.

`seed_scale` exists so the benchmark (and anyone curious about scale) can get a
million transactions into Postgres in minutes: rows are generated as COPY text by
worker processes (`sync.seeding_rows`) and streamed with COPY (psycopg 3
`cursor.copy()`), never ORM loops.

The data keeps the sync's invariants: every transaction's kwhDelivered is the sum
of its events' kwhDelta, deltas are never negative, and (transaction, eventType,
readingAt, meterWh) is unique. About 300 sessions are still charging, ~90% of the
tags are mapped to customers, and a few heavy customers own thousands of sessions.
"""

import logging
import multiprocessing
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.pool import AsyncResult
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from sync.models import TransactionSyncState
from sync.rollups import ORIGIN
from sync.seeding_rows import (
    ACTIVE_SESSIONS,
    HEAVY_CUSTOMERS,
    HISTORY_DAYS,
    Slice,
    TransactionPlan,
    make_planned_slice,
    make_slice,
    use_plan,
)

logger = logging.getLogger(__name__)

SEEDED_TABLES = [
    "synced_transaction_events",
    "transaction_sync_state",
    "user_mappings",
    "sync_runs",
    "chargers",
]
# Kept by triggers (migrations 0005 and 0006), rebuilt here after a fast load.
ROLLUP_TABLES = [
    "energy_by_quarter_hour",
    "tag_energy_by_hour",
    "session_last_readings",
    "session_counts_by_quarter_hour",
]
SCALE_USER_PREFIX = "scale-"
# Seeded charge boxes' ids begin with it; a real sync's never do.
SCALE_BOX_PREFIX = "SCALE-"
# Every seeded customer signs in with this password (the benchmark logs them in).
SCALE_PASSWORD = "scale-password"
MAPPED_SHARE = 0.9
COPY_CHUNK = 1 << 20
# Transactions per slice a worker makes (~30 MB of COPY text with 10 events each),
# and how many workers: with two, generation keeps up with what one Postgres
# backend ingests.
SLICE_TRANSACTIONS = 25_000
SLICE_WORKERS = 2

Progress = Callable[[str], None]


@dataclass
class SeedResult:
    transactions: int = 0
    events: int = 0
    customers: int = 0
    tags: int = 0
    mapped_tags: int = 0
    chargers: int = 0
    sync_runs: int = 0
    active: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ids:
    """First free ids, so a seed can append to a database that has rows."""

    user: int
    charger: int
    transaction: int
    steve_transaction: int
    event: int
    run: int
    mapping: int


def seed_scale(
    *,
    transactions: int,
    events_per_transaction: int,
    customers: int | None = None,
    chargers: int | None = None,
    reset: bool = False,
    seed: int = 1,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> SeedResult:
    """Generate and COPY the seeded tables; returns counts and phase timings.

    With `reset`, first TRUNCATEs the seeded tables (CASCADE: rows referencing
    them, such as reservations and API sessions, go too) and deletes earlier seeded
    customers. Raises ValueError for sizes that cannot make a valid history.
    """
    if transactions < 1 or events_per_transaction < 2:
        raise ValueError("Need at least 1 transaction and 2 events per transaction.")
    if customers is not None and customers < 1:
        raise ValueError(f"Need at least 1 customer, not {customers}.")
    if chargers is not None and chargers < 1:
        raise ValueError(f"Need at least 1 charger, not {chargers}.")
    say = progress or (lambda message: logger.info("%s", message))
    rng = random.Random(seed)
    now = (now or timezone.now()).astimezone(UTC).replace(microsecond=0)
    if customers is None:
        customers = max(20, transactions // 50)
    if chargers is None:
        chargers = max(20, min(2000, transactions // 500))
    result = SeedResult()
    started = time.monotonic()
    # COPY FREEZE needs the table truncated in the current (sub)transaction.
    freeze = reset and not connection.in_atomic_block

    def phase(name: str, began: float) -> None:
        result.phases[name] = round(time.monotonic() - began, 2)
        say(f"{name}: {result.phases[name]:.1f} s")

    with transaction.atomic():
        if reset:
            began = time.monotonic()
            _reset()
            phase("reset", began)
        if not reset:
            _refuse_synced_sessions()
        ids = _next_ids()
        # Sets this seed's users, chargers and tags apart from earlier seeds': user
        # ids are never reused.
        batch = f"{ids.user:08x}"
        began = time.monotonic()
        user_ids = _create_customers(ids, customers, batch)
        result.customers = len(user_ids)
        phase(f"customers ({len(user_ids)})", began)

        with connection.cursor() as django_cursor:
            cursor = django_cursor.cursor
            fast = _skip_fk_checks(cursor)
            began = time.monotonic()
            charger_keys = _copy_chargers(cursor, ids, chargers, batch, now)
            result.chargers = len(charger_keys)
            tags, mapped = _copy_mappings(cursor, ids, user_ids, rng, batch, now)
            result.tags, result.mapped_tags = len(tags), mapped
            phase(f"chargers ({len(charger_keys)}) and tags ({len(tags)})", began)

            began = time.monotonic()
            runs = _copy_sync_runs(
                cursor, ids, now, transactions, events_per_transaction
            )
            result.sync_runs = len(runs)
            phase(f"sync runs ({len(runs)})", began)

            began = time.monotonic()
            plan = TransactionPlan(
                seed=seed,
                count=transactions,
                per_tx=events_per_transaction,
                first_transaction=ids.transaction,
                first_steve_transaction=ids.steve_transaction,
                first_event=ids.event,
                first_run=ids.run,
                run_count=len(runs),
                now_ts=int(now.timestamp()),
                tags=[tag for tag, _ in tags],
                heavy_tags=_heavy_tags(tags, user_ids),
                chargers=charger_keys,
            )
            rebuilds = (
                _drop_secondary_indexes(cursor) if _bulk_tables_empty(cursor) else []
            )
            result.events, result.active = _copy_transactions(
                cursor, plan, freeze=freeze, say=say
            )
            result.transactions = transactions
            phase(f"transactions ({transactions}) and events ({result.events})", began)
            if rebuilds:
                began = time.monotonic()
                # Lets the leader and the two parallel workers of each build sort
                # their share of ten million events in memory.
                cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
                for statement in rebuilds:
                    cursor.execute(statement)
                phase(f"indexes ({len(rebuilds)})", began)
            if fast:
                began = time.monotonic()
                _fill_event_rollups(
                    cursor,
                    first_transaction=ids.transaction,
                    first_event=None if reset else ids.event,
                )
                phase("energy rollups", began)
            began = time.monotonic()
            _reset_sequences(cursor)
            _recount_sessions(cursor)
            phase("sequences and counts", began)
            began = time.monotonic()
    # With wal_level=minimal (the embedded server) the commit writes out the
    # files COPY filled instead of their WAL.
    phase("commit", began)
    began = time.monotonic()
    with connection.cursor() as cursor:
        # VACUUM sets the visibility map, so counts become index-only scans; it
        # cannot run inside a transaction (tests), where ANALYZE has to do.
        verb = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"
        for table in [*SEEDED_TABLES, *ROLLUP_TABLES, "auth_user"]:
            cursor.execute(f"{verb} {table}")
    phase("vacuum analyze", began)
    result.seconds = round(time.monotonic() - started, 1)
    return result


# Setup


def _reset() -> None:
    with connection.cursor() as cursor:
        # Triggers on the truncated tables empty the rollups too.
        tables = ", ".join(SEEDED_TABLES)
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    get_user_model().objects.filter(username__startswith=SCALE_USER_PREFIX).delete()


def _refuse_synced_sessions() -> None:
    """Raise ValueError when the database holds sessions a real sync wrote (at a
    charge box not of a seed): seeded transactions would take SteVe pks after
    them, which SteVe hands out next, and the sync would take those rows for
    its own."""
    synced = (
        TransactionSyncState.objects.exclude(charge_box_id__startswith=SCALE_BOX_PREFIX)
        .values_list("steve_transaction_id", "charge_box_id")
        .first()
    )
    if synced is not None:
        pk, box = synced
        raise ValueError(
            f"This database holds sessions synced from SteVe (transaction {pk} at "
            f"{box}, among others): seeded transactions would take the SteVe "
            "transaction ids SteVe hands out next. Seed an empty database, or add "
            "--reset to replace its charging data (never on production)."
        )


def _next_ids() -> _Ids:
    def top(table: str, column: str = "id") -> int:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT COALESCE(MAX("{column}"), 0) + 1 FROM {table}')
            return int(cursor.fetchone()[0])

    return _Ids(
        user=top("auth_user"),
        charger=top("chargers"),
        transaction=top("transaction_sync_state"),
        steve_transaction=top("transaction_sync_state", "steveTransactionId"),
        event=top("synced_transaction_events"),
        run=top("sync_runs"),
        mapping=top("user_mappings"),
    )


def _skip_fk_checks(cursor: Any) -> bool:
    """Skip per-row foreign key triggers for this transaction when allowed.

    Every id the seed writes is generated here and points at a row it wrote, so
    the checks add nothing but 10M trigger calls. Needs superuser (the embedded
    server); elsewhere the seed is slower but identical. It also skips the rollup
    triggers, so the caller then writes the rollups itself.
    """
    try:
        cursor.execute("SAVEPOINT seed_replica")
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("RELEASE SAVEPOINT seed_replica")
        return True
    except Exception:
        cursor.execute("ROLLBACK TO SAVEPOINT seed_replica")
        return False


def _create_customers(ids: _Ids, count: int, batch: str) -> list[int]:
    User = get_user_model()
    password = make_password(SCALE_PASSWORD)
    joined = timezone.now()
    users = [
        User(
            id=ids.user + n,
            username=f"{SCALE_USER_PREFIX}{batch}-{n:06d}@example.test",
            email=f"{SCALE_USER_PREFIX}{batch}-{n:06d}@example.test",
            first_name="Driver",
            last_name=f"{n:06d}",
            password=password,
            date_joined=joined,
        )
        for n in range(count)
    ]
    User.objects.bulk_create(users, batch_size=5000)
    return [user.id for user in users]


def _copy_lines(cursor: Any, statement: str, lines: Iterator[str]) -> int:
    """COPY tab-separated `lines` in ~1 MB writes; returns how many rows went."""
    written = 0
    with cursor.copy(statement) as copy:
        buffer: list[str] = []
        size = 0
        for line in lines:
            buffer.append(line)
            size += len(line)
            written += 1
            if size >= COPY_CHUNK:
                copy.write("".join(buffer))
                buffer, size = [], 0
        if buffer:
            copy.write("".join(buffer))
    return written


def _copy_chargers(
    cursor: Any, ids: _Ids, count: int, batch: str, now: datetime
) -> list[tuple[int, str, int]]:
    stamp = now.isoformat()
    keys = [
        (ids.charger + n, f"{SCALE_BOX_PREFIX}{batch}-CB{n // 2:05d}", n % 2 + 1)
        for n in range(count)
    ]
    types = ["Type 2", "CCS", "CHAdeMO"]
    powers = ["11.0", "22.0", "50.0", "150.0"]
    lines = (
        f"{pk}\t{box}\t{connector}\tStation {n // 2 + 1} ({box[-7:]})\t"
        f"{types[n % 3]}\t{powers[n % 4]}\tt\t{stamp}\t{stamp}\t{stamp}\n"
        for n, (pk, box, connector) in enumerate(keys)
    )
    _copy_lines(
        cursor,
        "COPY chargers (id, charge_box_id, connector_id, friendly_name, "
        "connector_type, max_power_kw, is_public, last_check_in_at, created_at, "
        "updated_at) FROM STDIN",
        lines,
    )
    return keys


def _copy_mappings(
    cursor: Any,
    ids: _Ids,
    user_ids: list[int],
    rng: random.Random,
    batch: str,
    now: datetime,
) -> tuple[list[tuple[str, int | None]], int]:
    """Tags (1-3 per customer, plus ~10% unmapped ones); returns (tag, user) pairs
    with None for unmapped tags, and how many are mapped."""
    tags: list[tuple[str, int | None]] = []
    for user_id in user_ids:
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            tags.append((f"{batch.upper()}{len(tags):07X}", user_id))
    mapped = len(tags)
    unmapped = max(1, round(mapped * (1 - MAPPED_SHARE) / MAPPED_SHARE))
    for _ in range(unmapped):
        tags.append((f"{batch.upper()}{len(tags):07X}", None))
    stamp = now.isoformat()
    lines = (
        f"{ids.mapping + n}\t{tag}\t{user}\tCard {n + 1}\tcus_{user:08d}\tt\t"
        f"{stamp}\t{stamp}\n"
        for n, (tag, user) in enumerate(tags[:mapped])
        if user is not None
    )
    _copy_lines(
        cursor,
        'COPY user_mappings (id, "steveOcppIdTag", "userId", label, '
        '"billingCustomerId", "isActive", "createdAt", "updatedAt") FROM STDIN',
        lines,
    )
    rng.shuffle(tags)
    return tags, mapped


def _heavy_tags(tags: list[tuple[str, int | None]], user_ids: list[int]) -> list[str]:
    heavy_users = set(user_ids[:HEAVY_CUSTOMERS])
    return [tag for tag, user in tags if user in heavy_users]


def _copy_sync_runs(
    cursor: Any, ids: _Ids, now: datetime, transactions: int, per_tx: int
) -> list[int]:
    """One transactions run per hour over the history (the beat's shape), each
    having created that hour's share of the transactions and updated the sessions
    that were still charging."""
    hours = HISTORY_DAYS * 24 + 1
    first = now - timedelta(hours=hours)
    created = transactions // hours
    updated = min(ACTIVE_SESSIONS, transactions)
    lines = (
        f"{ids.run + n}\ttransactions\tbeat\t"
        f"{(first + timedelta(hours=n)).isoformat()}\t"
        f"{(first + timedelta(hours=n, seconds=2)).isoformat()}\tsucceeded\t"
        f"{created + updated}\t{created}\t{updated}\t{created * per_tx}\t0\t\n"
        for n in range(hours)
    )
    _copy_lines(
        cursor,
        "COPY sync_runs (id, kind, trigger, started_at, finished_at, status, "
        "fetched_count, created_count, updated_count, events_count, errors_count, "
        "error) FROM STDIN",
        lines,
    )
    return list(range(ids.run, ids.run + hours))


# Transactions and events

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


def _copy_transactions(
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


def _fill_event_rollups(
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


BULK_TABLES = ["transaction_sync_state", "synced_transaction_events"]


def _bulk_tables_empty(cursor: Any) -> bool:
    cursor.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM transaction_sync_state)"
        " AND NOT EXISTS (SELECT 1 FROM synced_transaction_events)"
    )
    return bool(cursor.fetchone()[0])


def _drop_secondary_indexes(cursor: Any) -> list[str]:
    """Drop the bulk tables' indexes and unique constraints other than primary
    keys; return the statements that rebuild them.

    Into empty tables, building each index once after COPY is several times faster
    than updating it per row. Primary keys stay (foreign keys need them, and ids
    arrive in order, so they grow at the right edge). Unique constraints come back
    with ADD CONSTRAINT, so a duplicate still fails the seed. The definitions are
    the migrations' own, read back from the catalog.
    """
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
          FROM pg_constraint AS c
         WHERE c.contype = 'u' AND c.conrelid::regclass::text = ANY(%s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint AS f
                            WHERE f.contype = 'f' AND f.conindid = c.conindid)
        """,
        [BULK_TABLES],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT indexname, indexdef FROM pg_indexes AS i
         WHERE tablename = ANY(%s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c
                            WHERE c.conname = i.indexname)
        """,
        [BULK_TABLES],
    )
    indexes = cursor.fetchall()
    for table, name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return [
        *(
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for table, name, definition in constraints
        ),
        *(definition for _, definition in indexes),
    ]


def _recount_sessions(cursor: Any) -> None:
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


def _reset_sequences(cursor: Any) -> None:
    for table in [*SEEDED_TABLES, "auth_user"]:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )
