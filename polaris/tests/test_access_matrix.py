"""Who gets what: every URL of the project by five personas → the expected status.

Personas: anonymous, alice (customer A), bob (customer B), staff (a support agent
who may act as customers, not acting, but may not start or stop customers' API
sessions), and that agent acting as alice. Objects in
the URLs belong to alice, so bob (and staff on the portal's own-account pages)
answer 404: other customers' ids are never revealed.

Every route of the URL resolver needs at least one row (Django's own admin is
represented by its index and login), so a new URL without a row fails the test.

How it runs: one TransactionTestCase, because the SSE views close the database
connection before streaming (polaris/live.py), which a TestCase's wrapping
transaction would not survive. Every other request runs inside an atomic block that
is rolled back, which discards its on-commit callbacks (no Celery message is sent),
and the persona's cookies are restored afterwards: each cell starts from the same
state.
SSE rows with 200 assert the status and `text/event-stream` on the streaming
response and close it without reading, so nothing blocks.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from http.cookies import SimpleCookie

from django.contrib.auth.models import Permission
from django.db import transaction
from django.http import HttpResponse
from django.test import Client, TransactionTestCase, override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from polaris.testing import free_port
from portal.models import ChargerGroup
from portal.tests.factories import ReservationFactory
from sessions_app.models import ApiSession
from sessions_app.services import api_token_create
from sync.tests.factories import (
    ChargerFactory,
    StaffFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)

PERSONAS = ("anonymous", "alice", "bob", "staff", "acting")
# Django's own admin has dozens of routes behind one staff check; the index and
# the login redirect stand for it.
ADMIN_PREFIX = "django-admin/"
ADMIN_ROWS = {
    "django-admin/",
    "django-admin/login/",
    "django-admin/password_change/",
}


@dataclass(frozen=True)
class Row:
    route: str  # the resolver's pattern, e.g. "admin/sessions/<int:...>/"
    method: str
    path: str  # formatted with the fixture ids
    expect: tuple[int, int, int, int, int]  # anonymous, alice, bob, staff, acting
    data: dict[str, object] = field(default_factory=dict)
    htmx: bool = False
    stream: bool = False
    json: bool = False


# fmt: off
ROWS = [
    # Admin console (staff only: others are sent to sign in).
    # The console's front door sends everyone on to Charging Sessions, which checks.
    Row("admin/", "GET", "/admin/", (302, 302, 302, 302, 302)),
    Row("admin/sessions/", "GET", "/admin/sessions/", (302, 302, 302, 200, 200)),
    Row("admin/sessions/", "GET", "/admin/sessions/?status=active",
        (302, 302, 302, 200, 200), htmx=True),
    Row("admin/sessions/export.csv", "GET", "/admin/sessions/export.csv",
        (302, 302, 302, 200, 200)),
    Row("admin/sessions/<int:steve_transaction_id>/", "GET",
        "/admin/sessions/{txn}/", (302, 302, 302, 200, 200)),
    Row("admin/sessions/<int:steve_transaction_id>/", "GET",
        "/admin/sessions/999999/", (302, 302, 302, 404, 404)),
    Row("admin/sessions/<int:steve_transaction_id>/resync", "POST",
        "/admin/sessions/{txn}/resync", (302, 302, 302, 302, 302)),
    # Opened as a page, an action leads to the page its button is on.
    Row("admin/sessions/<int:steve_transaction_id>/resync", "GET",
        "/admin/sessions/{txn}/resync", (302, 302, 302, 302, 302)),
    Row("admin/sync-runs/", "GET", "/admin/sync-runs/", (302, 302, 302, 200, 200)),
    Row("admin/sync-runs/", "GET", "/admin/sync-runs/", (302, 302, 302, 200, 200),
        htmx=True),
    Row("admin/sync-runs/run", "POST", "/admin/sync-runs/run",
        (302, 302, 302, 302, 302)),
    Row("admin/user-mappings/", "GET", "/admin/user-mappings/?q=alice",
        (302, 302, 302, 200, 200)),
    Row("admin/user-mappings/new", "GET", "/admin/user-mappings/new",
        (302, 302, 302, 200, 200)),
    Row("admin/user-mappings/new", "POST", "/admin/user-mappings/new",
        (302, 302, 302, 200, 200), data={"steve_ocpp_id_tag": ""}),
    Row("admin/user-mappings/import", "POST", "/admin/user-mappings/import",
        (302, 302, 302, 302, 302)),
    Row("admin/user-mappings/<int:pk>/", "GET", "/admin/user-mappings/{mapping}/",
        (302, 302, 302, 200, 200)),
    Row("admin/user-mappings/<int:pk>/", "GET", "/admin/user-mappings/999999/",
        (302, 302, 302, 404, 404)),
    Row("admin/user-mappings/<int:pk>/deactivate", "POST",
        "/admin/user-mappings/{mapping}/deactivate", (302, 302, 302, 302, 302)),
    Row("admin/api-tokens/", "GET", "/admin/api-tokens/", (302, 302, 302, 200, 200)),
    # Creating a token redirects to the page that shows it once.
    Row("admin/api-tokens/", "POST", "/admin/api-tokens/", (302, 302, 302, 302, 302),
        data={"name": "matrix"}),
    Row("admin/api-tokens/<int:pk>/revoke", "POST",
        "/admin/api-tokens/{staff_token}/revoke", (302, 302, 302, 302, 302)),
    # Another user's token id is not the staff member's to revoke.
    Row("admin/api-tokens/<int:pk>/revoke", "POST",
        "/admin/api-tokens/{alice_token}/revoke", (302, 302, 302, 404, 404)),
    Row("admin/live/", "GET", "/admin/live/", (302, 302, 302, 200, 200),
        stream=True),
    # Django's admin (its login sends everyone to the throttled sign-in page).
    Row("django-admin/", "GET", "/django-admin/", (302, 302, 302, 200, 200)),
    Row("django-admin/login/", "GET", "/django-admin/login/?next=/django-admin/",
        (302, 302, 302, 302, 302)),
    # Its password change is the throttled one of accounts/.
    Row("django-admin/password_change/", "GET", "/django-admin/password_change/",
        (302, 302, 302, 302, 302)),
    # Accounts.
    Row("accounts/login/", "GET", "/accounts/login/", (200, 200, 200, 200, 200)),
    Row("accounts/logout/", "POST", "/accounts/logout/", (302, 302, 302, 302, 302)),
    # Opened as a page, sign-out asks to confirm with a POST.
    Row("accounts/logout/", "GET", "/accounts/logout/", (302, 200, 200, 200, 200)),
    Row("accounts/password_change/", "GET", "/accounts/password_change/",
        (302, 200, 200, 200, 200)),
    Row("accounts/password_change/done/", "GET", "/accounts/password_change/done/",
        (302, 200, 200, 200, 200)),
    # No reset by email: Polaris sends no email (operators set new passwords).
    Row("accounts/password_reset/", "GET", "/accounts/password_reset/",
        (404, 404, 404, 404, 404)),
    # Sessions API: Bearer tokens for alice, bob and staff; the browser session for
    # the acting agent (the API acts as the signed-in staff member, never as the
    # acted-as customer).
    Row("api/v1/", "GET", "/api/v1/", (404, 404, 404, 404, 404)),
    Row("api/v1/openapi.json", "GET", "/api/v1/openapi.json",
        (200, 200, 200, 200, 200)),
    Row("api/v1/docs", "GET", "/api/v1/docs", (200, 200, 200, 200, 200)),
    Row("api/v1/sessions", "GET", "/api/v1/sessions", (401, 200, 200, 200, 200)),
    Row("api/v1/sessions", "POST", "/api/v1/sessions", (401, 422, 422, 422, 422),
        json=True),
    Row("api/v1/sessions/<session_id>", "GET", "/api/v1/sessions/{api_session}",
        (401, 200, 404, 200, 200)),
    Row("api/v1/sessions/<session_id>", "GET", "/api/v1/sessions/999999",
        (401, 404, 404, 404, 404)),
    # Staff read alice's session, but stopping it takes manage_any_session (403).
    Row("api/v1/sessions/<session_id>/stop", "POST",
        "/api/v1/sessions/{api_session}/stop", (401, 409, 404, 403, 403), json=True),
    Row("api/v1/chargers", "GET", "/api/v1/chargers", (401, 200, 200, 200, 200)),
    # Customer portal. Staff land on the console unless acting as someone; the
    # acting agent reads but changes nothing (403).
    Row("", "GET", "/", (302, 200, 200, 302, 200)),
    Row("", "GET", "/?period=year", (302, 200, 200, 302, 200), htmx=True),
    Row("switch", "GET", "/switch", (302, 200, 200, 200, 200)),
    Row("switch", "POST", "/switch", (302, 302, 302, 302, 302),
        data={"account": "customer"}),
    Row("live/", "GET", "/live/", (302, 200, 200, 200, 200), stream=True),
    Row("chargers/reserve", "POST", "/chargers/reserve", (302, 302, 404, 404, 403),
        data={"charger": "{charger}"}),
    Row("chargers/start", "POST", "/chargers/start", (302, 302, 404, 404, 403),
        data={"charger": "{charger}"}),
    Row("reservations/<int:pk>/cancel", "POST", "/reservations/{reservation}/cancel",
        (302, 302, 404, 404, 403)),
    Row("sessions/<int:pk>/stop", "POST", "/sessions/{api_session}/stop",
        (302, 302, 404, 404, 403)),
    # Staff on the console side get the console's page of the same tokens.
    Row("tokens/", "GET", "/tokens/", (302, 200, 200, 302, 200)),
    Row("tokens/", "POST", "/tokens/", (302, 302, 302, 302, 403),
        data={"name": "matrix"}),
    Row("tokens/<int:pk>/revoke", "POST", "/tokens/{alice_token}/revoke",
        (302, 302, 404, 404, 403)),
    Row("act-as/<int:user_id>/start", "POST", "/act-as/{alice}/start",
        (302, 302, 302, 302, 302)),
    # Staff accounts are never acted as.
    Row("act-as/<int:user_id>/start", "POST", "/act-as/{staff}/start",
        (302, 302, 302, 404, 404)),
    Row("act-as/end", "POST", "/act-as/end", (302, 302, 302, 302, 302)),
    # Opened as a page (signing in again after the session ended as the button was
    # pressed), an action does nothing and leads to the page its button is on.
    Row("chargers/start", "GET", "/chargers/start", (302, 302, 302, 302, 302)),
    Row("act-as/<int:user_id>/start", "GET", "/act-as/{alice}/start",
        (302, 302, 302, 302, 302)),
]
# fmt: on


def project_routes() -> set[str]:
    """Every route pattern of the project, Django's admin reduced to ADMIN_ROWS."""

    def walk(patterns: list[object], prefix: str) -> set[str]:
        routes: set[str] = set()
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                routes |= walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                routes.add(prefix + str(pattern.pattern))
        return routes

    routes = walk(get_resolver().url_patterns, "")
    return {r for r in routes if not r.startswith(ADMIN_PREFIX)} | ADMIN_ROWS


