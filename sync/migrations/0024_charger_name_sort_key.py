"""Chargers sort by their name as people read its numbers: "Bay 4" before "Bay 12".

The key is the name with each run of digits zero-padded to ten (a run longer than
ten is kept whole): every run first gets ten zeros more, then keeps its last ten
digits. The embedded PostgreSQL has no ICU for a numeric collation, and computing
the key in each query cost about 15 ms for 2,000 chargers. A trigger keeps it, so
the sync's inserts, seed_scale's COPY, renames and Django admin all get it; a
generated column would too, but Django's system check then connects to the
database before every manage.py command, which could no longer say in its own
words that the database is unreachable. Setting the key fires on the columns
themselves only: the sync's check-ins rewrite chargers every run.
"""

from django.db import migrations, models

FORWARD = r"""
CREATE FUNCTION charger_name_sort_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(
        regexp_replace(name, '(\d+)', '0000000000\1', 'g'), '0*(\d{10})', '\1', 'g'
    )
$$;

CREATE FUNCTION chargers_set_name_sort_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_sort_key := charger_name_sort_key(NEW.friendly_name);
    RETURN NEW;
END $$;

CREATE TRIGGER chargers_name_sort_key
    BEFORE INSERT OR UPDATE OF friendly_name, name_sort_key ON chargers
    FOR EACH ROW EXECUTE FUNCTION chargers_set_name_sort_key();

UPDATE chargers SET name_sort_key = charger_name_sort_key(friendly_name);
"""

BACKWARD = """
DROP TRIGGER chargers_name_sort_key ON chargers;
DROP FUNCTION chargers_set_name_sort_key();
DROP FUNCTION charger_name_sort_key(text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0023_transaction_sync_state_connector_started"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="charger",
            options={"ordering": ["name_sort_key", "charge_box_id", "connector_id"]},
        ),
        migrations.AddField(
            model_name="charger",
            name="name_sort_key",
            field=models.TextField(db_default="", editable=False),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
