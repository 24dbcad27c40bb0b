"""Sessions whose remote start was sent before the column existed had its outcome
stored with it: mark them returned, so none is taken for a start cut off in its
worker and sent again."""

from django.db import migrations
from django.db.models import F


def backfill(apps, schema_editor):
    ApiSession = apps.get_model("sessions_app", "ApiSession")
    ApiSession.objects.filter(
        remote_start_sent_at__isnull=False, remote_start_returned_at__isnull=True
    ).update(remote_start_returned_at=F("remote_start_sent_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0003_apisession_remote_start_returned_at"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