class AccessMatrixTests(TransactionTestCase):
    def setUp(self) -> None:
        now = timezone.now()
        self.alice = UserFactory(username="alice@example.com")
        self.bob = UserFactory(username="bob@example.com")
        self.agent = StaffFactory(username="agent")
        self.agent.user_permissions.add(
            Permission.objects.get(codename="act_as_customer")
        )
        mapping = UserMappingFactory(user=self.alice, steve_ocpp_id_tag="TAG-ALICE")
        UserMappingFactory(user=self.bob, steve_ocpp_id_tag="TAG-BOB")
        charger = ChargerFactory(charge_box_id="CB-PRIVATE", is_public=False)
        group = ChargerGroup.objects.create(name="Alice's depot")
        group.chargers.add(charger)
        group.members.add(self.alice)
        session = session_with_energy(
            kwh=Decimal("3.5"),
            charger=charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=now - timedelta(hours=2),
            stopped_at=now - timedelta(hours=1),
            is_finalized=True,
        )
        reservation = ReservationFactory(
            user=self.alice, charger=charger, id_tag="TAG-ALICE"
        )
        api_session = ApiSession.objects.create(
            user=self.alice,
            charge_box_id=charger.charge_box_id,
            connector_id=1,
            id_tag="TAG-ALICE",
            status=ApiSession.Status.ENDED,
            ended_at=now,
        )
        alice_token, self.alice_raw = api_token_create(user=self.alice)
        _, self.bob_raw = api_token_create(user=self.bob)
        staff_token, self.staff_raw = api_token_create(user=self.agent)
        self.ids = {
            "txn": session.steve_transaction_id,
            "mapping": mapping.pk,
            "charger": charger.pk,
            "reservation": reservation.pk,
            "api_session": api_session.pk,
            "alice_token": alice_token.pk,
            "staff_token": staff_token.pk,
            "alice": self.alice.pk,
            "staff": self.agent.pk,
        }

    def clients(self) -> dict[str, tuple[Client, str | None]]:
        """Each persona's client and Bearer token (None: browser session)."""
        anonymous, alice, bob, staff, acting = (Client() for _ in PERSONAS)
        alice.force_login(self.alice)
        bob.force_login(self.bob)
        staff.force_login(self.agent)
        acting.force_login(self.agent)
        started = acting.post(f"/act-as/{self.alice.pk}/start")
        self.assertEqual(started.status_code, 302)
        for client in (anonymous, alice, bob, staff, acting):
            client.raise_request_exception = False
        return {
            "anonymous": (anonymous, None),
            "alice": (alice, self.alice_raw),
            "bob": (bob, self.bob_raw),
            "staff": (staff, self.staff_raw),
            "acting": (acting, None),
        }

    def request(self, client: Client, token: str | None, row: Row) -> HttpResponse:
        path = row.path.format(**self.ids)
        headers: dict[str, str] = {}
        if row.htmx:
            headers["HX-Request"] = "true"
        if token and path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {token}"
        if row.stream:
            response = client.get(path, headers=headers)
            if response.status_code == 200:
                self.assertTrue(response.streaming, path)
                self.assertEqual(response["Content-Type"], "text/event-stream")
            response.close()
            return response
        cookies = SimpleCookie()
        cookies.load(client.cookies.output(header="", sep=";"))
        try:
            with transaction.atomic():
                if row.method == "GET":
                    response = client.get(path, headers=headers)
                elif row.json:
                    response = client.post(
                        path, "{}", content_type="application/json", headers=headers
                    )
                else:
                    data = {
                        name: str(value).format(**self.ids)
                        for name, value in (row.data or {}).items()
                    }
                    response = client.post(path, data, headers=headers)
                transaction.set_rollback(True)
        finally:
            client.cookies = cookies
        if response.streaming:
            response.close()
        return response

    def test_it_answers_every_url_for_every_persona_as_expected(self) -> None:
        missing = project_routes() - {row.route for row in ROWS}
        self.assertFalse(missing, f"URLs without a row in the access matrix: {missing}")
        clients = self.clients()
        mismatches = []
        # SteVe calls (start charging) fail fast against a closed port. The
        # credentials are the test's own: only local mode has defaults.
        steve = {
            "STEVE_URL": f"http://127.0.0.1:{free_port()}/steve",
            "STEVE_USERNAME": "polaris",
            "STEVE_PASSWORD": "polaris",
        }
        with override_settings(**steve):
            for row in ROWS:
                for persona, expected in zip(PERSONAS, row.expect, strict=True):
                    client, token = clients[persona]
                    response = self.request(client, token, row)
                    # HX-Redirect (status 200) sends an htmx tab on all the same.
                    status = (
                        302
                        if response.has_header("HX-Redirect")
                        else (response.status_code)
                    )
                    if status != expected:
                        mismatches.append(
                            f"{row.method} {row.path.format(**self.ids)}"
                            f"{' (htmx)' if row.htmx else ''} as {persona}: "
                            f"{status}, expected {expected}"
                        )
        self.assertEqual(mismatches, [], "\n".join(mismatches))
