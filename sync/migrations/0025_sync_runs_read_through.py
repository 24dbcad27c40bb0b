"""The latest run that read SteVe through (succeeded, or partial), by kind.

The console's Stale marks and the portal's delay notice ask for it on every page:
`status IN ('succeeded', 'partial')` is no range of the (kind, status, finished_at)
index, so each asking sorted every run (2.6 ms at 9,000 runs, and a run every
10 s is three million a year). Built concurrently: the sync goes on writing runs.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("sync", "0024_charger_name_sort_key"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="syncrun",
            index=models.Index(
                condition=models.Q(status__in=["succeeded", "partial"]),
                fields=["kind", "-finished_at"],
                name="sync_runs_read_through",
            ),
        ),
    ]
