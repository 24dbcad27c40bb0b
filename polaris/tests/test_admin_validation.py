"""Django admin refuses values that customers and integrators would then see."""

from django.test import TestCase
from django.urls import reverse

from portal.models import Plan, Subscription
from sync.models import Charger
from sync.tests.factories import StaffFactory, UserFactory


class AdminValidationTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = StaffFactory(is_superuser=True)
        cls.plan = Plan.objects.create(name="Home 200", included_kwh=200)

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def test_a_plan_with_a_negative_fee_or_allowance_or_odd_currency(self) -> None:
        response = self.client.post(
            reverse("admin:portal_plan_add"),
            {
                "name": "Broken",
                "currency": "zz!",
                "monthly_fee": "-10",
                "included_kwh": "-5",
            },
        )
        self.assertContains(response, "Use an ISO 4217 code, e.g. EUR.")
        self.assertContains(response, "greater than or equal to 0", count=2)
        self.assertFalse(Plan.objects.filter(name="Broken").exists())

    def test_a_subscription_that_ends_before_it_starts(self) -> None:
        response = self.client.post(
            reverse("admin:portal_subscription_add"),
            {
                "user": UserFactory().pk,
                "plan": self.plan.pk,
                "anchor_day": "1",
                "started_on": "2026-12-01",
                "ended_on": "2026-01-01",
            },
        )
        self.assertContains(response, "A subscription cannot end before it starts.")
        self.assertFalse(Subscription.objects.exists())

    def test_a_second_subscription_without_an_end(self) -> None:
        customer = UserFactory()
        form = {
            "user": customer.pk,
            "plan": self.plan.pk,
            "anchor_day": "1",
            "started_on": "2026-12-01",
        }
        self.client.post(reverse("admin:portal_subscription_add"), form)
        response = self.client.post(
            reverse("admin:portal_subscription_add"),
            {**form, "started_on": "2027-01-01"},
        )
        self.assertContains(
            response,
            "This customer already has a subscription without an end date: give "
            "that one its last day first.",
        )
        self.assertEqual(Subscription.objects.filter(user=customer).count(), 1)

    def test_a_charger_with_connector_zero_or_no_power(self) -> None:
        response = self.client.post(
            reverse("admin:sync_charger_add"),
            {
                "charge_box_id": "CP-FZ",
                "connector_id": "0",
                "friendly_name": "Fuzz",
                "max_power_kw": "-50",
                "is_public": "on",
            },
        )
        self.assertContains(response, "greater than or equal to 1")
        self.assertContains(response, "greater than or equal to 0.1")
        self.assertFalse(Charger.objects.exists())
