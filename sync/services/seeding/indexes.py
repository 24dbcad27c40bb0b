"""Around the bulk COPY: the secondary indexes and unique constraints dropped
before it into empty tables and rebuilt after, and the id sequences moved past the
ids the seed wrote itself."""

import logging
from typing import Any

from sync.services.seeding.setup import SEEDED_TABLES

logger = logging.getLogger(__name__)

BULK_TABLES = ["transaction_sync_state", "synced_transaction_events"]


def bulk_tables_empty(cursor: Any) -> bool:
    cursor.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM transaction_sync_state)"
        " AND NOT EXISTS (SELECT 1 FROM synced_transaction_events)"
    )
    return bool(cursor.fetchone()[0])


def drop_secondary_indexes(cursor: Any) -> list[str]:
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


def reset_sequences(cursor: Any) -> None:
    for table in [*SEEDED_TABLES, "auth_user"]:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )
