"""Every HTML page, in the states people meet it in, checked by axe-core in
Chromium at a desktop and a phone width: no violation of axe's default rules
(WCAG 2 A and AA, and its best practices).

One server and one browser serve the whole module; each test signs in as one
person and walks their pages. A test reports every violation it met, on every
page and at both widths, in one failure.
"""

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import Permission
from django.db import connections
from django.template.loader import render_to_string
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from pytest_django.plugin import DjangoDbBlocker

from polaris.browser import chromium, live_server, sign_in
from portal.models import Reservation
from portal.tests.factories import PlanFactory, SubscriptionFactory
from sessions_app.models import ApiSession
from sync.models import SyncRun, TransactionSyncState
from sync.tests.factories import (
    ChargerFactory,
    ResyncRunFactory,
    StaffFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "driver"  # the factories' password


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[str]:
    """The app under uvicorn for the whole module; its base URL."""
    with django_db_blocker.unblock(), live_server() as running:
        yield running.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an event loop in this thread; the tests
        # still make their data with the ORM between page actions.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with chromium() as running:
            yield running


@dataclass
class Fleet:
    """What the pages show (people, cards, chargers, sessions, runs): the rows
    the tests open pages of."""

    dana_charging: TransactionSyncState
    dana_finished: TransactionSyncState
    unmapped: TransactionSyncState
    flagged: TransactionSyncState
    dana_mapping_pk: int


@pytest.fixture
def fleet() -> Fleet:
    now = timezone.now()
    # Olga may change mappings and act as customers: every console control shows.
    operator = StaffFactory(username="operator", first_name="Olga")
    operator.user_permissions.add(Permission.objects.get(codename="act_as_customer"))
    dana = UserFactory(username="dana@example.com", first_name="Dana")
    eli = UserFactory(username="eli@example.com", first_name="Eli")
    UserFactory(username="new@example.com", first_name="Noor")  # no card yet
    dana_mapping = UserMappingFactory(
        user=dana,
        steve_ocpp_id_tag="04A1B2C3",
        label="Dana's car",
        billing_customer_id="cus_dana",
    )
    UserMappingFactory(user=eli, steve_ocpp_id_tag="TAG-ELI", label="")
    UserMappingFactory(
        user=UserFactory(username="gone@example.com"),
        steve_ocpp_id_tag="TAG-GONE",
        is_active=False,
    )
    # Little included energy, so that the plan card says how far over it she is.
    SubscriptionFactory(user=dana, plan=PlanFactory(name="Light 20", included_kwh=20))

    harbour = ChargerFactory(
        charge_box_id="CP-H", friendly_name="Harbour Street", last_check_in_at=now
    )
    market = ChargerFactory(
        charge_box_id="CP-M", friendly_name="Market Square", last_check_in_at=now
    )
    old_mill = ChargerFactory(
        charge_box_id="CP-O", friendly_name="Old Mill", last_check_in_at=now
    )
    ChargerFactory(
        charge_box_id="CP-S",
        friendly_name="Station Road",
        last_check_in_at=now - timedelta(hours=3),
    )
    new_quay = ChargerFactory(
        charge_box_id="CP-N",
        friendly_name="New Quay",
        connector_type="",
        max_power_kw=None,
        last_check_in_at=now,
    )
    ChargerFactory(
        charge_box_id="CP-P", friendly_name="Pier Head", last_check_in_at=None
    )
    ferry_lane = ChargerFactory(
        charge_box_id="CP-F", friendly_name="Ferry Lane", last_check_in_at=now
    )

    # Enough finished sessions for Load more (15 rows a page).
    for hours in range(1, 21):
        session_with_energy(
            kwh=Decimal("7.25") + hours,
            charger=market,
            ocpp_id_tag="TAG-ELI" if hours % 3 else "04A1B2C3",
            started_at=now - timedelta(hours=hours, minutes=50),
            stopped_at=now - timedelta(hours=hours),
            reading_at=now - timedelta(hours=hours, minutes=5),
            updated_at=now - timedelta(hours=hours),
            is_finalized=True,
        )
    dana_finished = session_with_energy(
        kwh=Decimal("18.4"),
        charger=harbour,
        ocpp_id_tag="04A1B2C3",
        started_at=now - timedelta(days=1, hours=2),
        stopped_at=now - timedelta(days=1, hours=1),
        reading_at=now - timedelta(days=1, hours=1, minutes=5),
        is_finalized=True,
    )
    dana_charging = session_with_energy(
        kwh=Decimal("4.2"),
        charger=harbour,
        ocpp_id_tag="04A1B2C3",
        started_at=now - timedelta(minutes=40),
        reading_at=now - timedelta(minutes=1),
    )
    ApiSession.objects.create(
        user=dana,
        charge_box_id=dana_charging.charge_box_id,
        connector_id=dana_charging.connector_id,
        id_tag=dana_charging.ocpp_id_tag,
        status=ApiSession.Status.STARTED,
        transaction=dana_charging,
    )
    # Dana's Start at New Quay, sent a moment ago: the banner says it is starting.
    ApiSession.objects.create(
        user=dana,
        charge_box_id=new_quay.charge_box_id,
        connector_id=new_quay.connector_id,
        id_tag="04A1B2C3",
        remote_start_sent_at=now,
        created_at=now,
    )
    # Eli's Start the station did not take: the banner says so for a while.
    ApiSession.objects.create(
        user=eli,
        charge_box_id=new_quay.charge_box_id,
        connector_id=new_quay.connector_id,
        id_tag="TAG-ELI",
        status=ApiSession.Status.CANCELLED,
        remote_start_sent_at=now - timedelta(minutes=3),
        created_at=now - timedelta(minutes=3),
        ended_at=now - timedelta(minutes=1),
    )
    unmapped = session_with_energy(
        kwh=Decimal("2.5"),
        charger=old_mill,
        ocpp_id_tag="UNKNOWN-77",
        started_at=now - timedelta(minutes=20),
        reading_at=now - timedelta(minutes=2),
    )
    flagged = TransactionSyncStateFactory(
        charger=ChargerFactory(charge_box_id="CP-D", friendly_name="Depot"),
        ocpp_id_tag="TAG-ELI",
        kwh_delivered=Decimal("3.000"),
        charging_past_manual_stop=True,
        meter_reset_seen=True,
    )
    Reservation.objects.create(
        user=dana,
        charger=market,
        id_tag="04A1B2C3",
        starts_at=now + timedelta(hours=2),
        ends_at=now + timedelta(hours=2, minutes=30),
    )
    Reservation.objects.create(
        user=eli,
        charger=ferry_lane,
        id_tag="TAG-ELI",
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(minutes=25),
    )

    SyncRunFactory(
        started_at=now - timedelta(minutes=10), created_count=2, updated_count=5
    )
    ResyncRunFactory(
        steve_transaction_id=dana_finished.steve_transaction_id,
        started_at=now - timedelta(minutes=6),
        updated_count=1,
    )
    SyncRunFactory(
        status=SyncRun.Status.PARTIAL,
        started_at=now - timedelta(minutes=4),
        errors_count=2,
        error="SteVe could not serve the meter values of 2 transactions.",
    )
    SyncRunFactory(
        status=SyncRun.Status.FAILED,
        started_at=now - timedelta(minutes=1),
        error="API timed out at page 12.",
    )
    return Fleet(
        dana_charging=dana_charging,
        dana_finished=dana_finished,
        unmapped=unmapped,
        flagged=flagged,
        dana_mapping_pk=dana_mapping.pk,
    )


AXE_OPTIONS = {"resultTypes": ["violations", "incomplete"]}
# axe reports some failures as needing review rather than as violations (an
# aria-label on a <div> without a role, for one), so those fail the test too;
# except colour contrast, which axe cannot compute over a background image, such
# as the arrow of a <select>: the text there is the page's own on white.
LEFT_TO_REVIEW = {"color-contrast"}


def describe(result: dict[str, Any]) -> str:
    """One line for an axe result: rule, impact, help and each node's selector."""
    targets = "; ".join(" ".join(node["target"]) for node in result["nodes"])
    return (
        f"{result['id']} ({result['impact']}) {result['help']}"
        f" [{len(result['nodes'])}] {targets}"
    )


# True once every transition and finite animation on the page has ended (a live
# badge's endless pulse aside).
SETTLED = """() => document.getAnimations().every(
  (a) => a.playState !== "running" || a.effect.getTiming().iterations === Infinity
)"""


@dataclass
class Audit:
    """Runs axe on pages and keeps what it found, to fail once at the end."""

    page: Page
    base_url: str
    axe: Axe = field(default_factory=Axe)
    found: list[str] = field(default_factory=list)
    checked: int = 0

    def visit(
        self,
        path: str,
        state: str,
        *,
        ready: str = "main",
        reviewed: Collection[str] = (),
    ) -> None:
        """Open `path` and check it at both widths once `ready` (a selector)
        is visible."""
        self.page.set_viewport_size(DESKTOP)
        self.page.goto(f"{self.base_url}{path}")
        expect(self.page.locator(ready).first).to_be_visible()
        self.check(state, reviewed=reviewed)

    def check(
        self,
        state: str,
        *,
        within: str | None = None,
        reviewed: Collection[str] = (),
    ) -> None:
        """Check the page as it is now (or only the part `within` selects), at
        the desktop width then the phone width. `reviewed` names rules whose
        doubts about this page a person has looked at and found fine."""
        for viewport in (DESKTOP, PHONE):
            self.page.set_viewport_size(viewport)
            # Colours are measured as they end: a button that just appeared or
            # was pressed may still be fading (Swagger's take 0.3 s).
            self.page.wait_for_function(SETTLED)
            results = self.axe.run(
                self.page, context=within, options=AXE_OPTIONS
            ).response
            self.checked += 1
            where = f"{state} @{viewport['width']}px"
            for violation in results["violations"]:
                self.found.append(f"{where}: {describe(violation)}")
            for doubt in results["incomplete"]:
                if doubt["id"] not in LEFT_TO_REVIEW | set(reviewed):
                    self.found.append(f"{where}, needs review: {describe(doubt)}")
        self.page.set_viewport_size(DESKTOP)

    def assert_clean(self) -> None:
        assert self.checked, "no page was checked"
        if self.found:
            pytest.fail("axe found violations:\n" + "\n".join(self.found))


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test, closed before the test's data goes
    (the database fixture of the module's mark ends last): a page left open
    calls the server (its live stream) while tables empty."""
    opened = browser.new_context(viewport=DESKTOP)
    yield opened
    opened.close()
    connections.close_all()


@pytest.fixture
def audit(context: BrowserContext, server: str) -> Audit:
    return Audit(page=context.new_page(), base_url=server)


def test_the_console(audit: Audit, fleet: Fleet) -> None:
    page = audit.page
    sign_in(page, audit.base_url, "operator", PASSWORD)

    audit.visit("/admin/sessions/", "Charging Sessions")
    page.get_by_role("link", name="Load more").click()
    expect(page.locator("#session-tbody tr")).to_have_count(24)
    audit.check("Charging Sessions after Load more")
    page.select_option("#id_status", "active")
    page.fill("#id_tag", "a1b2")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#session-count")).to_have_text(
        "1 session matches current filters"
    )
    audit.check("Charging Sessions filtered")
    audit.visit("/admin/sessions/?to=2025-01-01", "Charging Sessions, none match")
    audit.visit(
        "/admin/sessions/?status=bogus&from=2026-02-30",
        "Charging Sessions with filter notes",
    )
    audit.visit("/admin/sessions/?tag=UNKNOWN", "Charging Sessions, unmapped tag")
    page.get_by_role("button", name="Pause live updates").click()
    expect(page.locator("#live-banner")).to_contain_text("Live updates paused")
    audit.check("Charging Sessions, live updates paused")
    # Paused stays paused in this tab, on every console page: the next ones are
    # to be seen live. Resuming re-reads the table; here that re-read fails.
    page.route("**/admin/sessions/?tag=UNKNOWN", lambda route: route.abort())
    page.get_by_role("button", name="Resume live updates").click()
    expect(page.locator("#live-banner")).to_contain_text("Live updates interrupted")
    audit.check("Charging Sessions, a re-read failed")
    page.unroute("**/admin/sessions/?tag=UNKNOWN")
    page.route("**/admin/sessions/?*", lambda route: route.fulfill(status=500))
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".request-error")).to_be_visible()
    audit.check("Charging Sessions after a request failed")
    page.unroute("**/admin/sessions/?*")

    for session, state in (
        (fleet.dana_charging, "mapped, active"),
        (fleet.dana_finished, "mapped, completed"),
        (fleet.unmapped, "unmapped"),
        (fleet.flagged, "flagged"),
    ):
        audit.visit(
            f"/admin/sessions/{session.steve_transaction_id}/",
            f"Transaction ({state})",
        )
    page.get_by_role("button", name="Resync now").click()
    expect(page.locator("#resync-status")).not_to_be_empty()
    audit.check("Transaction after Resync now")

    audit.visit("/admin/sync-runs/", "Sync runs")
    audit.visit("/admin/sync-runs/?status=failed", "Sync runs, failed")
    audit.visit(
        "/admin/sync-runs/?kind=chargers&status=running", "Sync runs, none match"
    )

    audit.visit("/admin/user-mappings/", "User mappings")
    page.locator("tr", has_text="04A1B2C3").locator("summary").click()
    expect(
        page.get_by_role("button", name="Deactivate mapping 04A1B2C3")
    ).to_be_visible()
    audit.check("User mappings, Deactivate asking")
    audit.visit("/admin/user-mappings/?q=nobody", "User mappings, none match")
    audit.visit("/admin/user-mappings/new", "New mapping")
    page.get_by_role("button", name="Save mapping").click()
    expect(page.locator(".field--error").first).to_be_visible()
    audit.check("New mapping sent back with errors")
    audit.visit(f"/admin/user-mappings/{fleet.dana_mapping_pk}/", "Edit mapping")
    page.goto(f"{audit.base_url}/admin/user-mappings/")
    page.set_input_files(
        "#id_file",
        files=[
            {
                "name": "mappings.csv",
                "mimeType": "text/csv",
                "buffer": b"steveOcppIdTag,email,label\n"
                b"TAG-NEW,new@example.com,Van\n"
                b",nobody,\n",
            }
        ],
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-report")).to_be_visible()
    audit.check("User mappings after an import with skipped lines")

    audit.visit("/admin/api-tokens/", "API tokens (console)")
    page.get_by_label("Name").fill("Fleet dashboard")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    audit.check("API tokens with a new token shown once")

    audit.visit("/switch", "Switch account (staff)")
    audit.visit("/admin/sessions/999999/", "404 (staff)")
    audit.visit("/accounts/password_change/", "Change password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".field--error").first).to_be_visible()
    audit.check("Change password sent back with errors")
    audit.visit("/accounts/logout/", "Sign out?")

    # Django admin's own pages, which the console links to. Django's sidebar
    # list of models keeps the hidden header of a column of change links that
    # the sidebar leaves out, which axe asks about: a header over no cells
    # misleads no one (Django's markup, not ours).
    audit.visit("/django-admin/", "Django admin", ready="#content")
    for path, state in (
        ("/django-admin/sync/usermapping/", "Django admin, mappings"),
        (
            f"/django-admin/sync/usermapping/{fleet.dana_mapping_pk}/change/",
            "Django admin, a mapping",
        ),
    ):
        audit.visit(path, state, ready="#content", reviewed={"th-has-data-cells"})

    audit.visit("/accounts/password_change/", "Change password")
    page.fill("#id_old_password", PASSWORD)
    page.fill("#id_new_password1", "a-new-long-passphrase")
    page.fill("#id_new_password2", "a-new-long-passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    audit.check("Password changed")
    audit.assert_clean()


def test_the_portal(audit: Audit, fleet: Fleet) -> None:
    page = audit.page
    sign_in(page, audit.base_url, "dana@example.com", PASSWORD)
    audit.visit("/", "Dashboard with a live session")
    page.get_by_text("Daily usage as a table").click()
    audit.check("Dashboard with the daily usage table open")
    for period in ("previous", "year", "bogus"):
        audit.visit(f"/?period={period}", f"Dashboard, period={period}")
    page.route("**/?period=previous", lambda route: route.fulfill(status=500))
    page.get_by_role("link", name="Previous period").click()
    expect(page.locator(".request-error")).to_be_visible()
    audit.check("Dashboard after a request failed")
    page.unroute("**/?period=previous")
    page.route("**/live/**", lambda route: route.abort())
    audit.visit("/", "Dashboard, live updates disconnected", ready=".live-state")
    page.unroute("**/live/**")
    audit.visit("/tokens/", "API tokens (portal)")
    audit.visit("/no-such-page/", "404 (driver)")
    audit.visit("/admin/sessions/", "Sign in, signed in as a driver")
    expect(page.get_by_role("status")).to_contain_text("which cannot open that page")

    page.context.clear_cookies()
    sign_in(page, audit.base_url, "eli@example.com", PASSWORD)
    audit.visit("/", "Dashboard without a session")
    page.context.clear_cookies()
    sign_in(page, audit.base_url, "new@example.com", PASSWORD)
    audit.visit("/", "Dashboard of a customer without a card")
    audit.visit("/switch", "Switch account (customer)")
    audit.assert_clean()


def test_acting_as_a_customer(audit: Audit, fleet: Fleet) -> None:
    page = audit.page
    sign_in(page, audit.base_url, "operator", PASSWORD)
    page.goto(f"{audit.base_url}/admin/user-mappings/")
    page.get_by_role("button", name="Act as customer Dana").click()
    page.wait_for_url(f"{audit.base_url}/")
    audit.check("Dashboard acting as Dana")
    audit.visit("/tokens/", "API tokens acting as Dana")
    audit.assert_clean()


def test_pages_before_signing_in(audit: Audit, fleet: Fleet) -> None:
    page = audit.page
    audit.visit("/accounts/login/", "Sign in")
    page.fill("input[name=username]", "dana@example.com")
    page.fill("input[name=password]", "wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    audit.check("Sign in refused")
    audit.visit("/no-such-page/", "404 (signed out)")
    many = "&".join(f"p{n}=1" for n in range(1100))
    audit.visit(f"/accounts/login/?{many}", "400")
    expect(page.locator(".error-page__code")).to_have_text("400 · Bad request")

    # The form expired: its CSRF cookie is gone.
    page.goto(f"{audit.base_url}/accounts/login/")
    page.context.clear_cookies()
    page.fill("input[name=username]", "dana@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error-page__code")).to_have_text("403 · Form expired")
    audit.check("403, form expired")

    # Django renders 500.html without a request; no URL fails on purpose, so the
    # page is served as Django would render it, at an address of the server.
    def server_error(route: Route) -> None:
        route.fulfill(
            status=500, content_type="text/html", body=render_to_string("500.html")
        )

    page.route(f"{audit.base_url}/broken/", server_error)
    audit.visit("/broken/", "500")
    audit.visit("/api/v1/docs", "API docs", ready=".opblock")
    # Two operations open (two of everything an operation shows), one of them
    # tried out: its request sent and its response shown.
    create = page.locator("#operations-sessions-sessions_app_api_session_create")
    detail = page.locator("#operations-sessions-sessions_app_api_session_detail")
    for operation in (create, detail):
        operation.locator(".opblock-summary-control").click()
        operation.get_by_role("button", name="Try it out").click()
    detail.get_by_placeholder("session_id").fill("1")
    detail.get_by_role("button", name="Execute").click()
    expect(detail.locator(".live-responses-table")).to_be_visible()
    audit.check("API docs, operations open and tried out")
    # Nothing past a phone screen's edge: the page does not scroll sideways.
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(DESKTOP)
    page.get_by_role("button", name="Authorize").first.click()
    # The rest of the page is as just checked, under the dialog's backdrop.
    audit.check("API docs, the Authorize dialog", within=".dialog-ux")
    # Escape closes it, and the keyboard is back where it opened it.
    page.keyboard.press("Escape")
    expect(page.locator(".dialog-ux")).to_have_count(0)
    expect(page.locator(".auth-wrapper .authorize")).to_be_focused()
    audit.assert_clean()


def test_staff_without_the_mapping_permissions(audit: Audit, fleet: Fleet) -> None:
    StaffFactory(username="reader", may_change_mappings=False)
    sign_in(audit.page, audit.base_url, "reader", PASSWORD)
    audit.visit("/admin/user-mappings/new", "403 (staff without the permission)")
    audit.visit("/admin/user-mappings/", "User mappings, read only")
    audit.assert_clean()
