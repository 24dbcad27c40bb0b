"""A reservation its own charge used up: the station consumes a reservation when
its tag starts a transaction on its connector (OCPP), and from then on it holds
nothing, though its end may be ahead.

Statement-level triggers mark it `used` in the same transaction as the write that
stores that charge, like the session rollups (sync 0005, 0006): pages then read a
status instead of looking for the charge on every request.
"""

from django.db import migrations, models

MARK_USED = """
    UPDATE reservations AS r SET status = 'used'
      FROM new_rows AS t
     WHERE r.status = 'active'
       AND r.charger_id = t."chargerId"
       AND r.id_tag = t."ocppIdTag"
       AND t."startedAt" >= r.starts_at
       AND t."startedAt" < r.ends_at
"""

FORWARD = f"""
CREATE FUNCTION reservations_mark_used() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {MARK_USED};
    RETURN NULL;
END $$;

-- Transition tables allow one event per trigger: the sync inserts new sessions and
-- updates known ones (the charger link can come with a later run).
CREATE TRIGGER reservations_used_on_insert AFTER INSERT ON transaction_sync_state
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION reservations_mark_used();
CREATE TRIGGER reservations_used_on_update AFTER UPDATE ON transaction_sync_state
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION reservations_mark_used();

WITH new_rows AS (SELECT * FROM transaction_sync_state) {MARK_USED};
"""

BACKWARD = """
DROP TRIGGER reservations_used_on_update ON transaction_sync_state;
DROP TRIGGER reservations_used_on_insert ON transaction_sync_state;
DROP FUNCTION reservations_mark_used();
UPDATE reservations SET status = 'active' WHERE status = 'used';
"""


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0001_initial"),
        ("sync", "0012_transaction_manual_stop"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reservation",
            name="status",
            field=models.CharField(
                choices=[
                    ("active", "Active"),
                    ("used", "Used"),
                    ("cancelled", "Cancelled"),
                ],
                default="active",
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="reservation",
            index=models.Index(
                condition=models.Q(("status", "active")),
                fields=["charger", "ends_at"],
                name="reservation_active_charger",
            ),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
