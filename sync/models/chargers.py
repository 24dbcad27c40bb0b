"""Chargers: the connectors of SteVe's charge boxes, as Polaris presents them."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Func, Q, Value

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


def _natural_sort_key(field: str) -> Func:
    """`field` with each run of digits zero-padded to ten, so that text sorts as
    people read numbers ("Bay 4" before "Bay 12"). Padding keeps the key computable
    in a generated column: the embedded PostgreSQL has no ICU for a numeric
    collation. Every run first gets ten zeros more, then keeps its last ten digits;
    a run longer than ten keeps them all."""
    padded = Func(
        F(field), Value(r"(\d+)"), Value(r"0000000000\1"), Value("g"),
        function="REGEXP_REPLACE",
    )  # fmt: skip
    return Func(
        padded, Value(r"0*(\d{10})"), Value(r"\1"), Value("g"),
        function="REGEXP_REPLACE",
    )  # fmt: skip


class Charger(models.Model):
    """A connector of a SteVe charge box, as Polaris presents it to people."""

    charge_box_id = models.CharField(max_length=255)
    # OCPP numbers a box's connectors from 1 (0 is the box itself).
    connector_id = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    friendly_name = models.CharField(max_length=120)
    # Chargers are listed in this order, then by chargeBoxId and connector.
    name_sort_key = models.GeneratedField(
        expression=_natural_sort_key("friendly_name"),
        output_field=models.TextField(),
        db_persist=True,
    )
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
