import time
from datetime import date, timedelta

import time_machine
from django.contrib.auth.models import AbstractBaseUser
from django.test import override_settings
from django.utils import timezone

from portal.billing import BillingAccount, billing_account
from portal.selectors import billing_period
from portal.tests.base import PortalTestCase
from portal.tests.factories import SubscriptionFactory


class FailingBackend:
    def account_for(self, *, user: AbstractBaseUser, timeout: float) -> None:
        raise ConnectionError("billing is down")


class SlowBackend:
    def account_for(self, *, user: AbstractBaseUser, timeout: float) -> BillingAccount:
        time.sleep(timeout + 0.1)
        return BillingAccount("Slow", "EUR", None, 1)


class BillingAccountTests(PortalTestCase):
    def test_it_reads_the_local_subscription(self) -> None:
        SubscriptionFactory(user=self.alice, anchor_day=15)
        result = billing_account(user=self.alice)
        assert result.account is not None
        self.assertEqual(result.account.plan_name, "Home 200")
        self.assertEqual(result.account.anchor_day, 15)

    def test_only_a_subscription_running_today_counts(self) -> None:
        today = timezone.localdate()
        ends_today = SubscriptionFactory(
            user=self.alice, started_on=date(2024, 1, 1), ended_on=today
        )
        # Its successor, from tomorrow: not yet.
        SubscriptionFactory(
            user=self.alice, anchor_day=9, started_on=today + timedelta(days=1)
        )
        account = billing_account(user=self.alice).account
        assert account is not None
        self.assertEqual(account.anchor_day, ends_today.anchor_day)
        with time_machine.travel(timedelta(days=1)):
            account = billing_account(user=self.alice).account
        assert account is not None
        self.assertEqual(account.anchor_day, 9)
        with time_machine.travel(timedelta(days=-1)):
            self.assertEqual(
                billing_account(user=self.alice).account, BillingAccount(
                    ends_today.plan.name, ends_today.plan.currency,
                    ends_today.plan.included_kwh, ends_today.anchor_day,
                ),
            )  # fmt: skip

    def test_no_subscription_is_not_a_failure(self) -> None:
        result = billing_account(user=self.bob)
        self.assertIsNone(result.account)
        self.assertFalse(result.failed)

    @override_settings(BILLING_BACKEND="portal.tests.test_billing.SlowBackend")
    def test_a_slow_answer_is_dropped_and_logged(self) -> None:
        with self.assertLogs("portal.billing", "WARNING"):
            result = billing_account(user=self.alice)
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
