"""Autovacuum transaction_sync_state by its count of dead rows, not a fifth of it.

The sync rewrites a charging session at each of its readings, and no rewrite is
HOT: updatedAt, which the pages sort by, is indexed. Each leaves a dead version
behind, and an entry for it in every index, the partial indexes of open sessions
included. By default autovacuum waits until a fifth of the table is dead: at a
million sessions, 200,000 rows, most of a day of 300 charges reporting each
minute. Until then every read of the open sessions visits the pages of their
dead versions: after 60,000 of them, the chargers card's statement took 90 ms
instead of 4. Past 2,000 dead rows a vacuum runs (every seven minutes or so at
that rate); on that table it takes well under a second, as it skips the pages
nobody changed.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0021_stop_reason_as_long_as_steves"),
    ]

    operations = [
        migrations.RunSQL(
            """
            ALTER TABLE transaction_sync_state SET (
                autovacuum_vacuum_scale_factor = 0,
                autovacuum_vacuum_threshold = 2000
            )
            """,
            reverse_sql="""
            ALTER TABLE transaction_sync_state RESET (
                autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold
            )
            """,
        ),
    ]
