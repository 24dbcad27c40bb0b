"""A closed session is no longer suspected stuck: the sync clears the flag when it
closes one, and this clears it on those closed before it did."""

from django.db import migrations

CLEAR = """
UPDATE transaction_sync_state SET "isSuspectedStuck" = false
 WHERE "isFinalized" AND "isSuspectedStuck"
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0028_charger_name_sort_key_folded"),
    ]

    operations = [
        migrations.RunSQL(CLEAR, migrations.RunSQL.noop),
    ]
