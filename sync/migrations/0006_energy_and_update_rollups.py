"""Rollups that answer the stat strip, date-range counts and portal usage without
reading millions of rows; they replace session_energy_daily.

All four are kept exact by statement-level triggers, in the same transaction as
the writes they follow (the sync's bulk inserts and updates, the vanished path,
test factories). Bulk loads that skip triggers rebuild them
(sync/services/seeding/history.py).
Buckets use date_bin from a UTC origin, so they never depend on a session's TimeZone.

energy_by_quarter_hour: kwhDelta of every event per 15 minutes of readingAt. The
    7-day energy is ~670 rows plus the events of one partial bucket.
session_last_readings: the latest readingAt of each transaction's events. The
    sessions with events in a window are those whose latest reading is inside it.
tag_energy_by_hour: kwhDelta per idTag per hour of readingAt: a customer's usage
    by local day, for every zone whose midnights fall on the hour.
session_counts_by_quarter_hour: sessions per 15 minutes of updatedAt and
    isFinalized. Local midnights fall on quarter hours in every zone, so "Sessions
    today" and a From/To range count are sums of whole buckets.
"""

from django.db import migrations

ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

EVENT_ROLLUPS = f"""
DROP TRIGGER session_energy_daily_on_insert ON synced_transaction_events;
DROP TRIGGER session_energy_daily_on_delete ON synced_transaction_events;
DROP TRIGGER session_energy_daily_on_truncate ON synced_transaction_events;
DROP FUNCTION session_energy_daily_add();
DROP FUNCTION session_energy_daily_remove();
DROP FUNCTION session_energy_daily_clear();
DROP TABLE session_energy_daily;

CREATE TABLE energy_by_quarter_hour (
    bucket timestamptz PRIMARY KEY,
    kwh numeric(16, 3) NOT NULL
);
CREATE TABLE session_last_readings (
    "transactionId" bigint PRIMARY KEY,
    "lastReadingAt" timestamptz NOT NULL
);
CREATE INDEX session_last_readings_at ON session_last_readings ("lastReadingAt");
CREATE TABLE tag_energy_by_hour (
    "ocppIdTag" varchar(255) NOT NULL,
    hour timestamptz NOT NULL,
    kwh numeric(14, 3) NOT NULL,
    PRIMARY KEY ("ocppIdTag", hour)
);

CREATE FUNCTION event_rollups_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO energy_by_quarter_hour AS r (bucket, kwh)
    SELECT date_bin('15 minutes', "readingAt", {ORIGIN}), SUM("kwhDelta")
      FROM new_events GROUP BY 1
    ON CONFLICT (bucket) DO UPDATE SET kwh = r.kwh + EXCLUDED.kwh;

    INSERT INTO tag_energy_by_hour AS r ("ocppIdTag", hour, kwh)
    SELECT "ocppIdTag", date_bin('1 hour', "readingAt", {ORIGIN}), SUM("kwhDelta")
      FROM new_events GROUP BY 1, 2
    ON CONFLICT ("ocppIdTag", hour) DO UPDATE SET kwh = r.kwh + EXCLUDED.kwh;

    INSERT INTO session_last_readings AS r ("transactionId", "lastReadingAt")
    SELECT "transactionId", MAX("readingAt") FROM new_events GROUP BY 1
    ON CONFLICT ("transactionId") DO UPDATE
       SET "lastReadingAt" = GREATEST(r."lastReadingAt", EXCLUDED."lastReadingAt");
    RETURN NULL;
END $$;

CREATE FUNCTION event_rollups_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Rare (transactions deleted by hand or by cascade).
    UPDATE energy_by_quarter_hour AS r SET kwh = r.kwh - o.kwh
      FROM (SELECT date_bin('15 minutes', "readingAt", {ORIGIN}) AS bucket,
                   SUM("kwhDelta") AS kwh
              FROM old_events GROUP BY 1) AS o
     WHERE r.bucket = o.bucket;

    UPDATE tag_energy_by_hour AS r SET kwh = r.kwh - o.kwh
      FROM (SELECT "ocppIdTag" AS tag,
                   date_bin('1 hour', "readingAt", {ORIGIN}) AS hour,
                   SUM("kwhDelta") AS kwh
              FROM old_events GROUP BY 1, 2) AS o
     WHERE r."ocppIdTag" = o.tag AND r.hour = o.hour;

    DELETE FROM session_last_readings
     WHERE "transactionId" IN (SELECT "transactionId" FROM old_events);
    INSERT INTO session_last_readings ("transactionId", "lastReadingAt")
    SELECT e."transactionId", MAX(e."readingAt")
      FROM synced_transaction_events AS e
     WHERE e."transactionId" IN (SELECT "transactionId" FROM old_events)
     GROUP BY 1;
    RETURN NULL;
END $$;

CREATE FUNCTION event_rollups_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE energy_by_quarter_hour, tag_energy_by_hour, session_last_readings;
    RETURN NULL;
END $$;

CREATE TRIGGER event_rollups_on_insert AFTER INSERT ON synced_transaction_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_rollups_add();
CREATE TRIGGER event_rollups_on_delete AFTER DELETE ON synced_transaction_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_rollups_remove();
CREATE TRIGGER event_rollups_on_truncate AFTER TRUNCATE ON synced_transaction_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_rollups_clear();

INSERT INTO energy_by_quarter_hour (bucket, kwh)
SELECT date_bin('15 minutes', "readingAt", {ORIGIN}), SUM("kwhDelta")
  FROM synced_transaction_events GROUP BY 1;
INSERT INTO tag_energy_by_hour ("ocppIdTag", hour, kwh)
SELECT "ocppIdTag", date_bin('1 hour', "readingAt", {ORIGIN}), SUM("kwhDelta")
  FROM synced_transaction_events GROUP BY 1, 2;
INSERT INTO session_last_readings ("transactionId", "lastReadingAt")
SELECT "transactionId", MAX("readingAt") FROM synced_transaction_events GROUP BY 1;
"""

