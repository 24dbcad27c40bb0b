"""Who the portal is showing, and the only way views reach customers' objects.

Every getter takes the *customer* (not `request.user`, which is the agent while
acting as) and raises Http404 for anything that is not theirs, so other customers'
ids are never revealed.

Acting as (`portal.acting`): the agent may **read** everything the customer sees
and may change nothing: `customer_for_write()` refuses every state change
(start/stop charging, reserve, cancel, API tokens) with 403 while acting, and the
templates hide those buttons. Support agents who need a change make it in the
admin console, where it is audited.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from polaris.http import AuthenticatedHttpRequest
from portal.acting import acting_customer, customer_accounts
from portal.models import CustomerProfile, Reservation
from sessions_app.models import ApiSession, ApiToken
from sync.models import Charger, UserMapping

CUSTOMER_VIEW_KEY = "portal_customer_view"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The customer whose portal this is, and the agent when staff act as them."""

    customer: User
    agent: User | None
    zone: ZoneInfo

    @property
    def acting(self) -> bool:
        return self.agent is not None

    def customer_for_write(self) -> User:
        """The customer a state change is made for; PermissionDenied while acting
        as."""
        if self.acting:
            raise PermissionDenied(
                "Support agents acting as a customer cannot change it."
            )
        return self.customer


def customer_zone(user: User) -> ZoneInfo:
    """The customer's time zone, POLARIS_TIME_ZONE without a profile."""
    return customer_zones([user.pk])[user.pk]


def customer_zones(user_ids: list[int]) -> dict[int, ZoneInfo]:
    """`customer_zone` of many customers, by user id, in one query."""
    named = dict(
        CustomerProfile.objects.filter(user__in=user_ids).values_list(
            "user_id", "time_zone"
        )
    )
    return {
        pk: ZoneInfo(named.get(pk) or settings.POLARIS_TIME_ZONE) for pk in user_ids
    }


def viewer_for(
    request: AuthenticatedHttpRequest, *, end_lapsed_acting: bool = True
) -> Viewer:
    """Who the portal shows: the acted-as customer, else the signed-in user (see
    `acting_customer` for acting that lapsed)."""
    customer = acting_customer(request, end_lapsed=end_lapsed_acting)
    if customer is not None:
        return Viewer(
            customer=customer, agent=request.user, zone=customer_zone(customer)
        )
    return Viewer(customer=request.user, agent=None, zone=customer_zone(request.user))


def customer_for_write(request: AuthenticatedHttpRequest) -> User:
    """The customer a state change is made for; PermissionDenied while acting as."""
    return viewer_for(request).customer_for_write()


def sends_staff_to_console(request: AuthenticatedHttpRequest, viewer: Viewer) -> bool:
    """Staff land on the console unless acting as someone or they chose their own
    customer dashboard at /switch for this browser session."""
    if not getattr(request.user, "is_staff", False) or viewer.acting:
        return False
    return not request.session.get(CUSTOMER_VIEW_KEY, False)


def has_customer_account(user: User) -> bool:
    return UserMapping.objects.filter(user=user).exists()


def get_customer_for_agent(user_id: int) -> User:
    """A customer account staff may act as; Http404 for staff or unknown ids."""
    customer = customer_accounts().filter(pk=user_id).first()
    if customer is None:
        raise Http404("No such customer.")
    return customer


def get_charger_for_customer(customer: User, pk: int) -> Charger:
    charger = Charger.objects.visible_to_customer(customer).filter(pk=pk).first()
    if charger is None:
        raise Http404("No such charger.")
    return charger


def get_reservation_for_customer(customer: User, pk: int) -> Reservation:
    reservation = (
        Reservation.objects.for_user(customer)
        .select_related("charger")
        .filter(pk=pk)
        .first()
    )
    if reservation is None:
        raise Http404("No such reservation.")
    return reservation


def get_api_session_for_customer(customer: User, pk: int) -> ApiSession:
    session = ApiSession.objects.filter(user=customer, pk=pk).first()
    if session is None:
        raise Http404("No such session.")
    return session


def get_token_for_customer(customer: User, pk: int) -> ApiToken:
    token = ApiToken.objects.filter(user=customer, pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    return token


# The header a portal page's own requests carry: the id of the customer it shows.
# Acting as a customer is the browser session's, so another tab can change whom
# the portal shows while this page still shows the one before.
PORTAL_CUSTOMER_HEADER = "X-Portal-Customer"


def shows_another_customer(request: HttpRequest, viewer: Viewer) -> bool:
    """Whether the page this request came from shows a customer other than the
    one the portal shows now."""
    shown = request.headers.get(PORTAL_CUSTOMER_HEADER)
    return shown is not None and shown != str(viewer.customer.pk)


def render_portal(
    request: HttpRequest,
    viewer: Viewer,
    template: str,
    context: Mapping[str, object],
    status: int = 200,
) -> HttpResponse:
    """Render a portal page (or partial) with every time in the customer's zone."""
    context = {
        **context,
        "portal_customer_header": PORTAL_CUSTOMER_HEADER,
        "portal_customer_id": viewer.customer.pk,
        "customer": viewer.customer,
        "agent": viewer.agent,
        "acting": viewer.acting,
        "customer_tz_name": viewer.zone.key,
    }
    with timezone.override(viewer.zone):
        return render(request, template, context, status=status)
