"""One mapping per card in any letter case, held by the database.

OCPP idTags compare case-insensitively, so TAG-0005 and tag-0005 are one card.
The services refused a second spelling (validate_tag_is_free), but two saves
that passed that check at once (two colleagues, or a console import chunk and a
"New mapping") both committed, splitting the card between two customers. The
unique index replaces um_tag_upper, and serves the same lookups.
"""

from typing import Any

from django.db import migrations, models
from django.db.models.functions import Upper


def refuse_tags_spelled_twice(apps: Any, schema_editor: Any) -> None:
    """Stop with the pairs to resolve rather than a bare unique violation."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            'SELECT string_agg("steveOcppIdTag", \' and \' ORDER BY "steveOcppIdTag")'
            ' FROM user_mappings GROUP BY upper("steveOcppIdTag")'
            " HAVING count(*) > 1 ORDER BY 1 LIMIT 20"
        )
        twice = [spellings for (spellings,) in cursor.fetchall()]
    if twice:
        raise RuntimeError(
            "These user mappings name one card in two letter cases: "
            + "; ".join(twice)
            + ". Keep one mapping of each card, active or not: in the console's "
            "User mappings, rename each mapping you do not keep to a spelling no "
            "card has (TAG-0004-old for TAG-0004, say) and deactivate it, then "
            "migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0025_sync_runs_read_through"),
    ]

    operations = [
        migrations.RunPython(refuse_tags_spelled_twice, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="usermapping",
            constraint=models.UniqueConstraint(
                Upper("steve_ocpp_id_tag"),
                name="um_tag_upper_unique",
                violation_error_message="This idTag is already mapped in "
                "another letter case.",
            ),
        ),
        migrations.RemoveIndex(
            model_name="usermapping",
            name="um_tag_upper",
        ),
    ]
