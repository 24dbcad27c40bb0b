"""Exact session counts by isFinalized, kept by statement-level triggers.

"N sessions match current filters" for the unfiltered view and "Active now" read two
rows instead of counting a million. Triggers keep the counts in the same transaction
as every write (the sync's upserts, vanished sessions, test factories), so they are
never stale; bulk loads that bypass triggers recount (see
sync/services/seeding/history.py).
"""

from django.db import migrations

FORWARD = """
CREATE TABLE session_counts (
    "isFinalized" boolean PRIMARY KEY,
    sessions bigint NOT NULL
);
INSERT INTO session_counts ("isFinalized", sessions)
SELECT state, (SELECT count(*) FROM transaction_sync_state
                WHERE "isFinalized" = state)
  FROM (VALUES (true), (false)) AS states(state);

CREATE FUNCTION session_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_counts AS c SET sessions = c.sessions + d.n
      FROM (SELECT "isFinalized" AS state, count(*) AS n FROM new_rows GROUP BY 1) AS d
     WHERE c."isFinalized" = d.state;
    RETURN NULL;
END $$;

CREATE FUNCTION session_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_counts AS c SET sessions = c.sessions - d.n
      FROM (SELECT "isFinalized" AS state, count(*) AS n FROM old_rows GROUP BY 1) AS d
     WHERE c."isFinalized" = d.state;
    RETURN NULL;
END $$;

CREATE FUNCTION session_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_counts AS c SET sessions = c.sessions + d.n
      FROM (SELECT state, sum(n) AS n FROM (
                SELECT "isFinalized" AS state, count(*) AS n FROM new_rows GROUP BY 1
                UNION ALL
                SELECT "isFinalized", -count(*) FROM old_rows GROUP BY 1) AS moves
             GROUP BY state) AS d
     WHERE c."isFinalized" = d.state AND d.n <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION session_counts_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE session_counts SET sessions = 0;
    RETURN NULL;
END $$;

CREATE TRIGGER session_counts_on_insert AFTER INSERT ON transaction_sync_state
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_counts_add();
CREATE TRIGGER session_counts_on_delete AFTER DELETE ON transaction_sync_state
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_counts_remove();
CREATE TRIGGER session_counts_on_update AFTER UPDATE ON transaction_sync_state
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION session_counts_move();
CREATE TRIGGER session_counts_on_truncate AFTER TRUNCATE ON transaction_sync_state
    FOR EACH STATEMENT EXECUTE FUNCTION session_counts_clear();
"""

BACKWARD = """
DROP TRIGGER session_counts_on_truncate ON transaction_sync_state;
DROP TRIGGER session_counts_on_update ON transaction_sync_state;
DROP TRIGGER session_counts_on_delete ON transaction_sync_state;
DROP TRIGGER session_counts_on_insert ON transaction_sync_state;
DROP FUNCTION session_counts_clear();
DROP FUNCTION session_counts_move();
DROP FUNCTION session_counts_remove();
DROP FUNCTION session_counts_add();
DROP TABLE session_counts;
"""


class Migration(migrations.Migration):
    dependencies = [("sync", "0004_syncrun_sync_runs_newest")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
