"""The reservations covering now, found among the few not yet ended rather than
every active one that expired unused (see Reservation.Meta)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0004_reservation_reservation_active_card"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="reservation",
            index=models.Index(
                condition=models.Q(("status", "active")),
                fields=["ends_at"],
                name="reservation_active_ends",
            ),
        ),
    ]
