"""Acting as a customer: staff with `portal.act_as_customer` open the portal as a
customer, for this browser session, and every start and end is audited.

Acting ends, with its entry, at the banner's "Back to admin portal", at /switch,
on signing out, when someone else signs in on that browser, and at the agent's
next request to the portal once they may no longer act as that customer (the
permission taken away, the customer deactivated or made staff): it does not come
back by itself when the permission does. An open portal page's live stream sends
the page to make that request.
"""

from collections.abc import MutableMapping
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from polaris.http import AuthenticatedHttpRequest
from sessions_app.models import AuditEntry
from sessions_app.services import audit_entry_create

ACTING_AS_KEY = "portal_acting_as"
# The audit entry of acting's start, which its one end entry names.
ACTING_STARTED_KEY = "portal_acting_started"
ACT_AS_PERMISSION = "portal.act_as_customer"
LAPSED = "The agent may no longer act as this customer."


def customer_accounts() -> QuerySet[User]:
    """The accounts the portal serves as customers, which staff may act as:
    active and not staff."""
    return get_user_model().objects.filter(is_active=True, is_staff=False)


def can_act_as(user: User) -> bool:
    return bool(getattr(user, "is_staff", False)) and user.has_perm(ACT_AS_PERMISSION)


class ActingLapsed(Exception):
    """Acting the agent may no longer keep, found by a request that must not end
    it (a live stream: ending it writes the session)."""


def acting_customer(
    request: AuthenticatedHttpRequest, *, end_lapsed: bool = True
) -> User | None:
    """The customer the signed-in agent acts as, or None; an acting the agent
    may no longer keep ends here, audited, or raises ActingLapsed without
    `end_lapsed`."""
    if ACTING_AS_KEY not in request.session:
        return None
    customer = _customer_still_acted_as(request)
    if customer is None:
        if not end_lapsed:
            raise ActingLapsed
        # Any account by that id, deactivated too: the notice names it.
        acted_as = (
            get_user_model().objects.filter(pk=request.session[ACTING_AS_KEY]).first()
        )
        act_as_end(agent=request.user, session=request.session, reason=LAPSED)
        # The agent lands on the console: it says why the portal closed.
        messages.warning(request, _lapsed_notice(acted_as))
    return customer


def _lapsed_notice(customer: User | None) -> str:
    name = (customer.get_full_name() or customer.get_username()) if customer else ""
    acting = f"Acting as {name}" if name else "Acting as a customer"
    return f"{acting} has ended: you may no longer act as this customer."


def _customer_still_acted_as(request: AuthenticatedHttpRequest) -> User | None:
    if not can_act_as(request.user):
        return None
    return customer_accounts().filter(pk=request.session[ACTING_AS_KEY]).first()


@transaction.atomic
def act_as_start(
    *,
    agent: User,
    customer: User,
    session: MutableMapping[str, Any],
) -> None:
    """Open the portal for `agent` as `customer` (this browser session) and audit it."""
    previous = session.get(ACTING_AS_KEY)
    if previous == customer.pk and session.get(ACTING_STARTED_KEY) is not None:
        # Pressed again from the console: the acting under way goes on, so its
        # start keeps the one end entry it will get.
        return
    if previous is not None:
        act_as_end(agent=agent, session=session)
    started = audit_entry_create(
        actor=agent,
        action=AuditEntry.Action.IMPERSONATION_STARTED,
        object_type="user",
        object_id=customer.pk,
        after={"customer": customer.get_username()},
        source="portal",
    )
    session[ACTING_AS_KEY] = customer.pk
    session[ACTING_STARTED_KEY] = started.pk


@transaction.atomic
def act_as_end(
    *, agent: User, session: MutableMapping[str, Any], reason: str = ""
) -> None:
    """Stop acting as a customer and audit it, with `reason` when the agent did
    not end it; nothing happens when not acting.

    Requests of one browser session run at once (a page, its htmx parts), each
    with the session as it was loaded: the first to end acting writes its end
    entry, and the others find it."""
    customer_id = session.pop(ACTING_AS_KEY, None)
    started_id = session.pop(ACTING_STARTED_KEY, None)
    if customer_id is None:
        return
    after: dict[str, Any] = {}
    if started_id is not None:
        # Waits for another request ending it: its entry is then committed.
        AuditEntry.objects.select_for_update().filter(pk=started_id).first()
        if AuditEntry.objects.filter(
            action=AuditEntry.Action.IMPERSONATION_ENDED,
            object_type="user",
            object_id=customer_id,
            after__started=started_id,
        ).exists():
            return
        after["started"] = started_id
    if reason:
        after["reason"] = reason
    audit_entry_create(
        actor=agent,
        action=AuditEntry.Action.IMPERSONATION_ENDED,
        object_type="user",
        object_id=customer_id,
        after=after or None,
        source="portal",
    )
