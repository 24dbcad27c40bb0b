"""Recompute every trigger-kept rollup from its base table and compare."""

from unittest import TestCase

from django.db import connection

ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

# (rollup as kept, the same rollup recomputed); rows that went to zero don't count.
ROLLUPS = {
    "session_counts": (
        'SELECT "isFinalized", sessions FROM session_counts WHERE sessions <> 0',
        'SELECT "isFinalized", count(*) FROM transaction_sync_state GROUP BY 1',
    ),
    "session_counts_by_quarter_hour": (
        'SELECT bucket, "isFinalized", sessions FROM session_counts_by_quarter_hour'
        " WHERE sessions <> 0",
        f'SELECT date_bin(\'15 minutes\', "updatedAt", {ORIGIN}), "isFinalized",'
        " count(*) FROM transaction_sync_state GROUP BY 1, 2",
    ),
    "energy_by_quarter_hour": (
        "SELECT bucket, kwh FROM energy_by_quarter_hour WHERE kwh <> 0",
        f'SELECT date_bin(\'15 minutes\', "readingAt", {ORIGIN}), SUM("kwhDelta")'
        ' FROM synced_transaction_events GROUP BY 1 HAVING SUM("kwhDelta") <> 0',
    ),
    "tag_energy_by_hour": (
        'SELECT "ocppIdTag", hour, kwh FROM tag_energy_by_hour WHERE kwh <> 0',
        f'SELECT "ocppIdTag", date_bin(\'1 hour\', "readingAt", {ORIGIN}),'
        ' SUM("kwhDelta") FROM synced_transaction_events GROUP BY 1, 2'
        ' HAVING SUM("kwhDelta") <> 0',
    ),
    "session_last_readings": (
        'SELECT "transactionId", "lastReadingAt" FROM session_last_readings',
        'SELECT "transactionId", MAX("readingAt") FROM synced_transaction_events'
        " GROUP BY 1",
    ),
}


def assert_rollups_exact(test: TestCase) -> None:
    with connection.cursor() as cursor:
        for name, (kept_sql, real_sql) in ROLLUPS.items():
            cursor.execute(kept_sql)
            kept = sorted(cursor.fetchall())
            cursor.execute(real_sql)
            real = sorted(cursor.fetchall())
            test.assertEqual(kept, real, f"{name} differs from its base table")
