"""The seed's Verify list, the admin redirect, /switch and acting-as in Chromium."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from polaris.browser import (
    chromium,
    live_server,
    live_updates_held,
    sign_in,
    wait_for_live_stream,
    watch_live_updates,
)
from portal.models import Reservation
from portal.selectors import FAILED_START_SHOWN_FOR
from portal.tests.factories import SubscriptionFactory
from sessions_app import charging
from sessions_app.models import ApiSession, AuditEntry
from sessions_app.signals import api_session_changed
from sync import services
from sync.models import Charger, SyncRun, TransactionSyncState
from sync.signals import sessions_changed
from sync.standin.testing import StandinProcess
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


def dana_charging(demo_driver: dict[str, object], kwh: str) -> TransactionSyncState:
    """Dana's charge at Harbour Street, begun ten minutes ago, as a sync stores it."""
    return TransactionSyncStateFactory(
        charger=demo_driver["harbour"],
        ocpp_id_tag="TAG-DANA",
        kwh_delivered=Decimal(kwh),
        started_at=timezone.now() - timedelta(minutes=10),
    )


def dana_starting(demo_driver: dict[str, object]) -> ApiSession:
    """Dana's portal Start at Harbour Street, sent just now, no charge yet."""
    return ApiSession.objects.create(
        user=demo_driver["driver"],
        charge_box_id="CB-H",
        connector_id=1,
        id_tag="TAG-DANA",
        remote_start_sent_at=timezone.now(),
    )


def started_from_the_portal(session: TransactionSyncState, driver: User) -> ApiSession:
    """The portal session `driver` started `session` with: what gives the banner
    its Stop."""
    return ApiSession.objects.create(
        user=driver,
        charge_box_id=session.charge_box_id,
        connector_id=session.connector_id,
        id_tag=session.ocpp_id_tag,
        status=ApiSession.Status.STARTED,
        transaction=session,
    )


def sync_saw(session: TransactionSyncState, kwh: str | None = None) -> None:
    """What a sync run that updated `session` (to `kwh`) tells the open pages."""
    if kwh is not None:
        session.kwh_delivered = Decimal(kwh)
        session.save(update_fields=["kwh_delivered"])
    sessions_changed.send(
        sender=SyncRun,
        run=SyncRunFactory(updated_count=1),
        transaction_ids=[session.pk],
    )


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the test still
    # reads and writes the database between page actions.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as browser:
        yield browser
        # Queries made while Playwright's loop runs get their own connection.
        connections.close_all()


@contextmanager
def dana_dashboard(browser: Browser) -> Iterator[Page]:
    """Dana's dashboard at 1280 px, signed in, served by a server of its own."""
    with live_server() as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "dana@example.com", "driver")
        yield page


def start_acting(page: Page, base_url: str, customer_id: int) -> None:
    """What the console's "Act as customer" button does: a POST to act-as start."""
    page.goto(f"{base_url}/switch")
    page.evaluate(
        """([url, token]) => {
            const form = document.createElement('form');
            form.method = 'post'; form.action = url;
            const input = document.createElement('input');
            input.name = 'csrfmiddlewaretoken'; input.value = token;
            form.appendChild(input); document.body.appendChild(form); form.submit();
        }""",
        [
            f"/act-as/{customer_id}/start",
            page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute(
                "value"
            ),
        ],
    )
    page.wait_for_url(f"{base_url}/")


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
        session = dana_charging(demo_driver, kwh="4.2")
        wait_for_live_stream(page)
        chip = page.locator("#period-current")
        chip.focus()
        page.locator("#usage-card").evaluate("card => { card.dataset.old = '1'; }")
        sync_saw(session)
        expect(page.locator(".active-session")).to_contain_text("4.20 kWh")
        # The list and the usage follow the same event; a keyboard user on a
        # period chip stays there.
        expect(recent.locator("tbody tr").first).to_contain_text("Charging")
        expect(recent.locator("tbody tr").first).to_contain_text("4.20")
        expect(page.locator("#usage-card[data-old]")).to_have_count(0)
        expect(chip).to_be_focused()

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
        expect(page.locator("main")).to_contain_text("My customer dashboard")

        start_acting(page, server.url, driver.pk)  # type: ignore[attr-defined]
        expect(page.locator(".acting-as")).to_contain_text("Acting as Dana")
        # The banner keeps the page's rhythm: as far from the eyebrow as the
        # messages would be.
        banner = page.locator(".acting-as").bounding_box()
        eyebrow = page.locator(".page-header__eyebrow").bounding_box()
        assert banner is not None and eyebrow is not None
        assert eyebrow["y"] - (banner["y"] + banner["height"]) >= 24, (banner, eyebrow)
        # On a phone the button goes under the sentence instead of squeezing it.
        page.set_viewport_size({"width": 390, "height": 844})
        text = page.locator(".acting-as .banner__body").bounding_box()
        button = page.locator(".acting-as .banner__actions").bounding_box()
        assert text is not None and button is not None
        assert button["y"] >= text["y"] + text["height"], (text, button)
        assert text["width"] >= 300, text
        page.set_viewport_size({"width": 1280, "height": 900})
        expect(page.locator("#recent-activity")).to_contain_text("18.40")
        page.screenshot(path=str(SHOTS / "test-acting-as-1280.png"), full_page=True)
        page.click("text=Back to admin portal")
        page.wait_for_url(f"{server.url}/admin/user-mappings/")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["impersonation.started", "impersonation.ended"]


