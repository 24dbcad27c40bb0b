"""Billing behind an interface: `BILLING_BACKEND` names a class implementing
`BillingBackend`. The local backend reads plans and subscriptions from Postgres.

Billing is never allowed to break the dashboard: `billing_account()` turns any
failure, or an answer slower than BILLING_TIMEOUT_SECONDS, into None (the plan card
is hidden) and logs why.
"""

import logging
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.contrib.auth.models import User
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

BILLING_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class BillingAccount:
    """What the portal needs from billing about one customer."""

    plan_name: str
    currency: str
    included_kwh: Decimal | None
    # Billing periods start on this day of the month, or on the last day of a
    # month without it.
    anchor_day: int
    # When the plan began, where billing knows: its first period starts then,
    # rather than at the anchor day before, so energy from before the plan is not
    # counted against it.
    started_on: date | None = None


class BillingBackend(Protocol):
    def account_for(
        self, *, user: User, today: date, timeout: float
    ) -> BillingAccount | None:
        """The customer's plan on `today` (the customer's own date), or None
        without one. A backend that calls another service must give up after
        `timeout` seconds (raise); any backend may raise anything on failure."""
        ...


class LocalBillingBackend:
    """Plans and subscriptions in Postgres, managed by staff in Django admin.

    It reads one row by an indexed key from the database the page already uses,
    so it sets no timeout of its own: a database too slow for this read holds up
    the page's other queries as well. billing_account() still hides the plan card
    when the answer comes later than its limit.
    """

    def account_for(
        self, *, user: User, today: date, timeout: float
    ) -> BillingAccount | None:
        from portal.models import Subscription

        subscription = (
            Subscription.objects.current(user=user, today=today)
            .select_related("plan")
            .first()
        )
        if subscription is None:
            return None
        return BillingAccount(
            plan_name=subscription.plan.name,
            currency=subscription.plan.currency,
            included_kwh=subscription.plan.included_kwh,
            anchor_day=subscription.anchor_day,
            started_on=subscription.started_on,
        )


def billing_backend() -> BillingBackend:
    backend: BillingBackend = import_string(settings.BILLING_BACKEND)()
    return backend


@dataclass(frozen=True, slots=True)
class BillingResult:
    """`account` is None when the customer has no plan *or* billing failed
    (`failed` tells which)."""

    account: BillingAccount | None
    failed: bool


def billing_account(*, user: User, today: date) -> BillingResult:
    """Ask the configured backend about `user` on `today`, the customer's own
    date; never raises."""
    started = time.monotonic()
    try:
        account = billing_backend().account_for(
            user=user, today=today, timeout=BILLING_TIMEOUT_SECONDS
        )
    except Exception:
        logger.exception("Billing call failed for user=%s", user.pk)
        return BillingResult(account=None, failed=True)
    elapsed = time.monotonic() - started
    if elapsed > BILLING_TIMEOUT_SECONDS:
        logger.warning(
            "Billing call for user=%s took %.2f s; plan card hidden", user.pk, elapsed
        )
        return BillingResult(account=None, failed=True)
    return BillingResult(account=account, failed=False)
