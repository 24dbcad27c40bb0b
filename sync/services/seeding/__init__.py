"""Fill the database with a year of realistic charging history, fast.

`seed_scale` exists so the benchmark (and anyone curious about scale) can get a
million transactions into Postgres in minutes: rows are generated as COPY text by
worker processes (`sync.seeding_rows`) and streamed with COPY (psycopg 3
`cursor.copy()`), never ORM loops.

The data keeps the sync's invariants: every transaction's kwhDelivered is the sum
of its events' kwhDelta, deltas are never negative, and (transaction, eventType,
readingAt, meterWh) is unique. About 300 sessions are still charging, ~90% of the
tags are mapped to customers, and a few heavy customers own thousands of sessions.

This module runs a seed from start to end (`seed_scale`); its parts live in
`setup` (the reset, the first free ids, customers, chargers, tags and sync runs),
`history` (transactions and events, and the rollups COPY skips) and `indexes`
(the indexes rebuilt after the COPY, and the sequences).
"""

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone

from sync.locks import SEED_LOCK
from sync.seeding_rows import TransactionPlan, charging_count
from sync.services.seeding.history import (
    Progress,
    copy_transactions,
    fill_event_rollups,
    recount_sessions,
)
from sync.services.seeding.indexes import (
    bulk_tables_empty,
    drop_secondary_indexes,
    reset_sequences,
)
from sync.services.seeding.setup import (
    SCALE_BOX_PREFIX,
    SCALE_PASSWORD,
    SCALE_USER_PREFIX,
    SEEDED_TABLES,
    copy_chargers,
    copy_mappings,
    copy_sync_runs,
    create_customers,
    heavy_tags,
    next_ids,
    refuse_synced_sessions,
    reset_seeded,
    skip_fk_checks,
)

__all__ = [
    "ROLLUP_TABLES",
    "SCALE_BOX_PREFIX",
    "SCALE_PASSWORD",
    "SCALE_USER_PREFIX",
    "SEEDED_TABLES",
    "Progress",
    "SeedResult",
    "seed_scale",
    "vacuum_seeded_tables",
]

logger = logging.getLogger(__name__)


def _refuse_a_seed_under_way() -> None:
    """Raise ValueError when another seed is filling this database; otherwise hold
    it off until this transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEED_LOCK])
        (acquired,) = cursor.fetchone()
    if not acquired:
        raise ValueError(
            "Another seed_scale is filling this database; wait until it has "
            "finished, then run this one again."
        )


# Kept by triggers (migrations 0005 and 0006), rebuilt by `history` after a fast
# load.
ROLLUP_TABLES = [
    "energy_by_quarter_hour",
    "tag_energy_by_hour",
    "session_last_readings",
    "session_counts_by_quarter_hour",
]


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
        _refuse_a_seed_under_way()
        if reset:
            began = time.monotonic()
            reset_seeded()
            phase("reset", began)
        if not reset:
            refuse_synced_sessions()
        ids = next_ids()
        # Sets this seed's users, chargers and tags apart from earlier seeds': user
        # ids are never reused.
        batch = f"{ids.user:08x}"
        began = time.monotonic()
        user_ids = create_customers(ids, customers, batch)
        result.customers = len(user_ids)
        phase(f"customers ({len(user_ids)})", began)

        with connection.cursor() as django_cursor:
            cursor = django_cursor.cursor
            fast = skip_fk_checks(cursor)
            began = time.monotonic()
            charger_keys = copy_chargers(cursor, ids, chargers, batch, now)
            result.chargers = len(charger_keys)
            tags, mapped = copy_mappings(cursor, ids, user_ids, rng, batch, now)
            result.tags, result.mapped_tags = len(tags), mapped
            phase(f"chargers ({len(charger_keys)}) and tags ({len(tags)})", began)

            began = time.monotonic()
            runs = copy_sync_runs(
                cursor,
                ids,
                now,
                transactions,
                events_per_transaction,
                charging_count(transactions, len(charger_keys)),
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
                heavy_tags=heavy_tags(tags, user_ids),
                chargers=charger_keys,
            )
            rebuilds = (
                drop_secondary_indexes(cursor) if bulk_tables_empty(cursor) else []
            )
            result.events, result.active = copy_transactions(
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
                fill_event_rollups(
                    cursor,
                    first_transaction=ids.transaction,
                    first_event=None if reset else ids.event,
                )
                phase("energy rollups", began)
            began = time.monotonic()
            reset_sequences(cursor)
            recount_sessions(cursor)
            phase("sequences and counts", began)
            began = time.monotonic()
    # With wal_level=minimal (the embedded server) the commit writes out the
    # files COPY filled instead of their WAL.
    phase("commit", began)
    began = time.monotonic()
    # VACUUM sets the visibility map, so counts become index-only scans.
    vacuum_seeded_tables(analyze=True)
    phase("vacuum analyze", began)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def vacuum_seeded_tables(*, analyze: bool) -> None:
    """VACUUM the tables a seed fills (and the rollups a sync keeps), and with
    `analyze` gather their planner statistics. VACUUM cannot run inside a
    transaction (tests): there only ANALYZE runs, if asked."""
    if connection.in_atomic_block:
        verbs = ["ANALYZE"] if analyze else []
    else:
        verbs = ["VACUUM ANALYZE" if analyze else "VACUUM"]
    with connection.cursor() as cursor:
        for verb in verbs:
            for table in [*SEEDED_TABLES, *ROLLUP_TABLES, "auth_user"]:
                cursor.execute(f"{verb} {table}")
