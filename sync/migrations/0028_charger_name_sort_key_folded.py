"""Chargers sort by name as people read it, whatever its letter case and accents:
"ampere Lot" beside "Ampère Hall", and "Écluse" among the Es rather than after
"Zeta". The key decomposes the name (NFD), drops the combining accents, and lower-
cases it, before padding its numbers as before: the embedded PostgreSQL may have a
C locale and no ICU, so no collation can be relied on to do it."""

from django.db import migrations

PADDED_NUMBERS = r"""
    SELECT regexp_replace(
        regexp_replace({name}, '(\d+)', '0000000000\1', 'g'), '0*(\d{{10}})', '\1', 'g'
    )
"""

FOLDED = r"lower(regexp_replace(normalize(name, NFD), '[\u0300-\u036f]', '', 'g'))"


def _key_function(name: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION charger_name_sort_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $${PADDED_NUMBERS.format(name=name)}$$;

UPDATE chargers SET name_sort_key = charger_name_sort_key(friendly_name);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0027_transaction_tag_upper"),
    ]

    operations = [
        migrations.RunSQL(_key_function(FOLDED), _key_function("name")),
    ]