def test_an_acting_agent_sees_the_customers_controls_disabled(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # "They see what you see": the Start, Reserve and Stop Dana has, which an
    # agent cannot press, also when a live update brings the banner anew.
    session = dana_charging(demo_driver, kwh="2.00")
    started_from_the_portal(session, demo_driver["driver"])  # type: ignore[arg-type]
    online = ChargerFactory(
        charge_box_id="CB-O", friendly_name="Old Mill", last_check_in_at=timezone.now()
    )
    with live_server() as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        old_mill = f"Old Mill #{online.connector_id}"
        stop = page.get_by_role("button", name="Stop charging at Harbour Street")
        controls = [
            stop,
            page.get_by_role("button", name=f"Start charging at {old_mill}"),
            page.get_by_role("button", name=f"Reserve {old_mill}"),
            page.get_by_label(f"Reserve {old_mill} for"),
        ]
        sign_in(page, server.url, "dana@example.com", "driver")
        for control in controls:
            expect(control).to_be_enabled()
        page.click("text=Sign out")

        sign_in(page, server.url, "agent", "driver")
        start_acting(page, server.url, demo_driver["driver"].pk)  # type: ignore[attr-defined]
        for control in controls:
            expect(control).to_be_disabled()
        wait_for_live_stream(page)
        sync_saw(session, kwh="3.50")
        expect(page.locator(".live-kwh")).to_have_text("3.50 kWh")
        expect(stop).to_be_disabled()


def test_switching_to_the_console_or_signing_out_ends_acting(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    driver = demo_driver["driver"]
    with live_server() as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "agent", "driver")

        start_acting(page, server.url, driver.pk)  # type: ignore[attr-defined]
        expect(page.locator(".acting-as")).to_contain_text("Acting as Dana")
        page.goto(f"{server.url}/switch")
        page.click("text=Open admin console")
        page.wait_for_url(f"{server.url}/admin/sessions/")
        page.goto(f"{server.url}/")
        assert page.url == f"{server.url}/admin/sessions/"

        start_acting(page, server.url, driver.pk)  # type: ignore[attr-defined]
        page.click("text=Sign out")
        page.wait_for_url(f"{server.url}/accounts/login/")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["impersonation.started", "impersonation.ended"] * 2


@pytest.fixture
def standin_driver(standin: StandinProcess) -> User:
    """Dana, whose TAG-0001 may charge at CP-001 ("Harbour Street"): without
    scenarios the stand-in's CP-001 is idle, so a real remote start can begin."""
    standin.reset(scenarios=False)
    driver = UserFactory(username="dana@example.com", first_name="Dana")
    UserMappingFactory(user=driver, steve_ocpp_id_tag="TAG-0001")
    ChargerFactory(
        charge_box_id="CP-001",
        connector_id=1,
        friendly_name="Harbour Street",
        last_check_in_at=timezone.now(),
    )
    return driver


def charging_at_harbour_street(standin: StandinProcess, driver: User) -> ApiSession:
    """A real remote start, seen by a real sync: the driver's banner has its Stop
    button."""
    with standin.client(timeout=5, retry_delays=(0.05,)) as steve:
        created = charging.api_session_create(
            user=driver, charge_box_id="CP-001", connector_id=1, client=steve
        ).session
        standin.tick()
        services.sync_run_transactions(trigger="command", client=steve)
        session = charging.api_session_advance(session_id=created.pk, client=steve)
    assert session.status == ApiSession.Status.STARTED
    return session


def test_stop_in_the_banner_keeps_the_whole_page(
    standin: StandinProcess, standin_driver: User, browser: Browser
) -> None:
    charging_at_harbour_street(standin, standin_driver)
    with live_server(**standin.polaris_settings()) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "dana@example.com", "driver")
        banner = page.locator(".active-session")
        expect(banner).to_contain_text("Charging at Harbour Street")
        # The region that says so must be the one screen readers already know,
        # though the Stop swaps the whole page in.
        page.evaluate(
            "() => { document.getElementById('active-session-announcer').kept = 1; }"
        )
        banner.get_by_role("button", name="Stop").click()
        expect(page.locator(".messages")).to_contain_text("Stop requested")
        # Under way until the sync sees the charge end: no second Stop meanwhile,
        # and the keyboard stays where it was.
        expect(banner.get_by_role("button")).to_have_text("Stopping…")
        expect(banner.get_by_role("button")).to_be_disabled()
        expect(banner.get_by_role("button")).to_be_focused()
        page.keyboard.press("Enter")
        # Screen readers hear the change of state, not every figure.
        expect(page.locator("#active-session-announcer")).to_have_text(
            "Stopping charging at Harbour Street #1."
        )
        assert (
            page.evaluate(
                "() => document.getElementById('active-session-announcer').kept"
            )
            == 1
        )
        stops = standin.state()["requests"]
        assert stops.get("/steve/api/v1/operations/RemoteStopTransaction") == 1, stops
        expect(page.locator(".page-header__title")).to_have_text("Hi Dana")
        # The page the Stop brought works as the first did: it can be paused.
        expect(page.get_by_role("button", name="Pause live updates")).to_be_visible()
        expect(page.locator("#recent-activity")).to_be_visible()
        expect(page.locator("#chargers")).to_be_visible()
        expect(page.locator("#usage-card")).to_have_count(1)
        expect(page.locator(".sidebar")).to_be_visible()
        # The sync that sees the stop updates the banner, which then says how it
        # went: the sentence about the stop being under way goes.
        wait_for_live_stream(page)
        with standin.client(timeout=5, retry_delays=(0.05,)) as steve:
            standin.tick()
            services.sync_run_transactions(trigger="command", client=steve)
        expect(banner).to_have_count(0)
        expect(page.locator(".messages")).not_to_contain_text("Stop requested")
        # Its Stop gone with it, the keyboard goes on from where the ended charge
        # is listed, not from the top of the page.
        expect(page.locator("#recent-title")).to_be_focused()
    stops = standin.state()["requests"]
    assert stops.get("/steve/api/v1/operations/RemoteStopTransaction") == 1