EVENT_ROLLUPS_REVERSE = """
DROP TRIGGER event_rollups_on_truncate ON synced_transaction_events;
DROP TRIGGER event_rollups_on_delete ON synced_transaction_events;
DROP TRIGGER event_rollups_on_insert ON synced_transaction_events;
DROP FUNCTION event_rollups_clear();
DROP FUNCTION event_rollups_remove();
DROP FUNCTION event_rollups_add();
DROP TABLE tag_energy_by_hour;
DROP TABLE session_last_readings;
DROP TABLE energy_by_quarter_hour;

CREATE TABLE session_energy_daily (
    day date NOT NULL,
    "transactionId" bigint NOT NULL,
    kwh numeric(14, 3) NOT NULL DEFAULT 0,
    PRIMARY KEY (day, "transactionId")
);
CREATE FUNCTION session_energy_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_energy_daily (day, "transactionId", kwh)
    SELECT ("readingAt" AT TIME ZONE 'UTC')::date, "transactionId", SUM("kwhDelta")
      FROM new_events GROUP BY 1, 2
    ON CONFLICT (day, "transactionId")
    DO UPDATE SET kwh = session_energy_daily.kwh + EXCLUDED.kwh;
    RETURN NULL;
END $$;
CREATE FUNCTION session_energy_daily_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
CREATE FUNCTION session_energy_daily_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE session_energy_daily;
    RETURN NULL;
END $$;
CREATE TRIGGER session_energy_daily_on_insert AFTER INSERT ON synced_transaction_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_energy_daily_add();
CREATE TRIGGER session_energy_daily_on_delete AFTER DELETE ON synced_transaction_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_energy_daily_remove();
CREATE TRIGGER session_energy_daily_on_truncate AFTER TRUNCATE ON synced_transaction_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_energy_daily_clear();
INSERT INTO session_energy_daily (day, "transactionId", kwh)
SELECT ("readingAt" AT TIME ZONE 'UTC')::date, "transactionId", SUM("kwhDelta")
  FROM synced_transaction_events GROUP BY 1, 2;
"""

