"""Chargers sort by name as people read it, whatever its letter case and accents:
"ampere Lot" beside "Ampère Hall", and "Écluse" among the Es rather than after
"Zeta".

Before padding its numbers as 0024 does, the key drops the accents of Latin
letters (a letter that is its own in an alphabet, such as Й, keeps its mark) and
lower-cases the name. The SQL depends on the server, read when migrating:
accents are only taken apart (NFD) in a UTF8 database, and lower() folds every
script only with PostgreSQL 17's built-in pg_c_utf8 collation or a UTF-8 locale:
the embedded server may have a C locale and no ICU, whose lower() folds ASCII.
"""

from django.db import migrations

PADDED_NUMBERS = r"""
    SELECT regexp_replace(
        regexp_replace({name}, '(\d+)', '0000000000\1', 'g'), '0*(\d{{10}})', '\1', 'g'
    )
"""


def _key_function(name: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION charger_name_sort_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $${PADDED_NUMBERS.format(name=name)}$$;

UPDATE chargers SET name_sort_key = charger_name_sort_key(friendly_name);
"""


def _folded(connection) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_encoding")
        (encoding,) = cursor.fetchone()
    if encoding != "UTF8":
        return "lower(name)"
    unaccented = (
        r"normalize(regexp_replace(normalize(name, NFD), "
        r"'([A-Za-z])[\u0300-\u036f]+', '\1', 'g'), NFC)"
    )
    if connection.pg_version >= 170000:
        return f"lower({unaccented} COLLATE pg_c_utf8)"
    return f"lower({unaccented})"


def fold(apps, schema_editor) -> None:
    schema_editor.execute(_key_function(_folded(schema_editor.connection)))


def unfold(apps, schema_editor) -> None:
    schema_editor.execute(_key_function("name"))


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0027_transaction_tag_upper"),
    ]

    operations = [
        migrations.RunPython(fold, unfold),
    ]
