"""A customer's usage reads tag_energy_by_hour from its key alone.

A year of a heavy customer is ~12,000 hourly rows scattered over thousands of heap
pages (rows arrive hour by hour for every tag); with kwh in the key's index they are
read from a few dozen index pages instead.
"""

from django.db import migrations

COVERING = """
ALTER TABLE tag_energy_by_hour
    DROP CONSTRAINT tag_energy_by_hour_pkey,
    ADD CONSTRAINT tag_energy_by_hour_pkey PRIMARY KEY ("ocppIdTag", hour) INCLUDE (kwh);
"""

PLAIN = """
ALTER TABLE tag_energy_by_hour
    DROP CONSTRAINT tag_energy_by_hour_pkey,
    ADD CONSTRAINT tag_energy_by_hour_pkey PRIMARY KEY ("ocppIdTag", hour);
"""


class Migration(migrations.Migration):
    dependencies = [("sync", "0008_fewer_event_indexes")]

    operations = [migrations.RunSQL(COVERING, PLAIN)]