UPDATE_COUNTS = f"""
CREATE TABLE session_counts_by_quarter_hour (
    bucket timestamptz NOT NULL,
    "isFinalized" boolean NOT NULL,
    sessions bigint NOT NULL,
    PRIMARY KEY (bucket, "isFinalized")
);

CREATE FUNCTION session_bucket_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_counts_by_quarter_hour AS c (bucket, "isFinalized", sessions)
    SELECT date_bin('15 minutes', "updatedAt", {ORIGIN}), "isFinalized", count(*)
      FROM new_rows GROUP BY 1, 2
    ON CONFLICT (bucket, "isFinalized")
    DO UPDATE SET sessions = c.sessions + EXCLUDED.sessions;
    RETURN NULL;
END $$;

CREATE FUNCTION session_bucket_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_counts_by_quarter_hour AS c SET sessions = c.sessions - o.n
      FROM (SELECT date_bin('15 minutes', "updatedAt", {ORIGIN}) AS bucket,
                   "isFinalized" AS state, count(*) AS n
              FROM old_rows GROUP BY 1, 2) AS o
     WHERE c.bucket = o.bucket AND c."isFinalized" = o.state;
    RETURN NULL;
END $$;

CREATE FUNCTION session_bucket_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_counts_by_quarter_hour AS c (bucket, "isFinalized", sessions)
    SELECT bucket, state, sum(n) FROM (
               SELECT date_bin('15 minutes', "updatedAt", {ORIGIN}) AS bucket,
                      "isFinalized" AS state, count(*) AS n
                 FROM new_rows GROUP BY 1, 2
               UNION ALL
               SELECT date_bin('15 minutes', "updatedAt", {ORIGIN}),
                      "isFinalized", -count(*)
                 FROM old_rows GROUP BY 1, 2) AS moves
     GROUP BY 1, 2 HAVING sum(n) <> 0
    ON CONFLICT (bucket, "isFinalized")
    DO UPDATE SET sessions = c.sessions + EXCLUDED.sessions;
    RETURN NULL;
END $$;

CREATE FUNCTION session_bucket_counts_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE session_counts_by_quarter_hour;
    RETURN NULL;
END $$;

CREATE TRIGGER session_bucket_counts_on_insert AFTER INSERT ON transaction_sync_state
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_bucket_counts_add();
CREATE TRIGGER session_bucket_counts_on_delete AFTER DELETE ON transaction_sync_state
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_bucket_counts_remove();
CREATE TRIGGER session_bucket_counts_on_update AFTER UPDATE ON transaction_sync_state
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_bucket_counts_move();
CREATE TRIGGER session_bucket_counts_on_truncate
    AFTER TRUNCATE ON transaction_sync_state
    FOR EACH STATEMENT EXECUTE FUNCTION session_bucket_counts_clear();

INSERT INTO session_counts_by_quarter_hour (bucket, "isFinalized", sessions)
SELECT date_bin('15 minutes', "updatedAt", {ORIGIN}), "isFinalized", count(*)
  FROM transaction_sync_state GROUP BY 1, 2;
"""

UPDATE_COUNTS_REVERSE = """
DROP TRIGGER session_bucket_counts_on_truncate ON transaction_sync_state;
DROP TRIGGER session_bucket_counts_on_update ON transaction_sync_state;
DROP TRIGGER session_bucket_counts_on_delete ON transaction_sync_state;
DROP TRIGGER session_bucket_counts_on_insert ON transaction_sync_state;
DROP FUNCTION session_bucket_counts_clear();
DROP FUNCTION session_bucket_counts_move();
DROP FUNCTION session_bucket_counts_remove();
DROP FUNCTION session_bucket_counts_add();
DROP TABLE session_counts_by_quarter_hour;
"""


class Migration(migrations.Migration):
    dependencies = [("sync", "0005_session_counts")]

    operations = [
        migrations.RunSQL(EVENT_ROLLUPS, EVENT_ROLLUPS_REVERSE),
        migrations.RunSQL(UPDATE_COUNTS, UPDATE_COUNTS_REVERSE),
    ]
