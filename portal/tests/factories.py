"""Factories of the portal's models (reuse sync's for users, tags, chargers)."""

from datetime import date, timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from portal.models import Plan, Reservation, Subscription
from sync.tests.factories import ChargerFactory, UserFactory


class ReservationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reservation

    user = factory.SubFactory(UserFactory)
    charger = factory.SubFactory(ChargerFactory)
    id_tag = "TAG-0001"
    starts_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))
    ends_at = factory.LazyAttribute(lambda r: r.starts_at + timedelta(minutes=30))


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ["name"]

    name = "Home 200"
    currency = "EUR"
    monthly_fee = Decimal("19.00")
    included_kwh = Decimal("200")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    user = factory.SubFactory(UserFactory)
    plan = factory.SubFactory(PlanFactory)
    anchor_day = 1
    started_on = date(2024, 1, 1)
