"""Indexes and the daily energy rollup that keep the console fast at 10M events.

Everything here is raw SQL on purpose: the indexes use features the model layer
cannot express on these tables without touching models.py (INCLUDE columns, a
trigram GIN opclass), and the rollup is maintained by statement-level triggers, so
every writer (the sync's bulk inserts, its vanished-transaction path, the seeder,
test factories) keeps it exact in the same transaction as the events it adds.

session_energy_daily: one row per (UTC day of readingAt, transaction) with the
sum of kwhDelta. The stat strip reads six full days from it (~20k rows at 1M
sessions) instead of ~200k raw events.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

ROLLUP = """
CREATE TABLE session_energy_daily (
    day date NOT NULL,
    "transactionId" bigint NOT NULL,
    kwh numeric(14, 3) NOT NULL DEFAULT 0,
    PRIMARY KEY (day, "transactionId")
);

CREATE FUNCTION session_energy_daily_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_energy_daily (day, "transactionId", kwh)
    SELECT ("readingAt" AT TIME ZONE 'UTC')::date, "transactionId", SUM("kwhDelta")
      FROM new_events
     GROUP BY 1, 2
    ON CONFLICT (day, "transactionId")
    DO UPDATE SET kwh = session_energy_daily.kwh + EXCLUDED.kwh;
    RETURN NULL;
END $$;

CREATE FUNCTION session_energy_daily_remove() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Rare (transactions deleted by hand or by cascade): recompute the touched keys.
    DELETE FROM session_energy_daily AS r
     USING (SELECT DISTINCT ("readingAt" AT TIME ZONE 'UTC')::date AS day,
                   "transactionId" AS tx FROM old_events) AS o
     WHERE r.day = o.day AND r."transactionId" = o.tx;
    INSERT INTO session_energy_daily (day, "transactionId", kwh)
    SELECT ("readingAt" AT TIME ZONE 'UTC')::date, e."transactionId", SUM(e."kwhDelta")
      FROM synced_transaction_events AS e
     WHERE e."transactionId" IN (SELECT "transactionId" FROM old_events)
     GROUP BY 1, 2
    ON CONFLICT (day, "transactionId") DO UPDATE SET kwh = EXCLUDED.kwh;
    RETURN NULL;
END $$;

CREATE FUNCTION session_energy_daily_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE session_energy_daily;
    RETURN NULL;
END $$;

CREATE TRIGGER session_energy_daily_on_insert
    AFTER INSERT ON synced_transaction_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_energy_daily_add();

CREATE TRIGGER session_energy_daily_on_delete
    AFTER DELETE ON synced_transaction_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_energy_daily_remove();

CREATE TRIGGER session_energy_daily_on_truncate
    AFTER TRUNCATE ON synced_transaction_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_energy_daily_clear();

INSERT INTO session_energy_daily (day, "transactionId", kwh)
SELECT ("readingAt" AT TIME ZONE 'UTC')::date, "transactionId", SUM("kwhDelta")
  FROM synced_transaction_events
 GROUP BY 1, 2;
"""

ROLLUP_REVERSE = """
DROP TRIGGER IF EXISTS session_energy_daily_on_insert ON synced_transaction_events;
DROP TRIGGER IF EXISTS session_energy_daily_on_delete ON synced_transaction_events;
DROP TRIGGER IF EXISTS session_energy_daily_on_truncate ON synced_transaction_events;
DROP FUNCTION IF EXISTS session_energy_daily_add();
DROP FUNCTION IF EXISTS session_energy_daily_remove();
DROP FUNCTION IF EXISTS session_energy_daily_clear();
DROP TABLE IF EXISTS session_energy_daily;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0002_remove_transactionsyncstate_tss_updated_keyset_and_more"),
    ]

    operations = [
        TrigramExtension(),
        # Tag filter: case-insensitive substring on user_mappings.steveOcppIdTag.
        migrations.RunSQL(
            'CREATE INDEX um_tag_trgm ON user_mappings USING gin '
            '("steveOcppIdTag" gin_trgm_ops)',
            "DROP INDEX IF EXISTS um_tag_trgm",
        ),
        # Energy windows (stat strip edge day, portal usage): index-only scans.
        migrations.RunSQL(
            'CREATE INDEX ste_reading_energy ON synced_transaction_events '
            '("readingAt") INCLUDE ("kwhDelta", "transactionId")',
            "DROP INDEX IF EXISTS ste_reading_energy",
        ),
        # Portal usage: a customer's energy per day, read from the index alone.
        migrations.RunSQL(
            'CREATE INDEX ste_tag_reading_energy ON synced_transaction_events '
            '("ocppIdTag", "readingAt") INCLUDE ("kwhDelta")',
            "DROP INDEX IF EXISTS ste_tag_reading_energy",
        ),
        migrations.RunSQL(ROLLUP, ROLLUP_REVERSE),
    ]
