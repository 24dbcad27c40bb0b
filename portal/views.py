"""Customer portal pages: read through selectors, write through services, reach
customers' objects only through portal.access."""

from urllib.parse import parse_qs, urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from polaris import live
from polaris.http import (
    IN_PAGE,
    AuthenticatedHttpRequest,
    is_fragment_request,
    post_only,
    staff_only,
    until_event,
)
from portal import access, acting, selectors, services
from portal.forms import (
    RESERVATION_MINUTE_OPTIONS,
    ChargerForm,
    ReservationForm,
    SwitchForm,
)
from portal.live import EVENT as ACTIVE_SESSION_EVENT
from sessions_app.charging import ApiSessionError, StopUnderWay, api_session_stop
from sessions_app.forms import ApiTokenForm
from sessions_app.models import ApiSession
from sessions_app.new_token import (
    new_token_forget,
    new_token_read,
    new_token_redirect,
)
from sessions_app.selectors import api_token_list
from sessions_app.services import api_token_create, api_token_revoke
from sync.models import Charger

CONSOLE = "sessions_app:session-list"
# The parts of the dashboard that an htmx request asks for alone, by the id its
# HX-Target names: a live update of any of them, and the usage card's period chips.
DASHBOARD_PARTS = {
    "usage-card": ("portal/dashboard.html#usage-card", selectors.Dashboard.usage),
    "recent-activity": (
        "portal/dashboard.html#recent-activity",
        selectors.Dashboard.recent_activity,
    ),
    "next-reservation-slot": (
        "portal/dashboard.html#next-reservation",
        selectors.Dashboard.next_reservation,
    ),
    "active-session": (
        "portal/dashboard.html#active-banner",
        selectors.Dashboard.active_banner,
    ),
    "chargers": ("portal/dashboard.html#chargers", selectors.Dashboard.chargers),
}


@login_required
@vary_on_headers("HX-Request", "HX-Target")
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    viewer = access.viewer_for(request)
    if access.sends_staff_to_console(request, viewer):
        if is_fragment_request(request):
            # A live re-read from a tab still showing the customer an agent acted
            # as, after acting ended in another: the whole tab goes to the
            # console, rather than the console into the card.
            return HttpResponseClientRedirect(reverse(CONSOLE))
        return redirect(CONSOLE)
    board = selectors.Dashboard(
        customer=viewer.customer,
        zone=viewer.zone,
        period=request.GET.get("period"),
        now=timezone.now(),
    )
    context: dict[str, object] = {
        "reservation_minute_options": RESERVATION_MINUTE_OPTIONS
    }
    # Only parts' own requests get the part alone: an htmx POST that redirects here
    # (Stop) arrives with HX-Request too, because the browser repeats the header
    # when it follows the redirect, and it swaps the whole page.
    part = request.headers.get("HX-Target") if is_fragment_request(request) else None
    if part in DASHBOARD_PARTS and access.shows_another_customer(request, viewer):
        # Acting as someone else began (or ended) in another tab: this tab's
        # page reloads to say whom it shows, rather than take in their parts.
        return HttpResponseClientRefresh()
    if part in DASHBOARD_PARTS:
        template, read_part = DASHBOARD_PARTS[part]
        # A part rendered alone brings what must agree with it out of band (the
        # usage card its plan card).
        context.update(read_part(board), part_alone=True)
        return access.render_portal(request, viewer, template, context)
    # Before the page's reads: an event published meanwhile is replayed.
    live_url = live.stream_url(
        reverse("portal:live"), live.customer_channel(viewer.customer.pk)
    )
    context.update(board.whole_page(), section="dashboard", live_url=live_url)
    return access.render_portal(request, viewer, "portal/dashboard.html", context)


