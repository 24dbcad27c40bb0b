"""Polaris-owned customer data: time zones, charger groups, reservations, plans."""

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from sync.models import Charger


def validate_time_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value} is not a known time zone.") from None


def default_time_zone() -> str:
    return str(settings.POLARIS_TIME_ZONE)


class CustomerProfile(models.Model):
    """Per-customer settings; a customer without a profile uses the defaults."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    time_zone = models.CharField(
        max_length=64, default=default_time_zone, validators=[validate_time_zone]
    )

    class Meta:
        db_table = "customer_profiles"
        permissions = [
            ("act_as_customer", "Can open the portal acting as a customer"),
        ]

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class ChargerGroup(models.Model):
    """Non-public chargers its members may see and use (fleet depots, workplaces)."""

    name = models.CharField(max_length=120, unique=True)
    chargers = models.ManyToManyField(Charger, blank=True, related_name="groups")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="charger_groups"
    )

    class Meta:
        db_table = "charger_groups"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ReservationQuerySet(models.QuerySet["Reservation"]):
    def for_user(self, user: object) -> "ReservationQuerySet":
        """Reservations the customer made."""
        return self.filter(user=user)

    def not_ended(self, now: datetime) -> "ReservationQuerySet":
        """Active reservations whose end is still ahead (a used one holds nothing)."""
        return self.filter(status=Reservation.Status.ACTIVE, ends_at__gt=now)

    def covering(self, now: datetime) -> "ReservationQuerySet":
        """Active reservations holding their charger at `now`."""
        return self.not_ended(now).filter(starts_at__lte=now)

    def of_cards(self, id_tags: Iterable[str]) -> "ReservationQuerySet":
        """Reservations made with any of these cards (idTags), whoever made them,
        in any letter case: the sync may respell a card's mapping after it
        reserved, and the station holds the reservation for the card."""
        return self.alias(card=Upper("id_tag")).filter(
            card__in=[tag.upper() for tag in id_tags]
        )


class Reservation(models.Model):
    """A ReserveNow the station accepted, or whose answer never came back
    (`confirmed` False: the station may hold it); it holds the charger until
    `ends_at`.

    SteVe's REST API never reveals the OCPP reservationId (not in ReserveNow's
    answer, and it has no reservation resource), so `steve_reservation_id` stays
    empty unless staff fill it in from SteVe's web UI. CancelReservation needs it:
    without it the reservation cannot be cancelled and holds the charger (for its
    tag only) until it expires, as it does at the station.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        # Its tag started charging on its connector within its window, which
        # consumes it at the station; set by triggers (migration 0002).
        USED = "used", "Used"
        CANCELLED = "cancelled", "Cancelled"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reservations"
    )
    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, related_name="reservations"
    )
    id_tag = models.CharField(max_length=255)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    steve_reservation_id = models.PositiveIntegerField(null=True, blank=True)
    # False when the ReserveNow's answer was lost or the station's came too late
    # for SteVe: SteVe keeps such a reservation (CONTRACT §7) and the station may
    # have taken it, so it holds the card and the charger as an accepted one does.
    confirmed = models.BooleanField(default=True, db_default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    objects = ReservationQuerySet.as_manager()

    class Meta:
        db_table = "reservations"
        ordering = ["starts_at", "id"]
        indexes = [
            models.Index(fields=["user", "status", "ends_at"]),
            # Each sync statement looks up the active reservations of the chargers
            # it wrote (migration 0002's triggers); the used and cancelled history
            # grows without bound.
            models.Index(
                fields=["charger", "ends_at"],
                condition=Q(status="active"),
                name="reservation_active_charger",
            ),
            # Each Reserve looks up the not-yet-ended reservations of the customer's
            # cards (one a card at a time). A reservation that expired unused stays
            # `active`, so a card gathers them; `ends_at` skips those.
            models.Index(
                Upper("id_tag"),
                "ends_at",
                condition=Q(status="active"),
                name="reservation_active_card",
            ),
            # The reservations covering now at every charger (each dashboard's
            # chargers card): the few not yet ended, not every one that expired
            # unused (0.9 ms at 33,000 of them, then 0.03).
            models.Index(
                fields=["ends_at"],
                condition=Q(status="active"),
                name="reservation_active_ends",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")),
                name="reservation_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"Reservation {self.pk} of {self.charger}"

    @property
    def can_be_cancelled(self) -> bool:
        """Whether CancelReservation can reach SteVe: it needs SteVe's id."""
        return self.steve_reservation_id is not None


class Plan(models.Model):
    """A subscription plan of the local billing backend."""

    name = models.CharField(max_length=120, unique=True)
    currency = models.CharField(
        max_length=3,
        default="EUR",
        validators=[
            RegexValidator(r"^[A-Za-z]{3}$", "Use an ISO 4217 code, e.g. EUR.")
        ],
    )
    monthly_fee = models.DecimalField(
        max_digits=10, decimal_places=2, default=0, validators=[MinValueValidator(0)]
    )
    included_kwh = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )

    class Meta:
        db_table = "plans"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SubscriptionQuerySet(models.QuerySet["Subscription"]):
    def current(self, *, user: object, today: date) -> "SubscriptionQuerySet":
        """The user's subscription that runs `today` (started, and not ended
        before it), the latest started first."""
        return (
            self.filter(user=user, started_on__lte=today)
            .filter(Q(ended_on__isnull=True) | Q(ended_on__gte=today))
            .order_by("-started_on", "-id")
        )


class Subscription(models.Model):
    """A customer's plan; billing periods start on `anchor_day` of each month."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions"
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, related_name="subscriptions"
    )
    anchor_day = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="Day of the month each billing period starts (1-28).",
    )
    started_on = models.DateField()
    # The last day it runs.
    ended_on = models.DateField(null=True, blank=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        db_table = "subscriptions"
        ordering = ["-started_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(ended_on__isnull=True),
                name="one_open_subscription_per_user",
                violation_error_message="This customer already has a subscription "
                "without an end date: give that one its last day first.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.plan}"

    def clean(self) -> None:
        if self.ended_on and self.started_on and self.ended_on < self.started_on:
            raise ValidationError(
                {"ended_on": "A subscription cannot end before it starts."}
            )
        if self.started_on and self.user_id:
            self._check_no_overlap()

    def _check_no_overlap(self) -> None:
        # A customer has one plan on a day: with two, the plan card would show
        # the later one alone, and say nothing of the other.
        overlapping = (
            Subscription.objects.filter(user_id=self.user_id)
            .exclude(pk=self.pk)
            .filter(Q(ended_on__isnull=True) | Q(ended_on__gte=self.started_on))
            .select_related("plan")
        )
        if self.ended_on:
            overlapping = overlapping.filter(started_on__lte=self.ended_on)
        else:
            # Two without an end: one_open_subscription_per_user says so.
            overlapping = overlapping.exclude(ended_on__isnull=True)
        other = overlapping.order_by("started_on").first()
        if other is None:
            return
        until = f"to {other.ended_on:%Y-%m-%d}" if other.ended_on else "with no end"
        raise ValidationError(
            f"This customer's subscription to {other.plan} runs from "
            f"{other.started_on:%Y-%m-%d} {until}, which overlaps these dates: a "
            "customer has one plan on a day. End that one the day before this one "
            "starts, or change these dates."
        )