def test_stop_on_a_page_from_before_the_charge_ended_says_so_and_takes_the_focus(
    standin: StandinProcess, standin_driver: User, browser: Browser
) -> None:
    session = charging_at_harbour_street(standin, standin_driver)
    with live_server(**standin.polaris_settings()) as server:
        page = browser.new_page(viewport={"width": 390, "height": 800})
        sign_in(page, server.url, "dana@example.com", "driver")
        page.get_by_role("button", name="Pause live updates").click()
        # Stopped from elsewhere (another tab, the API), and over.
        with standin.client(timeout=5, retry_delays=(0.05,)) as steve:
            charging.api_session_stop(session=session, client=steve)
            standin.tick()
            services.sync_run_transactions(trigger="command", client=steve)
            session = charging.api_session_advance(session_id=session.pk, client=steve)
        assert session.status == ApiSession.Status.ENDED
        page.locator(".active-session").get_by_role("button", name="Stop").click()
        message = page.locator(".messages > .banner")
        expect(message).to_have_text(
            "This charge has already ended: it is in Recent activity."
        )
        # Its Stop gone from the page the answer brought, the keyboard goes on
        # from the answer, not from the top of the page.
        expect(message).to_be_focused()


def test_an_ending_reservation_leaves_the_open_dashboard_on_time(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # Without a charge to send a live event, the next-reservation card and the
    # chargers card re-read themselves at the end time: the seed's "Past
    # reservations drop off automatically", and "reserved" only while a
    # reservation covers this moment.
    market = ChargerFactory(
        charge_box_id="CB-S", friendly_name="Station Road", last_check_in_at=None
    )
    with dana_dashboard(browser) as page:
        # Made after signing in, which may take a while on a busy machine: the
        # page must first show the reservation it then sees end.
        now = timezone.now()
        Charger.objects.filter(pk=market.pk).update(last_check_in_at=now)
        Reservation.objects.create(
            user=demo_driver["driver"],
            charger=market,
            id_tag="TAG-DANA",
            starts_at=now - timedelta(minutes=10),
            ends_at=now + timedelta(seconds=6),
        )
        page.reload()
        card = page.locator("#next-reservation")
        station = page.locator("article.charger", has_text="Station Road")
        expect(card).to_contain_text("Station Road")
        expect(station.locator(".charger-status")).to_have_text("reserved")
        # The later reservation of the fixture (Harbour Street) takes its place.
        expect(card).to_contain_text("Harbour Street", timeout=15_000)
        expect(station.locator(".charger-status")).to_have_text("online")


@pytest.mark.usefixtures("standin_driver")
def test_a_card_reserves_and_then_starts_from_its_one_form(
    standin: StandinProcess, browser: Browser
) -> None:
    with live_server(**standin.polaris_settings()) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "dana@example.com", "driver")
        first = page.locator("article.charger").first
        first.get_by_label("Reserve Harbour Street #1 for").select_option("15")
        # What the buttons say once the form is sent, kept for after the
        # navigation (window listeners run after the page's own on document).
        page.evaluate(
            """() => window.addEventListener("submit", (event) => {
                const buttons = [...event.target.querySelectorAll("button")];
                sessionStorage.setItem("sent", JSON.stringify([
                    event.submitter.textContent, buttons.map((b) => b.disabled)]));
            })"""
        )
        # Reserve posts the card's form to its own action (formaction).
        first.get_by_role("button", name="Reserve").click()
        expect(page.locator(".messages")).to_contain_text(
            "Harbour Street #1 is reserved for you until"
        )
        # The page after the post starts at its outcome, read out, not at the top.
        expect(page.locator(".messages > .banner")).to_be_focused()
        sent = page.evaluate("() => JSON.parse(sessionStorage.getItem('sent'))")
        # Under way, and not to be sent twice; the length was sent all the same.
        assert sent == ["Reserving…", [True, True]], sent
        reservation = Reservation.objects.get()
        assert reservation.charger.charge_box_id == "CP-001"
        assert reservation.ends_at - reservation.starts_at == timedelta(minutes=15)
        # Held for Dana, the card still offers Start: the form's own action.
        card = page.locator("article.charger").first
        expect(card.locator(".charger-status")).to_contain_text("reserved")
        card.get_by_role("button", name="Start charging").click()
        expect(page.locator(".start-notice")).to_contain_text(
            "Starting to charge at Harbour Street #1…"
        )
        expect(page.locator(".start-notice")).to_be_focused()
    session = ApiSession.objects.get()
    assert (session.charge_box_id, session.connector_id) == ("CP-001", 1)


