"""The seed's Verify list, the admin redirect, /switch and acting-as in Chromium."""

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Browser, expect

from polaris.browser import chromium, live_server, sign_in
from portal.models import Reservation
from sessions_app.models import AuditEntry
from sync.models import SyncRun
from sync.signals import sessions_changed
from sync.tests.factories import (
    ChargerFactory,
    StaffFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/portal-shots")


@pytest.fixture
def demo_driver() -> dict[str, object]:
    now = timezone.now()
    driver = UserFactory(username="dana@example.com", first_name="Dana")
    UserMappingFactory(user=driver, steve_ocpp_id_tag="TAG-DANA")
    harbour = ChargerFactory(
        charge_box_id="CB-H", friendly_name="Harbour Street", last_check_in_at=now
    )
    ChargerFactory(
        charge_box_id="CB-M",
        friendly_name="Market Square",
        last_check_in_at=now - timedelta(hours=3),
    )
    session_with_energy(
        kwh=Decimal("18.4"),
        charger=harbour,
        ocpp_id_tag="TAG-DANA",
        started_at=now - timedelta(hours=2),
        stopped_at=now - timedelta(hours=1),
        reading_at=now - timedelta(hours=1, minutes=5),
        is_finalized=True,
    )
    Reservation.objects.create(
        user=driver,
        charger=harbour,
        id_tag="TAG-DANA",
        starts_at=now + timedelta(hours=2),
        ends_at=now + timedelta(hours=2, minutes=30),
    )
    agent = StaffFactory(username="agent")
    agent.user_permissions.add(Permission.objects.get(codename="act_as_customer"))
    return {"driver": driver, "agent": agent, "harbour": harbour}


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the test still
    # reads and writes the database between page actions.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as browser:
        yield browser
        # Queries made while Playwright's loop runs get their own connection.
        connections.close_all()


def test_a_driver_walks_the_verify_list(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    SHOTS.mkdir(exist_ok=True)
    with live_server() as server:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(page, server.url, "dana@example.com", "driver")
        assert page.url == f"{server.url}/"
        recent = page.locator("#recent-activity")
        expect(recent).to_contain_text("Harbour Street")
        expect(recent).to_contain_text("18.40")
        expect(recent).to_contain_text("Finalized")
        expect(page.locator("#next-reservation")).to_contain_text("Harbour Street")
        expect(page.locator(".usage-total")).to_have_text("18.4 kWh")
        harbour = page.locator("article.charger", has_text="Harbour Street")
        expect(harbour.locator(".badge")).to_have_text("online")
        market = page.locator("article.charger", has_text="Market Square")
        expect(market.locator(".badge")).to_have_text("offline")
        expect(page.locator(".counts-pill")).to_have_text("1 of 2 available now")
        page.screenshot(path=str(SHOTS / "test-dashboard-390.png"), full_page=True)

        # Live: a sync finds a session started; the banner appears without a reload.
        session = TransactionSyncStateFactory(
            charger=demo_driver["harbour"],
            ocpp_id_tag="TAG-DANA",
            kwh_delivered=Decimal("4.2"),
            started_at=timezone.now() - timedelta(minutes=10),
        )
        page.wait_for_timeout(500)  # let the EventSource connect
        sessions_changed.send(
            sender=SyncRun,
            run=SyncRunFactory(updated_count=1),
            transaction_ids=[session.pk],
        )
        expect(page.locator(".active-session")).to_contain_text("4.20 kWh")

        page.click("text=Previous period")
        expect(page).to_have_url(f"{server.url}/?period=previous")
        expect(page.locator(".usage-total")).to_have_text("0.0 kWh")


def test_staff_are_redirected_switch_and_act_as(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    driver = demo_driver["driver"]
    with live_server() as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "agent", "driver")
        assert page.url == f"{server.url}/admin/sessions/"
        page.goto(f"{server.url}/switch")
        expect(page.locator("main")).to_contain_text("Admin console")
        expect(page.locator("main")).not_to_contain_text("My customer dashboard")

        # The console's entry point: a POST form to act-as start.
        page.goto(f"{server.url}/switch")
        page.evaluate(
            """([url, token]) => {
                const form = document.createElement('form');
                form.method = 'post'; form.action = url;
                const input = document.createElement('input');
                input.name = 'csrfmiddlewaretoken'; input.value = token;
                form.appendChild(input); document.body.appendChild(form); form.submit();
            }""",
            [
                f"/act-as/{driver.pk}/start",  # type: ignore[attr-defined]
                page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute(
                    "value"
                ),
            ],
        )
        page.wait_for_url(f"{server.url}/")
        expect(page.locator(".acting-as")).to_contain_text("Acting as Dana")
        expect(page.locator("#recent-activity")).to_contain_text("18.40")
        expect(page.locator("text=Start charging")).to_have_count(0)
        page.screenshot(path=str(SHOTS / "test-acting-as-1280.png"), full_page=True)
        page.click("text=Back to admin portal")
        page.wait_for_url(f"{server.url}/admin/user-mappings/")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["impersonation.started", "impersonation.ended"]
