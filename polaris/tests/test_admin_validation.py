"""Django admin refuses values that customers and integrators would then see."""

from datetime import date, timedelta

from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from portal.models import Plan, Reservation, Subscription
from sessions_app.models import ApiSession, Rate
from sync.models import Charger
from sync.tests.factories import (
    StaffFactory,
    TransactionSyncStateFactory,
    UserFactory,
)


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

    def test_subscriptions_whose_dates_overlap(self) -> None:
        # With two running on one day, the plan card showed the later one alone.
        customer = UserFactory()
        Subscription.objects.create(
            user=customer,
            plan=self.plan,
            started_on=date(2026, 1, 1),
            ended_on=date(2027, 6, 1),
        )
        form = {
            "user": customer.pk,
            "plan": self.plan.pk,
            "anchor_day": "15",
            "started_on": "2026-12-05",
            "ended_on": "2026-12-31",
        }
        response = self.client.post(reverse("admin:portal_subscription_add"), form)
        self.assertContains(
            response,
            "This customer&#x27;s subscription to Home 200 runs from 2026-01-01 to "
            "2027-06-01, which overlaps these dates: a customer has one plan on a "
            "day. End that one the day before this one starts, or change these "
            "dates.",
        )
        self.assertEqual(Subscription.objects.filter(user=customer).count(), 1)
        # The day after it ends, a new one may start, without an end.
        response = self.client.post(
            reverse("admin:portal_subscription_add"),
            {**form, "started_on": "2027-06-02", "ended_on": ""},
        )
        self.assertRedirects(response, reverse("admin:portal_subscription_changelist"))

    def test_a_rate_taxed_over_100_percent(self) -> None:
        response = self.client.post(
            reverse("admin:sessions_app_rate_add"),
            {
                "name": "Typo",
                "currency": "eur",
                "flat_fee": "0",
                "energy_price": "0.30",
                "time_price": "0",
                "tax_percent": "999",
            },
        )
        self.assertContains(response, "less than or equal to 100")
        self.assertFalse(Rate.objects.filter(name="Typo").exists())


class ChargerAdminEditsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = StaffFactory(is_superuser=True)

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def test_a_last_check_in_is_not_set_by_hand(self) -> None:
        # Set a day ahead, the charger read online until then.
        charger = Charger.objects.create(
            charge_box_id="CP-006", connector_id=2, friendly_name="Old Mill"
        )
        change = reverse("admin:sync_charger_change", args=[charger.pk])
        self.assertNotContains(self.client.get(change), 'name="last_check_in_at')
        self.client.post(
            change,
            {
                "friendly_name": "Old Mill",
                "connector_type": "",
                "max_power_kw": "",
                "is_public": "on",
                "last_check_in_at_0": "2030-01-01",
                "last_check_in_at_1": "00:00:00",
            },
        )
        charger.refresh_from_db()
        self.assertIsNone(charger.last_check_in_at)
        add = self.client.get(reverse("admin:sync_charger_add"))
        self.assertNotContains(add, 'name="last_check_in_at')

    def test_only_a_charger_nobody_has_used_may_be_deleted(self) -> None:
        # A mistyped chargeBoxId added by hand goes; one with history stays.
        typo = Charger.objects.create(
            charge_box_id="CP-0O6", connector_id=1, friendly_name="Typo"
        )
        used = Charger.objects.create(
            charge_box_id="CP-007", connector_id=1, friendly_name="Used"
        )
        TransactionSyncStateFactory(
            charge_box_id="CP-007", connector_id=1, charger=used
        )
        reserved = Charger.objects.create(
            charge_box_id="CP-008", connector_id=1, friendly_name="Reserved"
        )
        customer = UserFactory()
        now = timezone.now()
        Reservation.objects.create(
            user=customer,
            charger=reserved,
            id_tag="TAG-0001",
            starts_at=now - timedelta(hours=2),
            ends_at=now - timedelta(hours=1),
        )
        started = Charger.objects.create(
            charge_box_id="CP-009", connector_id=1, friendly_name="Started"
        )
        ApiSession.objects.create(
            user=customer, charge_box_id="CP-009", connector_id=1, id_tag="TAG-0001"
        )
        changelist = self.client.get(reverse("admin:sync_charger_changelist"))
        self.assertNotContains(changelist, 'value="delete_selected"')
        for charger, status in (
            (used, 403),
            (reserved, 403),
            (started, 403),
            (typo, 302),
        ):
            delete = reverse("admin:sync_charger_delete", args=[charger.pk])
            response = self.client.post(delete, {"post": "yes"})
            self.assertEqual(response.status_code, status, charger)
        self.assertEqual(
            sorted(Charger.objects.values_list("friendly_name", flat=True)),
            ["Reserved", "Started", "Used"],
        )

    def test_chargers_sharing_a_name_are_told_apart_when_picked(self) -> None:
        for box in ("CP-002", "CP-004"):
            Charger.objects.create(
                charge_box_id=box, connector_id=1, friendly_name="Market Hall"
            )
        for url in (
            reverse("admin:sessions_app_chargerrate_add"),
            reverse("admin:portal_chargergroup_add"),
        ):
            with self.subTest(url=url):
                page = self.client.get(url)
                self.assertContains(page, "Market Hall #1 (CP-002)")
                self.assertContains(page, "Market Hall #1 (CP-004)")


class RateCurrencyWarningTests(TestCase):
    def test_a_rate_in_another_currency_than_customers_plans_is_warned_of(
        self,
    ) -> None:
        admin_user = StaffFactory(is_superuser=True)
        plan = Plan.objects.create(name="Home 200", currency="EUR")
        Subscription.objects.create(
            user=UserFactory(), plan=plan, started_on=date(2026, 1, 1)
        )
        self.client.force_login(admin_user)
        form = {
            "name": "Standard",
            "currency": "usd",
            "flat_fee": "0",
            "energy_price": "0.30",
            "time_price": "0",
            "tax_percent": "20",
            "assignments-TOTAL_FORMS": "0",
            "assignments-INITIAL_FORMS": "0",
        }
        response = self.client.post(
            reverse("admin:sessions_app_rate_add"), form, follow=True
        )
        self.assertContains(
            response,
            "Customers have plans in EUR, not in this rate&#x27;s USD: at chargers "
            "with this rate their dashboard estimates a charge in USD beside a plan "
            "card in their plan&#x27;s currency.",
        )
        rate = Rate.objects.get(name="Standard")
        change = reverse("admin:sessions_app_rate_change", args=[rate.pk])
        response = self.client.post(change, {**form, "currency": "eur"}, follow=True)
        self.assertNotContains(response, "Customers have plans in")
