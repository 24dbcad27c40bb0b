"""Idempotency-Keys sent before the caller was stored were kept per session owner:
the owner is the best known caller, and (owner, key) was already unique."""

from django.db import migrations
from django.db.models import F


def backfill(apps, schema_editor):
    ApiSession = apps.get_model("sessions_app", "ApiSession")
    ApiSession.objects.exclude(idempotency_key="").filter(
        idempotency_caller__isnull=True
    ).update(idempotency_caller=F("user"))


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0005_remove_apisession_api_session_idempotency_key_and_more"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
