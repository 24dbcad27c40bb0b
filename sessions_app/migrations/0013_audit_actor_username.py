"""Each audit entry keeps its actor's username: deleting the account emptied
`actor`, and its changes then read as a command's."""

from django.db import migrations, models

FILL = """
UPDATE audit_log AS entry SET actor_username = person.username
  FROM auth_user AS person
 WHERE person.id = entry.actor_id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0012_api_session_cancelled_ended"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="actor_username",
            field=models.CharField(
                blank=True,
                db_default="",
                help_text="The actor's username when the change was made; empty "
                "for a command.",
                max_length=150,
            ),
        ),
        migrations.RunSQL(FILL, migrations.RunSQL.noop),
    ]
