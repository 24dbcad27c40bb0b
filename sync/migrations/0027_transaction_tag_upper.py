"""A card's sessions in any letter case (index tss_tag_upper), and the sessions of
mapped cards that SteVe gave in another letter case than their mapping's stored
in the mapping's spelling, with their events and their tag's energy rollup: they
were linked to no customer (sync.services.mappings.id_tags_as_stored)."""

import django.db.models.functions.text
from django.db import migrations, models

# Of every mapped card, each other spelling its sessions have.
OTHER_SPELLINGS = """
    SELECT DISTINCT s."ocppIdTag" AS spelling, m."steveOcppIdTag" AS card
      FROM transaction_sync_state AS s
      JOIN user_mappings AS m ON upper(s."ocppIdTag") = upper(m."steveOcppIdTag")
     WHERE s."ocppIdTag" <> m."steveOcppIdTag"
"""

# The rollup first: its rows are found by the spellings the sessions still have.
RESPELL_MAPPED_CARDS = f"""
WITH moved AS (
    DELETE FROM tag_energy_by_hour AS r USING ({OTHER_SPELLINGS}) AS f
     WHERE r."ocppIdTag" = f.spelling
 RETURNING f.card, r.hour, r.kwh
)
INSERT INTO tag_energy_by_hour AS r ("ocppIdTag", hour, kwh)
SELECT card, hour, SUM(kwh) FROM moved GROUP BY 1, 2
    ON CONFLICT ("ocppIdTag", hour) DO UPDATE SET kwh = r.kwh + EXCLUDED.kwh;

WITH respelled AS (
    UPDATE transaction_sync_state AS s SET "ocppIdTag" = f.card
      FROM ({OTHER_SPELLINGS}) AS f
     WHERE s."ocppIdTag" = f.spelling
 RETURNING s.id, f.card
)
UPDATE synced_transaction_events AS e SET "ocppIdTag" = r.card
  FROM respelled AS r WHERE e."transactionId" = r.id;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0026_user_mapping_tag_unique_in_any_case"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="transactionsyncstate",
            index=models.Index(
                django.db.models.functions.text.Upper("ocpp_id_tag"),
                name="tss_tag_upper",
            ),
        ),
        # SteVe's spellings are not kept: the reverse leaves the sessions as they are.
        migrations.RunSQL(RESPELL_MAPPED_CARDS, migrations.RunSQL.noop),
    ]
