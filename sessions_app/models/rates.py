"""Rates: what a session costs, by default and per charger."""

from collections.abc import Collection
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models
from django.db.models import Q, Subquery
from django.db.models.functions import Coalesce

from sync.models import Charger


class RateQuerySet(models.QuerySet["Rate"]):
    def for_charger(self, charge_box_id: str, connector_id: int) -> "Rate | None":
        """The rate assigned to this connector, else the default rate, else None."""
        assigned = self.filter(
            assignments__charger__charge_box_id=charge_box_id,
            assignments__charger__connector_id=connector_id,
        ).first()
        return assigned or self.filter(is_default=True).first()

    def ids_for_chargers(self, charger_ids: Collection[int]) -> dict[int, int | None]:
        """The id of each charger's rate, by charger id, as for_charger finds it
        (the assigned rate, else the default one, else None), in one query."""
        default = self.filter(is_default=True).values("pk")[:1]
        return dict(
            Charger.objects.filter(pk__in=charger_ids)
            .annotate(rate_id=Coalesce("rate_assignment__rate", Subquery(default)))
            .order_by()
            .values_list("pk", "rate_id")
        )


class Rate(models.Model):
    """A tariff: a flat fee per session, a price per kWh and per hour, plus tax."""

    name = models.CharField(max_length=120)
    currency = models.CharField(
        max_length=3,
        validators=[RegexValidator(r"^[a-z]{3}$", "Use a lowercase ISO 4217 code.")],
        help_text="ISO 4217 code in lowercase, e.g. eur.",
    )
    flat_fee = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Charged once per session (FLAT).",
    )
    energy_price = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Price per kWh (ENERGY).",
    )
    time_price = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Price per hour of session (TIME).",
    )
    tax_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        # No tax in use is higher: 999 is a typo, which every bill would show.
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Tax added to every line, in percent (0-100).",
    )
    is_default = models.BooleanField(
        default=False, help_text="Applies to chargers without a rate of their own."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RateQuerySet.as_manager()

    class Meta:
        db_table = "rates"
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="rate_single_default",
                violation_error_message="Another rate is already the default.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    def clean(self) -> None:
        # The seed's session object gives `tax` as an integer percentage; a
        # fractional rate could not be reported truthfully there.
        tax = self.tax_percent
        # Not yet a Decimal when the field itself failed validation.
        if isinstance(tax, Decimal) and tax != tax.to_integral_value():
            raise ValidationError(
                {
                    "tax_percent": "Use a whole percent: the Sessions API reports tax "
                    "as an integer."
                }
            )


class ChargerRate(models.Model):
    """Assigns a rate to one charger (connector); others use the default rate."""

    charger = models.OneToOneField(
        "sync.Charger", on_delete=models.CASCADE, related_name="rate_assignment"
    )
    rate = models.ForeignKey(Rate, on_delete=models.PROTECT, related_name="assignments")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "charger_rates"
        ordering = ["charger"]

    def __str__(self) -> str:
        return f"{self.charger} → {self.rate}"
