"""Setup of a seed: the reset or the refusal to seed over synced sessions, the
first free ids, and the rows the history hangs from (customers, chargers, tag
mappings and the hourly sync runs), each written with one COPY."""

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.utils import timezone

from sync.models import TransactionSyncState
from sync.seeding_rows import HEAVY_CUSTOMERS, HISTORY_DAYS

logger = logging.getLogger(__name__)

SEEDED_TABLES = [
    "synced_transaction_events",
    "transaction_sync_state",
    "user_mappings",
    "sync_runs",
    "chargers",
]
SCALE_USER_PREFIX = "scale-"
# Seeded charge boxes' ids begin with it; a real sync's never do.
SCALE_BOX_PREFIX = "SCALE-"
# Every seeded customer signs in with this password (the benchmark logs them in).
SCALE_PASSWORD = "scale-password"
MAPPED_SHARE = 0.9
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Ids:
    """First free ids, so a seed can append to a database that has rows."""

    user: int
    charger: int
    transaction: int
    steve_transaction: int
    event: int
    run: int
    mapping: int


def reset_seeded() -> None:
    with connection.cursor() as cursor:
        # Triggers on the truncated tables empty the rollups too.
        tables = ", ".join(SEEDED_TABLES)
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    get_user_model().objects.filter(username__startswith=SCALE_USER_PREFIX).delete()


def refuse_synced_sessions() -> None:
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
            "transaction ids SteVe hands out next. Seed an empty database, or "
            "replace its charging data with `manage.py seed_scale --reset` (never "
            "on production)."
        )


def next_ids() -> Ids:
    def top(table: str, column: str = "id") -> int:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT COALESCE(MAX("{column}"), 0) + 1 FROM {table}')
            return int(cursor.fetchone()[0])

    return Ids(
        user=top("auth_user"),
        charger=top("chargers"),
        transaction=top("transaction_sync_state"),
        steve_transaction=top("transaction_sync_state", "steveTransactionId"),
        event=top("synced_transaction_events"),
        run=top("sync_runs"),
        mapping=top("user_mappings"),
    )


def skip_fk_checks(cursor: Any) -> bool:
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


def create_customers(ids: Ids, count: int, batch: str) -> list[int]:
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


def copy_chargers(
    cursor: Any, ids: Ids, count: int, batch: str, now: datetime
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


def copy_mappings(
    cursor: Any,
    ids: Ids,
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


def heavy_tags(tags: list[tuple[str, int | None]], user_ids: list[int]) -> list[str]:
    heavy_users = set(user_ids[:HEAVY_CUSTOMERS])
    return [tag for tag, user in tags if user in heavy_users]


def copy_sync_runs(
    cursor: Any, ids: Ids, now: datetime, transactions: int, per_tx: int, charging: int
) -> list[int]:
    """One transactions run per hour over the history (the beat's shape), each
    having created that hour's share of the transactions and updated the
    `charging` sessions."""
    hours = HISTORY_DAYS * 24 + 1
    first = now - timedelta(hours=hours)
    created = transactions // hours
    updated = charging
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
