"""The dashboard's recently failed Starts found among the few sessions cancelled
lately, not in each customer's whole history (see ApiSession.Meta)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0011_apitoken_expires_at"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="apisession",
            index=models.Index(
                condition=models.Q(("status", "cancelled")),
                fields=["ended_at"],
                name="api_session_cancelled_ended",
            ),
        ),
    ]
