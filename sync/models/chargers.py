"""Chargers: the connectors of SteVe's charge boxes, as Polaris presents them."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

# A charger counts as online this long after its last check-in; a reading older
# than that is no sign of life.
CHECK_IN_VALID_FOR = timedelta(hours=1)


class ChargerQuerySet(models.QuerySet["Charger"]):
    def silent_since(self, moment: datetime) -> "ChargerQuerySet":
        """Chargers with no check-in at or after `moment` (or none ever)."""
        return self.filter(
            Q(last_check_in_at__isnull=True) | Q(last_check_in_at__lt=moment)
        )

    def visible_to_customer(self, user: User) -> "ChargerQuerySet":
        """The chargers a customer may see, start and reserve: the public ones and
        those of their charger groups."""
        member_of = self.model.objects.filter(groups__members=user.pk).values("pk")
        return self.filter(Q(is_public=True) | Q(pk__in=member_of))

    def usable_by(self, user: User) -> "ChargerQuerySet":
        """The chargers `user` may start a charge at: staff at any, customers at
        those they see."""
        return self if user.is_staff else self.visible_to_customer(user)


class Charger(models.Model):
    """A connector of a SteVe charge box, as Polaris presents it to people."""

    charge_box_id = models.CharField(max_length=255)
    # OCPP numbers a box's connectors from 1 (0 is the box itself).
    connector_id = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    friendly_name = models.CharField(max_length=120)
    # Chargers are listed in this order, then by chargeBoxId and connector: the
    # name with its numbers zero-padded ("Bay 0000000004" before "Bay
    # 0000000012"), which a trigger keeps (migration 0024).
    name_sort_key = models.TextField(editable=False, db_default="")
    connector_type = models.CharField(max_length=40, blank=True)
    max_power_kw = models.DecimalField(
        max_digits=6,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.1"))],
    )
    is_public = models.BooleanField(default=True)
    last_check_in_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChargerQuerySet.as_manager()

    class Meta:
        db_table = "chargers"
        ordering = ["name_sort_key", "charge_box_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_box_id", "connector_id"], name="charger_box_connector"
            )
        ]

    def __str__(self) -> str:
        return f"{self.friendly_name} #{self.connector_id}"
