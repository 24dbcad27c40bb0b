"""Chargers sort by their name as people read its numbers: "Bay 4" before "Bay 12".

A stored generated column, so the key can never disagree with the name; adding it
rewrites the chargers table, a few thousand rows at most.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0023_transaction_sync_state_connector_started'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='charger',
            options={'ordering': ['name_sort_key', 'charge_box_id', 'connector_id']},
        ),
        migrations.AddField(
            model_name='charger',
            name='name_sort_key',
            field=models.GeneratedField(db_persist=True, expression=models.Func(models.Func(models.F('friendly_name'), models.Value('(\\d+)'), models.Value('0000000000\\1'), models.Value('g'), function='REGEXP_REPLACE'), models.Value('0*(\\d{10})'), models.Value('\\1'), models.Value('g'), function='REGEXP_REPLACE'), output_field=models.TextField()),
        ),
    ]
