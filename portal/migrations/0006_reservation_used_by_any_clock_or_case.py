"""A reservation is used by its card's charge on its connector whatever the
station's clock and the card's letter case.

0002 compared the charge's start, by the station's clock, with the reservation's
start, by ours, and the idTags letter for letter. A station whose clock runs a
few minutes behind (CONTRACT §11) stamped the charge its reservation let begin
before the reservation, and a card SteVe spells in another case (OCPP idTags
compare case-insensitively) never matched: the reservation stayed active, the
charger read "reserved" to everyone until its end, and the card stayed held.

Now the charge may be stamped up to 15 minutes before the reservation (the
Sessions API's CLOCK_BEHIND_AT_MOST), provided Polaris first stored it after the
reservation was made (both our clock): an earlier charge of the card there,
synced late, does not use it.
"""

from django.db import migrations

MARK_USED = """
    UPDATE reservations AS r SET status = 'used'
      FROM new_rows AS t
     WHERE r.status = 'active'
       AND r.charger_id = t."chargerId"
       AND upper(r.id_tag) = upper(t."ocppIdTag")
       AND t."createdAt" >= r.created_at
       AND t."startedAt" >= r.starts_at - interval '15 minutes'
       AND t."startedAt" < r.ends_at
"""

PREVIOUS_MARK_USED = """
    UPDATE reservations AS r SET status = 'used'
      FROM new_rows AS t
     WHERE r.status = 'active'
       AND r.charger_id = t."chargerId"
       AND r.id_tag = t."ocppIdTag"
       AND t."startedAt" >= r.starts_at
       AND t."startedAt" < r.ends_at
"""


def _function(mark_used: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION reservations_mark_used() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    {mark_used};
    RETURN NULL;
END $$;
"""


# The active reservations already missed: their chargers' sessions, found by the
# charger index rather than by reading every session.
CATCH_UP = f"""
WITH new_rows AS (
    SELECT session.*
      FROM transaction_sync_state AS session
     WHERE session."chargerId" IN (
        SELECT charger_id FROM reservations WHERE status = 'active'
     )
) {MARK_USED};
"""


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0005_reservation_active_ends"),
    ]

    operations = [
        migrations.RunSQL(
            _function(MARK_USED) + CATCH_UP, _function(PREVIOUS_MARK_USED)
        ),
    ]