@login_required
def live_stream(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The SSE stream of the customer the portal shows (never another's)."""
    try:
        viewer = access.viewer_for(request, end_lapsed_acting=False)
    except acting.ActingLapsed:
        # Its end is written by the page's next request, where the stream sends
        # it: a write here would hold a connection for the stream's life.
        return live.signed_out_response()
    channel = live.customer_channel(viewer.customer.pk)
    if live.resumes_another_channel(request, channel):
        # The page shows another customer than the portal shows now (acting
        # changed in another tab): it reloads, as on a sign-out.
        return live.signed_out_response()
    return live.stream(request, channel)


@login_required
def switch(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = SwitchForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # Choosing an account is a way out of acting as a customer: it must end
        # (and be audited) here, or the next visit to / would act again.
        acting.act_as_end(agent=request.user, session=request.session)
        if form.cleaned_data["account"] == "console" and request.user.is_staff:
            request.session.pop(access.CUSTOMER_VIEW_KEY, None)
            return redirect(CONSOLE)
        request.session[access.CUSTOMER_VIEW_KEY] = True
        return redirect("portal:dashboard")
    viewer = access.viewer_for(request)
    context = {
        "section": "switch",
        "has_customer": access.has_customer_account(request.user),
        # Staff on the console pick from its shell: the portal's sidebar would
        # offer a Dashboard link that sends them back to the console.
        "shell": (
            "console_base.html"
            if access.sends_staff_to_console(request, viewer)
            else "portal_base.html"
        ),
    }
    return access.render_portal(request, viewer, "portal/switch.html", context)


@login_required
@post_only("portal:dashboard")
def charger_reserve(request: AuthenticatedHttpRequest) -> HttpResponse:
    customer = access.customer_for_write(request)
    charger = _posted_charger(request, customer)
    form = ReservationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long to reserve the charger for.")
        return _back_to_dashboard(request)
    try:
        reservation = services.reservation_create(
            customer=customer, charger=charger, minutes=form.cleaned_data["minutes"]
        )
    except services.PortalError as error:
        messages.error(request, error.message)
    else:
        # Also when the charger was held already: a double click, a page from
        # before. The end says which reservation holds it.
        until = services.reservation_end(
            reservation, customer=customer, now=timezone.now()
        )
        if reservation.confirmed:
            messages.success(
                request, f"{reservation.charger} is reserved for you until {until}."
            )
        else:
            messages.warning(
                request,
                "The charging network did not confirm your reservation of "
                f"{reservation.charger}. It is shown as yours until {until}, as "
                "the station may be holding it for your card; if it is not, "
                "someone else may start charging there first.",
            )
    return _back_to_dashboard(request)


def _back_to_dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The dashboard with the period it was on. The page's address says which
    (the period chips push it), and a form's request names that address as its
    Referer: same-origin requests carry the whole URL."""
    referer = urlsplit(request.headers.get("Referer", ""))
    same_page = referer.path == reverse("portal:dashboard") and (
        not referer.netloc or referer.netloc == request.get_host()
    )
    asked = parse_qs(referer.query).get("period", [None])[0] if same_page else None
    period = selectors.parse_period(asked)
    if period == selectors.DEFAULT_PERIOD:
        return redirect("portal:dashboard")
    return redirect(f"{reverse('portal:dashboard')}?{urlencode({'period': period})}")


def _posted_charger(request: AuthenticatedHttpRequest, customer: User) -> Charger:
    """The charger a card's form names; Http404 when the field is missing or
    malformed, or names a charger the customer cannot see."""
    form = ChargerForm(request.POST)
    if not form.is_valid():
        raise Http404("No such charger.")
    return access.get_charger_for_customer(customer, form.cleaned_data["charger"])


@login_required
@post_only("portal:dashboard")
def reservation_cancel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    customer = access.customer_for_write(request)
    reservation = access.get_reservation_for_customer(customer, pk)
    try:
        services.reservation_cancel(reservation=reservation)
    except services.PortalError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Your reservation is cancelled.")
    return _back_to_dashboard(request)


@login_required
@post_only("portal:dashboard")
def charger_start(request: AuthenticatedHttpRequest) -> HttpResponse:
    customer = access.customer_for_write(request)
    charger = _posted_charger(request, customer)
    try:
        session = services.charge_start(customer=customer, charger=charger)
    except services.AlreadyStarting as notice:
        # Until the next live update, which shows how that charge is going (or
        # that its start was refused, in another tab).
        messages.info(
            request, notice.message, extra_tags=until_event(ACTIVE_SESSION_EVENT)
        )
    except ApiSessionError as error:
        messages.error(request, error.message)
    else:
        # An accepted start is told by the banner's start notice, which follows
        # it: its message is kept out of the list (in-page) and only marks that
        # the newest notice takes the focus.
        # A start whose answer was lost is kept with a message saying so, until
        # the next live update: the station may not be starting at all.
        if session.status_message:
            messages.warning(
                request,
                session.status_message,
                extra_tags=until_event(ACTIVE_SESSION_EVENT),
            )
        else:
            messages.info(
                request, f"Starting to charge at {charger}.", extra_tags=IN_PAGE
            )
    return _back_to_dashboard(request)


@login_required
@post_only("portal:dashboard")
def session_stop(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    customer = access.customer_for_write(request)
    session = access.get_api_session_for_customer(customer, pk)
    try:
        session = api_session_stop(session=session)
    except StopUnderWay:
        # A second Stop (a double submit without JavaScript) while the first
        # waits for the station: the first one's answer is what the driver sees.
        messages.info(
            request,
            "Your stop is on its way to the station; the charge ends in a moment.",
            extra_tags=until_event(ACTIVE_SESSION_EVENT),
        )
    except ApiSessionError as error:
        messages.error(request, error.message)
    else:
        if session.status == ApiSession.Status.CANCELLED:
            messages.success(request, session.status_message)
        elif session.status == ApiSession.Status.ENDED:
            # A Stop from a page opened before an earlier stop ended the charge.
            messages.info(
                request, "This charge has already ended: it is in Recent activity."
            )
        elif session.status_message:
            # The stop's answer was lost: the station may still be charging, which
            # the next live update's banner says.
            messages.warning(
                request,
                session.status_message,
                extra_tags=until_event(ACTIVE_SESSION_EVENT),
            )
        else:
            messages.success(
                request,
                "Stop requested; the session ends in a moment.",
                extra_tags=until_event(ACTIVE_SESSION_EVENT),
            )
    return _back_to_dashboard(request)


@login_required
@never_cache
def token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The customer's API tokens; a POST creates one, then redirects to this page,
    which shows it once. Staff on their console side have the console's page of
    the same tokens, whose sidebar leads back to the console."""
    viewer = access.viewer_for(request)
    if request.method == "GET" and access.sends_staff_to_console(request, viewer):
        return redirect("sessions_app:api-token-list")
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST":
        customer = viewer.customer_for_write()
        if form.is_valid():
            _, raw_token = api_token_create(
                user=customer,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
            )
            return new_token_redirect(
                request, raw_token=raw_token, to=reverse("portal:token-list")
            )
    context = {
        "section": "tokens",
        "tokens": api_token_list(user=viewer.customer),
        "form": form,
        "new_token": new_token_read(request),
    }
    response = access.render_portal(request, viewer, "portal/token_list.html", context)
    return new_token_forget(request, response)


@login_required
@post_only("portal:token-list")
def token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    customer = access.customer_for_write(request)
    token = access.get_token_for_customer(customer, pk)
    api_token_revoke(token=token)
    messages.success(request, f"Token {token.prefix}… is revoked.")
    return redirect("portal:token-list")


# Where an agent began acting as a customer (a console page's path), or None.
ACTED_FROM_KEY = "portal_acted_from"


@staff_only
@post_only("sessions_app:user-mapping-list")
def act_as_start(request: AuthenticatedHttpRequest, user_id: int) -> HttpResponse:
    if not acting.can_act_as(request.user):
        raise PermissionDenied("You may not act as customers.")
    customer = access.get_customer_for_agent(user_id)
    acting.act_as_start(agent=request.user, customer=customer, session=request.session)
    # "Back to admin portal" returns to the console page acting began on.
    request.session[ACTED_FROM_KEY] = _console_page(request.headers.get("Referer"))
    return redirect("portal:dashboard")


@login_required
@post_only("portal:dashboard")
def act_as_end(request: AuthenticatedHttpRequest) -> HttpResponse:
    acting.act_as_end(agent=request.user, session=request.session)
    acted_from = request.session.pop(ACTED_FROM_KEY, None)
    if not request.user.is_staff:
        return redirect("portal:dashboard")
    return redirect(acted_from or "sessions_app:user-mapping-list")


def _console_page(referer: str | None) -> str | None:
    """The path of `referer` when it is a page of this site's console: the
    Referer names this site's own pages (Referrer-Policy same-origin), and only
    its path is kept, so no other site can be redirected to."""
    if not referer:
        return None
    parts = urlsplit(referer)
    if not parts.path.startswith(reverse("sessions_app:console")):
        return None
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