def test_a_live_update_keeps_the_keyboard_on_stop(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # Every sync re-renders the banner: a keyboard user about to press Stop must
    # not be sent back to the top of the page by the next reading.
    session = dana_charging(demo_driver, kwh="4.2")
    started_from_the_portal(session, demo_driver["driver"])  # type: ignore[arg-type]
    with dana_dashboard(browser) as page:
        stop = page.locator(".active-session").get_by_role("button", name="Stop")
        stop.focus()
        wait_for_live_stream(page)
        sync_saw(session, kwh="5.7")
        expect(page.locator(".active-session")).to_contain_text("5.70 kWh")
        expect(stop).to_be_focused()


def test_a_control_a_live_update_takes_away_leaves_the_focus_on_its_card(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # Dana's own Start at Harbour Street (from another tab): its card loses
    # Reserve, which had the keyboard; the card's heading takes it, not <body>.
    harbour = demo_driver["harbour"]
    with dana_dashboard(browser) as page:
        reserve = page.locator(f"#reserve-{harbour.pk}")
        reserve.focus()
        wait_for_live_stream(page)
        start = dana_starting(demo_driver)
        api_session_changed.send(sender=ApiSession, session=start)
        expect(reserve).to_have_count(0)
        expect(page.locator(f"#charger-{harbour.pk}")).to_be_focused()


def test_a_start_that_begins_charging_hands_the_focus_to_its_stop(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # The start notice had the focus; the charge's Stop takes it over, not the
    # Recent activity heading below, nor another charge's banner, and it keeps it
    # through the readings that follow.
    UserMappingFactory(user=demo_driver["driver"], steve_ocpp_id_tag="TAG-DANA-2")
    other = TransactionSyncStateFactory(
        charger=ChargerFactory(friendly_name="Quay", last_check_in_at=timezone.now()),
        ocpp_id_tag="TAG-DANA-2",
        started_at=timezone.now() - timedelta(minutes=30),
    )
    started_from_the_portal(other, demo_driver["driver"])  # type: ignore[arg-type]
    start = dana_starting(demo_driver)
    with dana_dashboard(browser) as page:
        # As the page gives it the focus right after the Start (focusOutcome).
        notice = page.locator(".start-notice")
        notice.evaluate("n => { n.tabIndex = -1; n.focus(); }")
        expect(notice).to_be_focused()
        wait_for_live_stream(page)
        session = dana_charging(demo_driver, kwh="0.2")
        start.status = ApiSession.Status.STARTED
        start.transaction = session
        start.save()
        api_session_changed.send(sender=ApiSession, session=start)
        stop = page.get_by_role("button", name="Stop charging at Harbour Street #1")
        expect(stop).to_be_focused()
        sync_saw(session, kwh="0.9")
        expect(page.locator(".active-session").first).to_contain_text("0.90 kWh")
        expect(stop).to_be_focused()


def test_a_request_that_swapped_nothing_moves_no_focus_later(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # A period chip whose request failed swapped nothing and settled nothing:
    # where its focus was must not be applied to the next live update's swap.
    session = dana_charging(demo_driver, kwh="4.2")
    with dana_dashboard(browser) as page:
        wait_for_live_stream(page)
        page.route("**/?period=year*", lambda route: route.fulfill(status=500))
        page.locator("#usage-card").get_by_role("link", name="This year").press("Enter")
        expect(page.locator(".request-error")).to_be_visible()
        page.evaluate("document.activeElement.blur()")
        sync_saw(session, kwh="5.7")
        expect(page.locator(".active-session")).to_contain_text("5.70 kWh")
        page.wait_for_timeout(500)
        assert page.evaluate("document.activeElement === document.body")


def test_the_page_says_when_its_live_updates_are_disconnected(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    session = dana_charging(demo_driver, kwh="4.2")
    with live_server() as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "dana@example.com", "driver")
        notice = page.locator(".live-state")
        expect(notice).to_be_hidden()
        # The stream cannot be reached (a proxy, the network, a restarting server).
        page.route("**/live/**", lambda route: route.abort())
        page.reload()
        expect(notice).to_be_visible()
        expect(notice.get_by_role("status")).to_have_text(
            "Live updates disconnected — reconnecting; until then your charge and "
            "usage shown here may be out of date."
        )
        # Back, the page catches up and the notice goes.
        page.unroute("**/live/**")
        expect(notice).to_be_hidden(timeout=20_000)
        sync_saw(session, kwh="5.7")
        expect(page.locator(".active-session")).to_contain_text("5.70 kWh")


def test_the_dashboards_live_updates_pause_and_resume(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # WCAG 2.2.2: the cards change every sync while a charge runs.
    session = dana_charging(demo_driver, kwh="1.0")
    with dana_dashboard(browser) as page:
        wait_for_live_stream(page)
        page.get_by_role("button", name="Pause live updates").click()
        notice = page.locator(".live-state")
        expect(notice.get_by_role("status")).to_have_text(
            "Live updates paused — your charge and usage shown here stay as they "
            "are until you resume."
        )
        # The portal's choice, not the console's (an agent moves between them).
        kept = page.evaluate("() => Object.keys(sessionStorage)")
        paused = [key for key in kept if key.startswith("polaris.liveUpdatesPaused")]
        assert paused == ["polaris.liveUpdatesPaused.portal"], kept
        watch_live_updates(page)
        sync_saw(session, kwh="2.5")
        held = live_updates_held(page)
        assert all(held), held
        expect(page.locator(".live-kwh")).to_have_text("1.00 kWh")
        page.get_by_role("button", name="Resume live updates").click()
        expect(page.locator(".live-kwh")).to_have_text("2.50 kWh")
        expect(notice).to_be_hidden()


def test_the_banner_says_when_the_figures_fall_behind_and_when_they_catch_up(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # SteVe has not answered for minutes: the kWh stop moving, and the page says
    # why rather than let the driver trust them.
    dana_charging(demo_driver, kwh="4.2")
    SyncRunFactory(started_at=timezone.now() - timedelta(minutes=5))
    SyncRunFactory(status=SyncRun.Status.FAILED, error="SteVe did not answer.")
    # Intervals of 2 s: a banner no run refreshes reads itself again after 6 s.
    with live_server(SYNC_INTERVAL_SECONDS="2") as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server.url, "dana@example.com", "driver")
        delay = page.locator(".sync-delay")
        expect(delay).to_contain_text(
            "Charging information is delayed. The charging network last answered at"
        )
        expect(page.locator(".active-session")).to_contain_text("4.20 kWh")
        wait_for_live_stream(page)
        # It answers again. The run changes nothing, so it sends nothing: the
        # banner's own re-read finds the delay over.
        SyncRunFactory()
        expect(delay).to_have_count(0, timeout=15_000)
        expect(page.locator(".active-session")).to_contain_text("4.20 kWh")
        expect(page.locator("#active-session-announcer")).to_have_text(
            "Charging at Harbour Street #1."
        )

        # Paused, that re-read waits too (WCAG 2.2.2), though by then no run has
        # succeeded for three intervals again.
        watch_live_updates(page)
        page.get_by_role("button", name="Pause live updates").click()
        assert live_updates_held(page) == [True]
        expect(delay).to_have_count(0)
        page.get_by_role("button", name="Resume live updates").click()
        expect(delay).to_contain_text("Charging information is delayed.")


def test_a_live_update_keeps_the_daily_table_open_and_focused(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # A charge in progress re-reads the usage card every sync: the day table a
    # keyboard user opened must stay open, with the focus on its summary.
    session = dana_charging(demo_driver, kwh="1.0")
    with dana_dashboard(browser) as page:
        summary = page.get_by_text("Daily usage as a table")
        summary.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#usage-days")).to_have_attribute("open", "")
        wait_for_live_stream(page)
        page.evaluate("document.getElementById('usage-card').dataset.before = 'yes'")
        sync_saw(session)
        expect(page.locator("#usage-card[data-before]")).to_have_count(0)
        expect(page.locator("#usage-days")).to_have_attribute("open", "")
        expect(page.locator("#usage-days-summary")).to_be_focused()


def test_a_failed_starts_notice_leaves_an_open_dashboard_on_time(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # Nothing is published when the notice's time is up: the banner re-reads
    # itself then, as the reservation slot does at its reservation's end.
    now = timezone.now()
    ApiSession.objects.create(
        user=demo_driver["driver"],
        charge_box_id="CB-H",
        connector_id=1,
        id_tag="TAG-DANA",
        status=ApiSession.Status.CANCELLED,
        remote_start_sent_at=now - timedelta(minutes=3),
        ended_at=now - FAILED_START_SHOWN_FOR + timedelta(seconds=8),
    )
    with dana_dashboard(browser) as page:
        notice = page.locator(".start-notice")
        expect(notice).to_contain_text("Charging at Harbour Street #1 did not start")
        expect(notice).to_have_count(0, timeout=20_000)


def test_a_cancelled_start_frees_its_charger_card_live_keeping_choices(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # The notice says to press Start charging again: the card must offer it
    # without a reload. A reservation length chosen on another card stays.
    harbour = demo_driver["harbour"]
    harbour.last_check_in_at = timezone.now()
    harbour.save(update_fields=["last_check_in_at"])
    quay = ChargerFactory(
        charge_box_id="CB-Q", friendly_name="Quay", last_check_in_at=timezone.now()
    )
    start = dana_starting(demo_driver)
    with dana_dashboard(browser) as page:
        harbour_card = page.locator("article.charger", has_text="Harbour Street")
        expect(harbour_card).to_contain_text("in_use")
        page.locator(f"#minutes-{quay.pk}").select_option("60")
        wait_for_live_stream(page)
        start.status = ApiSession.Status.CANCELLED
        start.ended_at = timezone.now()
        start.save()
        api_session_changed.send(sender=ApiSession, session=start)
        expect(page.locator(".start-notice")).to_contain_text("did not start")
        expect(
            harbour_card.get_by_role("button", name="Start charging")
        ).to_be_visible()
        expect(page.locator(f"#minutes-{quay.pk}")).to_have_value("60")


def test_two_charges_in_progress_get_two_banners_apart(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    UserMappingFactory(user=demo_driver["driver"], steve_ocpp_id_tag="TAG-DANA-2")
    for tag, name in (("TAG-DANA", "Quay A"), ("TAG-DANA-2", "Quay B")):
        session = TransactionSyncStateFactory(
            charger=ChargerFactory(friendly_name=name, last_check_in_at=timezone.now()),
            ocpp_id_tag=tag,
            started_at=timezone.now() - timedelta(minutes=10),
        )
        started_from_the_portal(session, demo_driver["driver"])  # type: ignore[arg-type]
    with live_server() as server:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(page, server.url, "dana@example.com", "driver")
        banners = page.locator(".active-session")
        expect(banners).to_have_count(2)
        first, second = (banners.nth(i).bounding_box() for i in range(2))
        # Each Stop says which charge it stops, to a screen reader too.
        for name in ("Quay A", "Quay B"):
            stop = page.get_by_role("button", name=f"Stop charging at {name}")
            expect(stop).to_have_count(1)
            expect(stop).to_have_text("Stop")
    assert first is not None and second is not None
    assert second["y"] >= first["y"] + first["height"] + 8, (first, second)


# The effective size of each of the chart's date labels: an SVG's text scales
# with the SVG, HTML text does not.
# The font sizes of the chart's axis names that show (a year's months).
CHART_MONTH_SIZES = """(card) => [...card.querySelectorAll(".usage-chart__axis span")]
    .filter((e) => /^[A-Z][a-z]{2}$/.test(e.textContent.trim())
        && getComputedStyle(e).visibility === "visible")
    .map((e) => parseFloat(getComputedStyle(e).fontSize))"""


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_the_period_chips_by_keyboard_and_the_chart_dates(
    demo_driver: dict[str, object], browser: Browser, width: int, height: int
) -> None:
    with live_server() as server:
        page = browser.new_page(viewport={"width": width, "height": height})
        sign_in(page, server.url, "dana@example.com", "driver")
        card = page.locator("#usage-card")
        chips = card.locator(".chip")
        year = card.get_by_role("link", name="This year")
        year.focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{server.url}/?period=year")
        expect(card.locator(".stat__label")).to_contain_text("This year")
        expect(page.locator("#usage-card")).to_have_count(1)  # the card alone came
        focused = page.evaluate(
            "() => { const e = document.activeElement; return [e.tagName,"
            " e.textContent.trim().slice(0, 30), e.getAttribute('aria-current')]; }"
        )
        assert focused == ["A", "This year", "true"], focused
        # The new card is not read out by itself: its period and total are said.
        expect(page.locator("#usage-announcer")).to_have_text(
            re.compile(r"^This year · Jan 1\u2013Dec 31, \d{4} [\d,.]+ kWh\.$")
        )
        background = "(e) => getComputedStyle(e).backgroundColor"
        chosen = year.evaluate(background)
        others = {chips.nth(i).evaluate(background) for i in range(2)}
        assert chosen not in others, (chosen, others)
        # A year's axis names its months, every other one on a phone.
        sizes = card.evaluate(CHART_MONTH_SIZES)
        assert len(sizes) == (12 if width > 480 else 6), sizes
        assert min(sizes) >= 11, sizes


def test_a_long_email_greeting_wraps_instead_of_widening_the_page(
    browser: Browser,
) -> None:
    email = "maximilian.alexander.longname-wolfeschlegel@example-company.com"
    UserFactory(username=email, first_name="")
    with live_server() as server:
        for width, height in ((390, 844), (1280, 800)):
            page = browser.new_page(viewport={"width": width, "height": height})
            sign_in(page, server.url, email, "driver")
            title = page.locator(".page-header__title")
            expect(title).to_have_text(f"Hi {email}")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, (width, scroll_width)
            # Where it wraps, it wraps as a reader would split an address.
            for line_end in title.evaluate(LINE_ENDS)[:-1]:
                assert line_end[-1] in " .-<", line_end
            page.close()


# The text of each line an element is laid out in; a line followed by one that
# begins with an @ ends in "<".
LINE_ENDS = """(element) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const chars = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      chars.push([node.data[i], range.getBoundingClientRect().top]);
    }
  }
  const lines = [""];
  chars.forEach(([char, top], i) => {
    if (i > 0 && top > chars[i - 1][1] + 1) {
      if (char === "@") { lines[lines.length - 1] += "<"; }
      lines.push("");
    }
    lines[lines.length - 1] += char;
  });
  return lines;
}"""


# The WCAG contrast ratio of each charger badge's text on its own background.
BADGE_LOOKS = """(badge) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const s = getComputedStyle(badge);
  const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x);
  const icon = badge.querySelector("svg");
  const dot = getComputedStyle(badge, "::before");
  const animated = [s, dot, icon && getComputedStyle(icon)].some(
    (st) => st && st.animationName !== "none");
  return {
    text: badge.textContent.trim(),
    contrast: (a + 0.05) / (b + 0.05),
    icon: icon ? icon.innerHTML.replace(/\\s+/g, " ").trim() : null,
    edge: s.borderTopStyle + " " + s.borderTopWidth,
    animated,
  };
}"""


def test_a_sites_connectors_have_names_of_their_own(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # A site's connectors share one friendly name: a screen reader moving by
    # article or by form field must still tell them apart.
    for connector_id in (1, 2):
        ChargerFactory(
            charge_box_id="CB-L",
            connector_id=connector_id,
            friendly_name="Library Lane",
            last_check_in_at=timezone.now(),
        )
    with live_server() as server:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(page, server.url, "dana@example.com", "driver")
        for connector_id in (1, 2):
            name = f"Library Lane #{connector_id}"
            article = page.get_by_role("article", name=name, exact=True)
            expect(article).to_have_count(1)
            expect(
                article.get_by_role("combobox", name=f"Reserve {name} for", exact=True)
            ).to_have_count(1)


def test_the_four_charger_statuses_differ_by_more_than_colour(
    browser: Browser,
) -> None:
    now = timezone.now()
    driver = UserFactory(username="dana@example.com", first_name="Dana")
    UserMappingFactory(user=driver, steve_ocpp_id_tag="TAG-DANA")
    ChargerFactory(charge_box_id="CB-O", friendly_name="A Online", last_check_in_at=now)
    busy = ChargerFactory(
        charge_box_id="CB-U", friendly_name="B In use", last_check_in_at=now
    )
    TransactionSyncStateFactory(
        charger=busy, ocpp_id_tag="TAG-OTHER", started_at=now - timedelta(minutes=5)
    )
    held = ChargerFactory(
        charge_box_id="CB-R", friendly_name="C Reserved", last_check_in_at=now
    )
    Reservation.objects.create(
        user=UserFactory(),
        charger=held,
        id_tag="TAG-OTHER",
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(minutes=25),
    )
    ChargerFactory(
        charge_box_id="CB-X",
        friendly_name="D Offline",
        last_check_in_at=now - timedelta(hours=3),
    )
    with live_server() as server:
        # Motion is on: the statuses must differ without it anyway.
        page = browser.new_page(
            viewport={"width": 390, "height": 844}, reduced_motion="no-preference"
        )
        sign_in(page, server.url, "dana@example.com", "driver")
        badges = page.locator("article.charger .badge")
        expect(badges).to_have_count(4)
        looks = [badges.nth(i).evaluate(BADGE_LOOKS) for i in range(4)]
    assert [look["text"] for look in looks] == [
        "online",
        "in_use",
        "reserved",
        "offline",
    ]
    for look in looks:
        assert look["contrast"] >= 4.5, look
        assert not look["animated"], look
    # Without colour: each status has an icon of its own, and the busy and the
    # offline chargers an edge of their own too.
    icons = [look["icon"] for look in looks]
    assert None not in icons and len(set(icons)) == 4, icons
    edges = [look["edge"] for look in looks]
    assert len({edges[0], edges[1], edges[3]}) == 3, edges


# Whether an element shows the status dot (the ::before of .badge).
HAS_DOT = "(e) => getComputedStyle(e, '::before').display !== 'none'"

# Each charger card's box, its footer's, and the bottom of the footer's last
# control or note.
CARD_BOXES = """(cards) => cards.map((card) => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom}; };
  const footer = card.querySelector(".card__footer");
  const header = card.querySelector(".card__header");
  const items = footer ? [...footer.querySelectorAll("button, select, p")] : [];
  return {
    name: card.querySelector("h3").textContent,
    card: box(card), header: box(header),
    footer: footer && box(footer),
    content: items.length ? Math.max(...items.map((e) => box(e).bottom)) : null,
  };
})"""


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_the_dashboard_cards_read_evenly(
    browser: Browser, width: int, height: int
) -> None:
    now = timezone.now()
    driver = UserFactory(username="dana@example.com", first_name="Dana")
    UserMappingFactory(user=driver, steve_ocpp_id_tag="TAG-DANA")
    SubscriptionFactory(user=driver)  # Home 200: 200 kWh included
    harbour = ChargerFactory(
        charge_box_id="CB-A", friendly_name="A Harbour", last_check_in_at=now
    )
    ChargerFactory(charge_box_id="CB-B", friendly_name="B Market", last_check_in_at=now)
    ChargerFactory(
        charge_box_id="CB-C",
        friendly_name="C Old Mill",
        last_check_in_at=now - timedelta(hours=3),
    )
    session_with_energy(
        kwh=Decimal("258.8"),
        charger=harbour,
        ocpp_id_tag="TAG-DANA",
        started_at=now - timedelta(hours=2),
        stopped_at=now - timedelta(hours=1),
        reading_at=now - timedelta(hours=1, minutes=5),
        is_finalized=True,
    )
    with live_server() as server:
        page = browser.new_page(viewport={"width": width, "height": height})
        sign_in(page, server.url, "dana@example.com", "driver")

        # A dot means a status: the currency and the counts pill have none.
        plan = page.locator("#plan-card")
        expect(plan.locator(".badge")).to_have_text("EUR")
        assert not plan.locator(".badge").evaluate(HAS_DOT)
        pill = page.locator(".counts-pill")
        expect(pill).to_have_text("2 of 3 available now")
        assert not pill.evaluate(HAS_DOT)
        finalized = page.locator("#recent-activity .badge").first
        expect(finalized).to_have_text("Finalized")
        assert finalized.evaluate(HAS_DOT)

        # Over the included amount: the card says by how much, the bar stops full.
        expect(plan.locator(".plan-use")).to_have_text(
            "258.8 kWh used this billing period: 58.8 kWh over the 200 kWh included."
        )
        track = plan.locator(".plan-bar").bounding_box()
        fill = plan.locator(".plan-bar__fill").bounding_box()
        assert track is not None and fill is not None
        assert fill["x"] >= track["x"] - 0.5, (fill, track)
        assert fill["x"] + fill["width"] <= track["x"] + track["width"] + 0.5
        assert fill["width"] >= track["width"] - 0.5, (fill, track)

        # Charger cards: every footer runs from the header to the card's bottom,
        # and in a row the actions and notes end on one line.
        cards = page.locator("article.charger")
        expect(cards).to_have_count(3)
        boxes = cards.evaluate_all(CARD_BOXES)
        rows: dict[int, list[dict[str, object]]] = {}
        for box in boxes:
            footer = box["footer"]
            assert footer is not None, box
            assert abs(footer["top"] - box["header"]["bottom"]) <= 1.5, box
            assert abs(box["card"]["bottom"] - footer["bottom"]) <= 1.5, box
            rows.setdefault(round(box["card"]["top"]), []).append(box)
        if width == 1280:
            assert len(rows) == 1, rows  # one row of three
        for row in rows.values():
            ends = {round(box["content"]) for box in row}  # type: ignore[arg-type]
            assert max(ends) - min(ends) <= 1, row
        expect(cards.filter(has_text="C Old Mill")).to_contain_text(
            "Not checked in for over an hour."
        )
        page.screenshot(
            path=str(SHOTS / f"test-dashboard-even-{width}.png"), full_page=True
        )


def test_a_plan_given_or_ended_follows_the_usage_card(
    demo_driver: dict[str, object], browser: Browser
) -> None:
    # The plan card comes out of band with every re-read of the usage card, so
    # the two agree on the period's energy: it needs its slot on a page that
    # was loaded without a plan.
    errors: list[str] = []
    with dana_dashboard(browser) as page:
        page.on(
            "console",
            lambda message: (
                errors.append(message.text) if message.type == "error" else None
            ),
        )
        expect(page.locator("#plan-card")).to_be_hidden()
        subscription = SubscriptionFactory(user=demo_driver["driver"])
        page.locator("#usage-card").get_by_role("link", name="Previous period").click()
        expect(page.locator("#plan-card")).to_contain_text("Home 200")
        subscription.delete()
        page.locator("#usage-card").get_by_role("link", name="Current period").click()
        expect(page.locator("#plan-card")).to_be_hidden()
        expect(page.locator("#plan-card")).to_have_count(1)
    assert errors == [], errors
