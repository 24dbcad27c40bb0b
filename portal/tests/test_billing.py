import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import time_machine
from django.contrib.auth.models import AbstractBaseUser
from django.test import override_settings
from django.utils import timezone

from portal.billing import BillingAccount, billing_account
from portal.selectors import billing_period
from portal.tests.base import PortalTestCase
from portal.tests.factories import SubscriptionFactory


class FailingBackend:
    def account_for(
        self, *, user: AbstractBaseUser, today: date, timeout: float
    ) -> None:
        raise ConnectionError("billing is down")


class SlowBackend:
    def account_for(
        self, *, user: AbstractBaseUser, today: date, timeout: float
    ) -> BillingAccount:
        time.sleep(timeout + 0.1)
        return BillingAccount("Slow", "EUR", None, 1)


class MonthEndBackend:
    """A billing service whose customer signed up on the 31st."""

    def account_for(
        self, *, user: AbstractBaseUser, today: date, timeout: float
    ) -> BillingAccount:
        return BillingAccount("Month end", "EUR", Decimal("100"), 31)


class BillingAccountTests(PortalTestCase):
    def test_it_reads_the_local_subscription(self) -> None:
        subscription = SubscriptionFactory(user=self.alice, anchor_day=15)
        result = billing_account(user=self.alice, today=timezone.localdate())
        assert result.account is not None
        self.assertEqual(result.account.plan_name, "Home 200")
        self.assertEqual(result.account.anchor_day, 15)
        self.assertEqual(result.account.started_on, subscription.started_on)

    def test_only_a_subscription_running_on_the_day_asked_counts(self) -> None:
        # The day is the customer's own, which may be the operator's tomorrow.
        today = date(2025, 2, 28)
        ends_today = SubscriptionFactory(
            user=self.alice, started_on=date(2024, 1, 1), ended_on=today
        )
        # Its successor, from tomorrow: not yet.
        SubscriptionFactory(
            user=self.alice, anchor_day=9, started_on=today + timedelta(days=1)
        )
        account = billing_account(user=self.alice, today=today).account
        self.assertEqual(
            account, BillingAccount(
                ends_today.plan.name, ends_today.plan.currency,
                ends_today.plan.included_kwh, ends_today.anchor_day,
                ends_today.started_on,
            ),
        )  # fmt: skip
        tomorrow = today + timedelta(days=1)
        account = billing_account(user=self.alice, today=tomorrow).account
        assert account is not None
        self.assertEqual((account.anchor_day, account.started_on), (9, tomorrow))

    def test_no_subscription_is_not_a_failure(self) -> None:
        result = billing_account(user=self.bob, today=timezone.localdate())
        self.assertIsNone(result.account)
        self.assertFalse(result.failed)

    @override_settings(BILLING_BACKEND="portal.tests.test_billing.SlowBackend")
    def test_a_slow_answer_is_dropped_and_logged(self) -> None:
        with self.assertLogs("portal.billing", "WARNING"):
            result = billing_account(user=self.alice, today=timezone.localdate())
        self.assertIsNone(result.account)
        self.assertTrue(result.failed)


class BillingPeriodTests(PortalTestCase):
    def test_it_follows_the_anchor_day(self) -> None:
        today = date(2025, 3, 10)
        current = billing_period(name="current", anchor_day=15, today=today)
        self.assertEqual(
            (current.start, current.end), (date(2025, 2, 15), date(2025, 3, 15))
        )
        previous = billing_period(name="previous", anchor_day=15, today=today)
        self.assertEqual(
            (previous.start, previous.end), (date(2025, 1, 15), date(2025, 2, 15))
        )

    def test_a_period_begins_on_its_anchor_day(self) -> None:
        # The anchor day is the new period's first: on the 1st of each month, a
        # customer without a plan sees the new month, not the one that ended.
        for anchor_day, today, start, end in (
            (15, date(2025, 3, 15), date(2025, 3, 15), date(2025, 4, 15)),
            (1, date(2025, 1, 1), date(2025, 1, 1), date(2025, 2, 1)),
        ):
            with self.subTest(today=today):
                current = billing_period(
                    name="current", anchor_day=anchor_day, today=today
                )
                self.assertEqual((current.start, current.end), (start, end))

    def test_calendar_months_and_years(self) -> None:
        today = date(2025, 1, 20)
        previous = billing_period(name="previous", anchor_day=1, today=today)
        self.assertEqual(
            (previous.start, previous.end), (date(2024, 12, 1), date(2025, 1, 1))
        )
        year = billing_period(name="year", anchor_day=1, today=today)
        self.assertEqual((year.start, year.end), (date(2025, 1, 1), date(2026, 1, 1)))

    def test_an_anchor_day_a_month_lacks_is_its_last_day(self) -> None:
        # A billing service may anchor on the 29th to the 31st (the local plans
        # allow 1 to 28): February's period then starts on its last day.
        for today, start, end in (
            (date(2025, 1, 31), date(2025, 1, 31), date(2025, 2, 28)),
            (date(2025, 2, 10), date(2025, 1, 31), date(2025, 2, 28)),
            (date(2025, 2, 28), date(2025, 2, 28), date(2025, 3, 31)),
            (date(2024, 2, 29), date(2024, 2, 29), date(2024, 3, 31)),
            (date(2025, 4, 30), date(2025, 4, 30), date(2025, 5, 31)),
        ):
            with self.subTest(today=today):
                current = billing_period(name="current", anchor_day=31, today=today)
                self.assertEqual((current.start, current.end), (start, end))
        previous = billing_period(
            name="previous", anchor_day=30, today=date(2025, 3, 5)
        )
        self.assertEqual(
            (previous.start, previous.end), (date(2025, 1, 30), date(2025, 2, 28))
        )

    def test_a_plans_first_period_starts_with_the_plan(self) -> None:
        started = date(2025, 3, 20)
        for name, today, start, end in (
            ("current", date(2025, 3, 25), started, date(2025, 4, 1)),
            ("previous", date(2025, 4, 2), started, date(2025, 4, 1)),
            ("current", date(2025, 4, 2), date(2025, 4, 1), date(2025, 5, 1)),
        ):
            with self.subTest(name=name, today=today):
                period = billing_period(
                    name=name, anchor_day=1, today=today, plan_started_on=started
                )
                self.assertEqual((period.start, period.end), (start, end))

    def test_the_period_before_a_plan_begun_mid_month_ends_where_it_begins(
        self,
    ) -> None:
        # The days before the plan belong to the previous period, not to none.
        for anchor_day, started, today, previous_start in (
            (1, date(2026, 12, 6), date(2026, 12, 7), date(2026, 12, 1)),
            (10, date(2026, 12, 5), date(2026, 12, 7), date(2026, 11, 10)),
        ):
            with self.subTest(anchor_day=anchor_day):
                current, previous = (
                    billing_period(
                        name=name,
                        anchor_day=anchor_day,
                        today=today,
                        plan_started_on=started,
                    )
                    for name in ("current", "previous")
                )
                self.assertEqual(current.start, started)
                self.assertEqual(
                    (previous.start, previous.end), (previous_start, started)
                )

    @override_settings(BILLING_BACKEND="portal.tests.test_billing.MonthEndBackend")
    def test_the_dashboard_of_a_month_end_anchor_in_february(self) -> None:
        self.client.force_login(self.alice)
        with time_machine.travel(datetime(2025, 2, 10, 12, tzinfo=UTC), tick=False):
            response = self.client.get("/")
        self.assertContains(response, "Current period · Jan 31\u2013Feb 27, 2025")
