"""The admin console in a real Chromium against uvicorn (SSE needs ASGI)."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.sessions.models import Session
from django.test import TransactionTestCase
from django.utils import timezone
from playwright.sync_api import Browser, Locator, Page, Request, expect

from polaris.browser import (
    live_updates_held,
    serve_and_browse,
    sign_in,
    wait_for_live_stream,
    watch_live_updates,
)
from sessions_app.live import publish_run_finished, publish_sessions_changed
from sessions_app.models import ApiToken
from sessions_app.selectors import session_stats
from sessions_app.templatetags.console import clock_time
from sync import services
from sync.client import SteveClient
from sync.models import SyncRun, TransactionSyncState
from sync.standin.testing import StandinProcess
from sync.tests.factories import (
    ResyncRunFactory,
    StaffFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)

pytestmark = pytest.mark.browser

# The table's own requests (a re-read, the filters, load more), not the page's.
TABLE_RE_READ = re.compile(r".*/admin/sessions/\?.*")


class ConsolePages:
    """`open_console`, for test cases that set `browser` and `base_url`."""

    browser: Browser
    base_url: str

    def open_console(self, path: str = "/admin/sessions/") -> Page:
        staff = StaffFactory(username="operator")
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, self.base_url, staff.username, "driver")
        page.goto(f"{self.base_url}{path}")
        return page


class ConsoleBrowserTests(ConsolePages, TransactionTestCase):
    @pytest.fixture(autouse=True)
    def _browser(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Playwright's sync API runs an event loop in this thread; the ORM calls
        # here are still plain synchronous code.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        server, self.browser = serve_and_browse(self)
        self.base_url = server.url

    def stat(self, page: Page, label: str) -> Locator:
        card = page.locator("#stat-strip .stat").filter(
            has=page.locator(".stat__label", has_text=label)
        )
        return card.locator(".stat__value")

    def visible_rows(self, page: Page) -> int:
        return page.locator("#session-tbody tr").count()

    def test_sign_in_stat_strip_filters_chips_load_more_and_detail(self) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1B2C3")
        now = datetime.now(UTC)
        for minutes in range(35):
            TransactionSyncStateFactory(
                updated_at=now - timedelta(minutes=minutes), is_finalized=True
            )
        tagged = session_with_energy(
            kwh=Decimal("7.5"), ocpp_id_tag="04A1B2C3", is_finalized=False
        )
        SyncRunFactory()
        stats = session_stats(now=now)

        page = self.open_console()
        expect(page.get_by_role("heading", name="Charging Sessions")).to_be_visible()
        expect(self.stat(page, "Sessions today")).to_have_text(
            str(stats.sessions_today)
        )
        expect(self.stat(page, "kWh delivered (7d)")).to_have_text("7.5 kWh")
        expect(self.stat(page, "Active now")).to_have_text("1")
        expect(self.stat(page, "Avg kWh / session (7d)")).to_have_text("7.50 kWh")
        expect(page.locator("#session-count")).to_have_text(
            "36 sessions match current filters"
        )
        self.assertEqual(self.visible_rows(page), 15)

        # Load more from the keyboard: 30 rows, no page reload, focus stays on
        # the control so the next Enter loads the rest.
        page.focus("#load-more-control")
        page.keyboard.press("Enter")
        expect(page.locator("#session-tbody tr")).to_have_count(30)
        expect(page.locator("#load-more-control")).to_be_focused()
        # Where the keyboard is, the reader sees: the control came back a page
        # further down.
        expect(page.locator("#load-more-control")).to_be_in_viewport()
        expect(page.locator("#rows-status")).to_have_text("30 sessions shown.")
        expect(page.locator("#session-count")).to_have_text(
            "36 sessions match current filters"
        )
        # The last page replaces the control with a line that takes the focus.
        page.keyboard.press("Enter")
        expect(page.locator("#session-tbody tr")).to_have_count(36)
        expect(page.locator("#load-more-control")).to_have_text(
            "All matching sessions are shown."
        )
        expect(page.locator("#load-more-control")).to_be_focused()
        expect(page.locator("#load-more-control")).to_be_in_viewport()

        # Status filter, its chip, and removing the chip.
        page.select_option("#id_status", "active")
        expect(page.locator("#filter-status")).to_be_empty()
        page.get_by_role("button", name="Apply filters").click()
        expect(page.locator("#session-count")).to_have_text(
            "1 session matches current filters"
        )
        # The focus stays on the form; the status region says what changed.
        expect(page.locator("#filter-status")).to_have_text(
            "1 session matches current filters"
        )
        expect(page.locator("#filter-status")).to_have_attribute("role", "status")
        # Applied again, the same count is said again: whoever pressed Apply
        # hears that it was done.
        said = page.locator("#filter-status").evaluate_handle("(el) => el.firstChild")
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_function("(old) => !old.isConnected", arg=said)
        expect(page.locator("#filter-status")).to_have_text(
            "1 session matches current filters"
        )
        expect(page.locator(".chip")).to_contain_text("Status: Active")
        expect(page.locator("#session-export")).to_have_attribute(
            "href", re.compile(r"export\.csv\?status=active$")
        )
        page.get_by_role("link", name="Remove filter Status active").click()
        expect(page.locator("#session-count")).to_have_text(
            "36 sessions match current filters"
        )
        # The form and the export link follow the removed chip; Back restores
        # the filtered view with its form.
        expect(page.locator("#id_status")).to_have_value("all")
        expect(page.locator("#session-export")).to_have_attribute(
            "href", re.compile(r"export\.csv$")
        )
        self.assertEqual(page.url, f"{self.base_url}/admin/sessions/")
        page.go_back()
        expect(page.locator("#session-count")).to_have_text(
            "1 session matches current filters"
        )
        expect(page.locator("#id_status")).to_have_value("active")
        page.get_by_role("link", name="Clear all").click()
        expect(page.locator("#id_status")).to_have_value("all")

        # Tag filter: a case-insensitive substring of the mapped tag.
        page.fill("#id_tag", "a1b2")
        page.get_by_role("button", name="Apply filters").click()
        expect(page.locator("#session-count")).to_have_text(
            "1 session matches current filters"
        )
        expect(page.locator("#session-tbody")).to_contain_text("04A1B2C3")

        # Fallbacks: an unknown status and an invalid date, with visible notes.
        page.goto(f"{self.base_url}/admin/sessions/?status=bogus&from=2026-02-30")
        expect(page.locator("#session-count")).to_have_text(
            "36 sessions match current filters"
        )
        expect(page.get_by_role("note").first).to_contain_text("showing all")
        expect(page.get_by_text("From date “2026-02-30” is not a date")).to_be_visible()

        # Date filter on updatedAt: nothing was updated last year.
        page.goto(f"{self.base_url}/admin/sessions/?to=2025-01-01")
        expect(page.locator("#session-count")).to_have_text(
            "0 sessions match current filters"
        )

        # The detail page of a row.
        page.goto(f"{self.base_url}/admin/sessions/")
        page.get_by_role("link", name=f"#{tagged.steve_transaction_id}").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(
            f"Transaction #{tagged.steve_transaction_id}"
        )
        expect(page.locator(".kv")).to_contain_text("7.500 kWh")

    def test_back_from_a_session_opened_after_load_more_keeps_the_rows(
        self,
    ) -> None:
        now = datetime.now(UTC)
        sessions = [
            TransactionSyncStateFactory(updated_at=now - timedelta(minutes=minutes))
            for minutes in range(50)
        ]
        SyncRunFactory()
        page = self.open_console()
        for rows in (30, 45):
            page.get_by_role("link", name="Load more").click()
            expect(page.locator("#session-tbody tr")).to_have_count(rows)
        self.assertEqual(page.url, f"{self.base_url}/admin/sessions/?rows=45")
        page.get_by_role(
            "link", name=f"#{sessions[40].steve_transaction_id}", exact=True
        ).click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(
            f"Transaction #{sessions[40].steve_transaction_id}"
        )
        page.go_back()
        expect(page.locator("#session-tbody tr")).to_have_count(45)
        expect(page.locator(f"#session-{sessions[40].pk}")).to_be_visible()
        expect(page.locator("#rows-status")).to_have_text("45 sessions shown.")

    def test_the_banner_ticks_and_rows_update_when_a_sync_run_changes_a_session(
        self,
    ) -> None:
        with StandinProcess(fleet_size=4, seed=3) as standin:
            client = standin.client(timeout=5)
            services.sync_run_transactions(trigger="command", client=client)
            session = (
                TransactionSyncState.objects.active()
                .filter(is_suspected_stuck=False)
                .order_by("-started_at")
                .first()
            )
            assert session is not None
            page = self.open_console()
            row = page.locator(f"#session-{session.pk}")
            expect(row).to_contain_text(f"{session.kwh_delivered:.3f}")
            # The stream is open once htmx reports it; then the station reports.
            wait_for_live_stream(page)
            soon = datetime.now(UTC) + timedelta(seconds=1)
            standin.add_meter_values(
                session.steve_transaction_id,
                [{"value": str(session.meter_last_wh + 2500),
                  "valueTimestamp": soon.isoformat().replace("+00:00", "Z")}],
            )  # fmt: skip
            run = services.sync_run_transactions(trigger="command", client=client)
            self.assertEqual(run.updated_count, 1)
            expect(page.locator("#live-banner")).to_contain_text(
                f"1 session updated at {clock_time(run.finished_at)}"
            )
            # The table re-reads itself: the changed session moves to the top
            # with its new energy.
            first_row = page.locator("#session-tbody tr").first
            expect(first_row).to_have_id(re.compile(rf"session-{session.pk}"))
            expect(first_row).to_contain_text(
                f"{session.kwh_delivered + Decimal('2.5'):.3f}"
            )

            # The detail page follows the sync the same way.
            page.get_by_role(
                "link", name=f"#{session.steve_transaction_id}", exact=True
            ).click()
            expect(page.locator(".kv")).to_contain_text(
                f"{session.kwh_delivered + Decimal('2.5'):.3f} kWh"
            )
            wait_for_live_stream(page)
            later = soon + timedelta(seconds=30)
            standin.add_meter_values(
                session.steve_transaction_id,
                [{"value": str(session.meter_last_wh + 4000),
                  "valueTimestamp": later.isoformat().replace("+00:00", "Z")}],
            )  # fmt: skip
            services.sync_run_transactions(trigger="command", client=client)
            expect(page.locator(".kv")).to_contain_text(
                f"{session.kwh_delivered + Decimal('4'):.3f} kWh"
            )
            client.close()

    def test_an_open_page_marks_active_rows_stale_while_the_sync_fails(
        self,
    ) -> None:
        # A failing run changes no session, so only its sync-failing event can
        # tell the open table that its active rows are getting old.
        with StandinProcess(fleet_size=4, seed=3) as standin:
            client = standin.client(timeout=5)
            services.sync_run_transactions(trigger="command", client=client)
            active = TransactionSyncState.objects.active().filter(
                is_suspected_stuck=False
            )
            session = active.order_by("-updated_at").first()
            assert session is not None
            page = self.open_console()
            row = page.locator(f"#session-{session.pk}")
            expect(row).to_be_visible()
            expect(row.get_by_text("Stale", exact=True)).to_have_count(0)
            wait_for_live_stream(page)
            # A minute on, SteVe fails (three sync intervals are 30 s here).
            a_minute_ago = timezone.now() - timedelta(minutes=1)
            SyncRun.objects.update(finished_at=a_minute_ago)
            active.update(last_synced_at=a_minute_ago)
            standin.set_fault("error", status=503, count=-1)
            failed = services.sync_run_transactions(trigger="command", client=client)
            self.assertEqual(failed.status, SyncRun.Status.FAILED)
            expect(page.locator("#live-banner")).to_contain_text("Sync failing")
            expect(row.get_by_text("Stale", exact=True)).to_be_visible()
            # Back: the first run to succeed tells the table so.
            standin.clear_faults()
            services.sync_run_transactions(trigger="command", client=client)
            expect(row.get_by_text("Stale", exact=True)).to_have_count(0)
            expect(page.locator("#live-banner")).not_to_contain_text("Sync failing")
            client.close()

    def test_the_keyboard_focus_survives_live_updates_and_removed_chips(
        self,
    ) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1B2C3")
        session = session_with_energy(
            kwh=Decimal("2"), ocpp_id_tag="04A1B2C3", is_finalized=True
        )
        SyncRunFactory()
        page = self.open_console("/admin/sessions/?status=completed&tag=a1b2")
        # Every sync that changes a session re-reads the table; the control
        # someone is on keeps the focus.
        for name in ("Remove filter Status completed", "Clear all"):
            with self.subTest(control=name):
                control = page.get_by_role("link", name=name)
                control.focus()
                self.live_update(page, "#session-results")
                expect(control).to_be_focused()
        # Removing a chip takes its control away: the focus goes to the count,
        # which says what the remaining filters match.
        page.get_by_role("link", name="Remove filter Tag a1b2").press("Enter")
        expect(page.locator(".chip")).to_have_count(1)
        expect(page.locator("#session-count")).to_be_focused()
        page.get_by_role("link", name="Clear all").press("Enter")
        expect(page.locator(".chip")).to_have_count(0)
        expect(page.locator("#session-count")).to_be_focused()

        page.goto(f"{self.base_url}/admin/sessions/{session.steve_transaction_id}/")
        back = page.get_by_role("link", name="Charging Sessions").last
        back.focus()
        self.live_update(page, "#session-detail")
        expect(back).to_be_focused()

    def test_filter_notes_stay_through_live_updates_and_follow_new_filters(
        self,
    ) -> None:
        TransactionSyncStateFactory()
        SyncRunFactory()
        page = self.open_console("/admin/sessions/?status=bogus&from=notadate")
        notes = page.get_by_role("note")
        expect(notes).to_have_count(2)
        # The table re-reads itself with the filters as applied, which no longer
        # hold the values the notes are about: the notes stay all the same.
        self.live_update(page, "#session-results")
        expect(notes).to_have_count(2)
        expect(notes.first).to_contain_text("Status “bogus”")
        # New filters say what they fell back from, or nothing.
        page.fill("#id_from", "2026-03-02")
        page.fill("#id_to", "2026-03-01")
        page.get_by_role("button", name="Apply filters").click()
        expect(notes).to_have_count(1)
        expect(notes.first).to_contain_text("To is before From")
        page.fill("#id_from", "")
        page.fill("#id_to", "")
        page.get_by_role("button", name="Apply filters").click()
        expect(notes).to_have_count(0)

    def test_the_keyboard_focus_survives_live_updates_of_sync_runs_and_resyncs(
        self,
    ) -> None:
        session = TransactionSyncStateFactory()
        ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
        )
        page = self.open_console("/admin/sync-runs/")
        link = page.get_by_role("link", name=f"#{session.steve_transaction_id}")
        link.focus()
        wait_for_live_stream(page)
        # Every finished run replaces the table with the newest runs.
        self.runs_table_shows(page, SyncRunFactory())
        expect(link).to_be_focused()

        # The detail page's resync notice is replaced by each re-read too.
        link.press("Enter")
        notice_link = page.locator("#resync-status").get_by_role(
            "link", name="Sync runs"
        )
        notice_link.focus()
        self.live_update(page, "#session-detail")
        expect(notice_link).to_be_focused()

    def test_resync_now_says_queued_until_its_run_then_its_outcome_in_focus(
        self,
    ) -> None:
        session = TransactionSyncStateFactory()
        # An earlier resync's failure, seconds ago.
        ResyncRunFactory(
            status=SyncRun.Status.FAILED,
            error="SteVe cannot be reached.",
            steve_transaction_id=session.steve_transaction_id,
            started_at=timezone.now() - timedelta(seconds=10),
        )
        page = self.open_console(f"/admin/sessions/{session.steve_transaction_id}/")
        page.get_by_role("button", name="Resync now").press("Enter")
        notice = page.locator("#resync-status .banner")
        expect(notice).to_contain_text("queued at")
        expect(notice).to_be_focused()
        wait_for_live_stream(page)
        # Re-read before a worker starts the run: still queued, still in focus.
        self.live_update(page, "#session-detail")
        expect(notice).to_contain_text("queued at")
        expect(notice).not_to_contain_text("cannot be reached")
        expect(notice).to_be_focused()
        # Its run: its outcome takes the notice's place, and the focus.
        ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
        )
        self.live_update(page, "#session-detail")
        expect(notice).to_contain_text("Resynced from SteVe at")
        expect(notice).to_be_focused()

    def test_a_detail_page_re_reads_itself_for_its_own_session_only(self) -> None:
        shown = TransactionSyncStateFactory(is_finalized=False)
        other = TransactionSyncStateFactory()
        url = f"/admin/sessions/{shown.steve_transaction_id}/"
        page = self.open_console(url)
        re_reads: list[str] = []
        page.on(
            "request",
            lambda request: (
                re_reads.append(request.url)
                if request.url.endswith(url) and request.headers.get("hx-request")
                else None
            ),
        )
        page.evaluate(
            """() => {
                window.seen = 0;
                document.addEventListener("htmx:sseMessage", (event) => {
                    if (event.detail.type === "sessions-updated") seen++;
                });
            }"""
        )
        wait_for_live_stream(page)
        run = SyncRunFactory(updated_count=1)
        for _ in range(50):
            publish_sessions_changed(
                sender=SyncRun, run=run, transaction_ids=[other.pk]
            )
            page.wait_for_timeout(200)
            if page.evaluate("window.seen"):
                break
        self.assertGreater(page.evaluate("window.seen"), 0)
        self.assertEqual(re_reads, [])
        header = page.locator("#session-header")
        expect(header.locator(".badge")).to_have_text("Active")
        TransactionSyncState.objects.filter(pk=shown.pk).update(
            kwh_delivered=Decimal("7.125"), is_finalized=True
        )
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[shown.pk])
        expect(page.locator("#session-detail")).to_contain_text("7.125 kWh")
        # The header above the live banner is re-read with it, and the banner
        # goes, as a completed session's page has none.
        expect(header.locator(".badge")).to_have_text("Completed")
        expect(page.locator("[data-live-updates]")).to_have_count(0)
        self.assertEqual(len(re_reads), 1)
        # A later re-read finds the emptied slot where it puts it again.
        errors: list[str] = []
        page.on(
            "console",
            lambda message: (
                errors.append(message.text) if message.type == "error" else None
            ),
        )
        TransactionSyncState.objects.filter(pk=shown.pk).update(
            kwh_delivered=Decimal("7.5")
        )
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[shown.pk])
        expect(page.locator("#session-detail")).to_contain_text("7.500 kWh")
        self.assertEqual(errors, [])

    def test_a_charging_sessions_detail_and_sync_runs_can_be_paused(self) -> None:
        shown = TransactionSyncStateFactory(is_finalized=False)
        page = self.open_console(f"/admin/sessions/{shown.steve_transaction_id}/")
        pause = page.get_by_role("button", name="Pause live updates")
        pause.click()
        expect(page.locator("#live-state")).to_contain_text("Live updates paused")
        wait_for_live_stream(page)
        TransactionSyncState.objects.filter(pk=shown.pk).update(
            kwh_delivered=Decimal("7.125")
        )
        run = SyncRunFactory(updated_count=1)
        watch_live_updates(page)
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[shown.pk])
        held = live_updates_held(page)
        assert all(held), held
        expect(page.locator("#session-detail")).not_to_contain_text("7.125 kWh")
        # Resuming reads what was missed.
        page.get_by_role("button", name="Resume live updates").click()
        expect(page.locator("#session-detail")).to_contain_text("7.125 kWh")
        expect(page.locator("#live-state")).to_contain_text("Live — new readings")
        # Completed while paused: resuming re-reads the header's badge too, and
        # the live banner goes, as a completed session's page has none.
        page.get_by_role("button", name="Pause live updates").click()
        TransactionSyncState.objects.filter(pk=shown.pk).update(is_finalized=True)
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[shown.pk])
        page.get_by_role("button", name="Resume live updates").click()
        expect(page.locator("#session-header .badge")).to_have_text("Completed")
        expect(page.locator("[data-live-updates]")).to_have_count(0)
        # The Sync runs page has the same banner.
        page.goto(f"{self.base_url}/admin/sync-runs/")
        expect(page.get_by_role("button", name="Pause live updates")).to_be_visible()

    def test_an_import_under_way_says_so_and_cannot_be_sent_twice(self) -> None:
        page = self.open_console("/admin/user-mappings/")
        # What the button says once the form is sent, kept for after the
        # navigation (window listeners run after the page's own on document).
        page.evaluate(
            """() => window.addEventListener("submit", () => {
                const button = document.querySelector("[data-busy-label]");
                sessionStorage.setItem(
                    "sent", JSON.stringify([button.textContent, button.disabled]));
            })"""
        )
        page.set_input_files(
            "#id_file",
            files=[{"name": "cards.csv", "mimeType": "text/csv",
                    "buffer": b"steveOcppIdTag,email,label\nTAG-7,a@example.com,\n"}],
        )  # fmt: skip
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.locator(".messages")).to_contain_text("Import done: 1 created")
        sent = page.evaluate("() => JSON.parse(sessionStorage.getItem('sent'))")
        assert sent == ["Importing…", True], sent
        expect(page.get_by_role("button", name="Import", exact=True)).to_be_enabled()

    def test_sync_run_queued_goes_when_the_runs_table_shows_the_run(self) -> None:
        SyncRunFactory()
        page = self.open_console("/admin/sync-runs/")
        wait_for_live_stream(page)
        page.get_by_role("button", name="Run sync now").click()
        queued = page.locator(".messages").get_by_text("Sync run queued")
        expect(queued).to_be_visible()
        wait_for_live_stream(page)
        # The table's event replaces the table element itself (outerHTML).
        self.runs_table_shows(page, SyncRunFactory())
        expect(queued).to_have_count(0)

    def test_the_live_banner_stays_one_live_region_that_screen_readers_hear(
        self,
    ) -> None:
        TransactionSyncStateFactory()
        SyncRunFactory()
        page = self.open_console()
        page.evaluate("window.banner = document.getElementById('live-banner')")
        run = SyncRunFactory(created_count=2, updated_count=1)
        # The stream subscribes a moment after the browser sees it open: publish
        # until an event arrives.
        updated = f"3 sessions updated at {clock_time(run.finished_at)}"
        for _ in range(50):
            publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
            page.wait_for_timeout(200)
            if updated in page.locator("#live-banner").inner_text():
                break
        banner = page.get_by_role("status").filter(has_text="sessions updated")
        expect(banner).to_have_text(updated)
        # Screen readers announce changes inside a live region that was already
        # there; a region swapped in whole is new to them, and stays silent.
        self.assertTrue(
            page.evaluate("document.getElementById('live-banner') === window.banner")
        )
        expect(page.locator("#live-banner .banner__title")).to_have_count(1)

        # Heard when what it says changes kind, not at every sync's new count.
        region = page.locator("#live-banner")
        expect(region).to_have_attribute("data-said", "updated")
        later = SyncRunFactory(updated_count=4)
        publish_sessions_changed(sender=SyncRun, run=later, transaction_ids=[])
        expect(region).to_contain_text(
            f"4 sessions updated at {clock_time(later.finished_at)}"
        )
        expect(region).to_have_attribute("aria-live", "off")
        failed = SyncRunFactory(
            status=SyncRun.Status.FAILED, error="SteVe cannot be reached."
        )
        publish_run_finished(sender=SyncRun, run=failed)
        expect(region).to_contain_text("Sync failing")
        expect(region).to_have_attribute("aria-live", "polite")
        back = SyncRunFactory(updated_count=1)
        publish_sessions_changed(sender=SyncRun, run=back, transaction_ids=[])
        expect(region).not_to_contain_text("Sync failing")
        expect(region).to_have_attribute("aria-live", "polite")
        # Paused, it says so, whatever it said before.
        publish_sessions_changed(sender=SyncRun, run=back, transaction_ids=[])
        expect(region).to_have_attribute("aria-live", "off")
        page.get_by_role("button", name="Pause live updates").click()
        expect(region).to_contain_text("Live updates paused")
        expect(region).to_have_attribute("aria-live", "polite")

    def test_live_updates_pause_and_resume_from_the_keyboard(self) -> None:
        TransactionSyncStateFactory()
        SyncRunFactory()
        page = self.open_console()
        page.evaluate(PAUSE_PROBES)
        wait_for_live_stream(page)
        page.get_by_role("button", name="Pause live updates").press("Enter")
        resume = page.get_by_role("button", name="Resume live updates")
        expect(resume).to_be_focused()
        # Said once, in the live region the page has had from the start.
        banner = page.get_by_role("status").filter(has_text="Live updates paused")
        expect(banner).to_have_attribute("aria-live", "polite")
        expect(banner).to_have_text(
            "Live updates paused — the table and totals stay as they are until "
            "you resume."
        )

        # A sync while paused reaches the page and changes nothing on it.
        TransactionSyncStateFactory()
        run = SyncRunFactory(created_count=1)
        for _ in range(50):
            publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
            page.wait_for_timeout(200)
            if page.evaluate("window.liveEvents"):
                break
        self.assertTrue(page.evaluate("window.liveEvents"))
        # The table's re-read was asked for and refused, each time.
        refused = page.evaluate("window.liveRereads")
        self.assertTrue(refused)
        self.assertTrue(all(refused), refused)
        expect(banner).to_contain_text("Live updates paused")
        expect(self.stat(page, "Active now")).to_have_text("1")
        expect(page.locator("#session-count")).to_have_text(
            "1 session matches current filters"
        )

        # The pause lasts as long as the tab.
        page.reload()
        resume = page.get_by_role("button", name="Resume live updates")
        expect(resume).to_be_visible()
        expect(page.locator("#live-banner")).to_contain_text("Live updates paused")
        page.evaluate("window.banner = document.getElementById('live-banner')")

        # Resuming catches up at once and keeps the focus and the live region.
        resume.press("Enter")
        expect(page.get_by_role("button", name="Pause live updates")).to_be_focused()
        expect(page.locator("#live-banner")).to_have_text(
            f"1 session updated at {clock_time(run.finished_at)}"
        )
        expect(self.stat(page, "Active now")).to_have_text("2")
        expect(page.locator("#session-count")).to_have_text(
            "2 sessions match current filters"
        )
        self.assertTrue(
            page.evaluate("document.getElementById('live-banner') === window.banner")
        )

    def test_the_banner_says_when_live_updates_are_disconnected(self) -> None:
        TransactionSyncStateFactory()
        SyncRunFactory()
        staff = StaffFactory(username="operator")
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, self.base_url, staff.username, "driver")
        # The stream cannot be reached (a proxy, the network, a restarting server).
        page.route("**/admin/live/**", lambda route: route.abort())
        page.goto(f"{self.base_url}/admin/sessions/")
        banner = page.locator("[data-live-updates]")
        expect(banner).to_have_attribute("data-live-state", "disconnected")
        expect(page.get_by_role("status").filter(has_text="disconnected")).to_have_text(
            "Live updates disconnected — reconnecting; until then the table and "
            "totals may be out of date."
        )
        # Paused, it says paused; resumed while still cut off, disconnected again.
        pause = page.get_by_role("button", name="Pause live updates")
        pause.click()
        expect(page.locator("#live-banner")).to_contain_text("Live updates paused")
        page.get_by_role("button", name="Resume live updates").click()
        expect(page.locator("#live-banner")).to_contain_text("disconnected")

        # Once the stream is back, the page catches up and the banner is live.
        page.unroute("**/admin/live/**")
        expect(banner).not_to_have_attribute(
            "data-live-state", re.compile(".*"), timeout=20_000
        )
        expect(page.locator("#live-banner")).to_have_text(
            "Live updates on — new sync results appear here."
        )

    def test_a_failed_catch_up_clears_with_the_streams_next_event(self) -> None:
        # The stream never broke, but the re-read on Resume failed: the banner
        # says the page may be out of date until a later re-read succeeds.
        TransactionSyncStateFactory()
        run = SyncRunFactory()
        page = self.open_console()
        wait_for_live_stream(page)
        page.get_by_role("button", name="Pause live updates").click()
        page.route("**/admin/sessions/", lambda route: route.abort())
        page.get_by_role("button", name="Resume live updates").click()
        banner = page.locator("[data-live-updates]")
        expect(banner).to_have_attribute("data-live-state", "stale")
        page.unroute("**/admin/sessions/")
        for _ in range(50):
            publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
            page.wait_for_timeout(200)
            if banner.get_attribute("data-live-state") is None:
                break
        expect(banner).not_to_have_attribute("data-live-state", re.compile(".*"))

    def after_a_failed_re_read(self, run: SyncRun) -> tuple[Page, Locator]:
        """The console whose table's re-read after `run` failed (its re-reads
        still refused), and its live banner, saying so."""
        page = self.open_console()
        wait_for_live_stream(page)
        page.route(TABLE_RE_READ, lambda route: route.fulfill(status=500))
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
        banner = page.locator("[data-live-updates]")
        expect(banner).to_have_attribute("data-live-state", "stale")
        return page, banner

    def test_a_catch_up_re_read_keeps_the_keyboard_where_it_was(self) -> None:
        # Unlike htmx's swaps, the catch-up's replacements kept no focus: the
        # next Tab started over at the top of the page.
        session = TransactionSyncStateFactory()
        run = SyncRunFactory()
        page, banner = self.after_a_failed_re_read(run)
        page.unroute(TABLE_RE_READ)
        link = page.locator(f"#session-{session.pk}-link")
        link.focus()
        page.evaluate("document.getElementById('session-results').dataset.old = 1")
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
        expect(banner).not_to_have_attribute("data-live-state", re.compile(".*"))
        expect(page.locator("#session-results[data-old]")).to_have_count(0)
        expect(link).to_be_focused()

    def test_a_live_re_read_that_fails_says_so_in_the_banner(self) -> None:
        # The stream brings the sync's news, but the table's re-read fails: the
        # banner must not go on as if the rows followed it.
        TransactionSyncStateFactory()
        run = SyncRunFactory()
        page, banner = self.after_a_failed_re_read(run)
        expect(page.locator("#live-banner")).to_have_text(
            "Live updates interrupted — the page could not re-read itself and "
            "tries again at the next update; until then the table and totals may "
            "be out of date."
        )
        # No one clicked anything: the notice for a failed request stays away.
        expect(page.locator(".request-error")).to_be_hidden()
        page.unroute(TABLE_RE_READ)
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
        expect(banner).not_to_have_attribute("data-live-state", re.compile(".*"))

    def test_a_request_that_fails_is_said_in_view_until_one_succeeds(self) -> None:
        for index in range(20):
            TransactionSyncStateFactory(
                updated_at=timezone.now() - timedelta(minutes=index)
            )
        SyncRunFactory()
        page = self.open_console()
        page.route(TABLE_RE_READ, lambda route: route.fulfill(status=500))
        page.get_by_role("button", name="Apply filters").click()
        notice = page.get_by_role("alert").filter(has_text="could not answer")
        expect(notice).to_have_text(
            "The server could not answer, so part of this page was not updated. "
            "Try again, or reload the page."
        )
        # Over the page at the bottom of the window, beside the sidebar.
        box = notice.bounding_box()
        assert box is not None
        self.assertLessEqual(box["y"] + box["height"], 900)
        self.assertGreaterEqual(box["x"], 240)
        page.unroute(TABLE_RE_READ)
        page.get_by_role("button", name="Apply filters").click()
        expect(notice).to_be_hidden()

    def test_row_times_are_absolute_and_show_their_age(self) -> None:
        TransactionSyncStateFactory(last_synced_at=datetime.now(UTC))
        SyncRunFactory()
        page = self.open_console()
        synced = page.locator("#session-tbody td[data-label='Last synced']")
        expect(synced.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
        expect(synced.locator(".time-age")).to_have_text("just now")
        # A page nothing updates any more shows its times growing old.
        synced.locator("time").evaluate(
            "(time) => { time.dateTime = new Date(Date.now() - 300000).toISOString(); }"
        )
        expect(synced.locator(".time-age")).to_have_text("5 min ago", timeout=10_000)
        # On a phone the cell is a column: the age is the time's second line, as
        # close under it as any cell's second line.
        page.set_viewport_size({"width": 390, "height": 844})
        time_box = synced.locator("time").bounding_box()
        age_box = synced.locator(".time-age").bounding_box()
        assert time_box is not None and age_box is not None
        gap = age_box["y"] - (time_box["y"] + time_box["height"])
        self.assertTrue(0 <= gap <= 4, gap)

    def runs_table_shows(self, page: Page, run: SyncRun) -> None:
        """Tell the open Sync runs page that `run` finished, until its table
        shows it: the stream subscribes a moment after the browser sees it open."""
        for _ in range(50):
            publish_run_finished(sender=SyncRun, run=run)
            page.wait_for_timeout(200)
            if f"#{run.pk}" in page.locator("#sync-runs").inner_text():
                break
        expect(page.locator("#sync-runs")).to_contain_text(f"#{run.pk}")

    def live_update(self, page: Page, part: str) -> None:
        """What a `sessions-updated` event does to `part`, waited for until settled."""
        page.evaluate(
            """(part) => new Promise((settled) => {
              document.addEventListener("htmx:afterSettle", settled, {once: true});
              htmx.trigger(part, "sse:sessions-updated");
            })""",
            part,
        )

    def test_a_new_token_copies_with_one_click(self) -> None:
        page = self.open_console("/admin/api-tokens/")
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        page.fill("#id_name", "billing export")
        page.get_by_role("button", name="Create token").click()
        raw = page.locator("#new-token").inner_text()
        # The new token takes the focus, so it is read out, and Copy is next.
        expect(page.locator("[data-focus-on-load]")).to_be_focused()
        page.keyboard.press("Tab")
        copy = page.get_by_role("button", name="Copy", exact=True)
        expect(copy).to_be_focused()
        copy.click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        self.assertEqual(page.evaluate("navigator.clipboard.readText()"), raw)

    def test_revoking_a_token_asks_first(self) -> None:
        page = self.open_console("/admin/api-tokens/")
        page.fill("#id_name", "billing export")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#new-token")).to_be_visible()
        row = page.locator("tbody tr", has_text="billing export")

        # The first click only asks; closing the question keeps the token.
        row.locator("summary").click()
        expect(row).to_contain_text("stops working at once")
        row.get_by_text("Keep it").click()
        expect(row.locator(".confirm__body")).to_be_hidden()
        expect(row).to_contain_text("Active")
        # From the keyboard, Escape closes it too, back on the control.
        summary = row.locator("summary")
        summary.focus()
        page.keyboard.press("Enter")
        expect(row.locator(".confirm__body")).to_be_visible()
        page.keyboard.press("Tab")
        page.keyboard.press("Escape")
        expect(row.locator(".confirm__body")).to_be_hidden()
        expect(summary).to_be_focused()

        row.locator("summary").click()
        row.get_by_role("button", name=re.compile("^Revoke token")).click()
        expect(page.get_by_role("status").first).to_contain_text("revoked")
        expect(page.locator("tbody tr", has_text="billing export")).to_contain_text(
            "Revoked"
        )

    def test_deactivating_a_mapping_asks_first_from_the_keyboard_too(self) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="04DEAD01")
        page = self.open_console("/admin/user-mappings/")
        row = page.locator("tbody tr", has_text="04DEAD01")

        # The first press only asks; "Keep it" closes the question, nothing changed.
        ask = row.locator("summary", has_text="Deactivate")
        ask.focus()
        page.keyboard.press("Enter")
        expect(row).to_contain_text("04DEAD01 can no longer start or reserve")
        confirm = row.get_by_role("button", name="Deactivate mapping 04DEAD01")
        expect(confirm).to_be_visible()
        page.keyboard.press("Enter")  # the focus is still on the summary
        expect(confirm).to_be_hidden()
        mapping.refresh_from_db()
        self.assertTrue(mapping.is_active)
        expect(row).to_contain_text("Active")

        # Asked again and answered: the mapping is deactivated.
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        expect(confirm).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").first).to_contain_text("deactivated")
        expect(page.locator("tbody tr", has_text="04DEAD01")).to_contain_text(
            "Inactive"
        )
        mapping.refresh_from_db()
        self.assertFalse(mapping.is_active)

    def test_reload_and_back_after_creating_a_token_create_no_other(self) -> None:
        driver = UserFactory(username="dana@example.com")
        page = self.open_console("/admin/api-tokens/")
        for path, user in (("/admin/api-tokens/", None), ("/tokens/", driver)):
            if user is not None:
                page = self.browser.new_page(viewport={"width": 390, "height": 844})
                sign_in(page, self.base_url, user.username, "driver")
                page.goto(f"{self.base_url}{path}")
            page.fill("#id_name", "home automation")
            page.get_by_role("button", name="Create token").click()
            expect(page.locator("#new-token")).to_be_visible()
            self.assertEqual(page.url, f"{self.base_url}{path}")
            raw = page.locator("#new-token").inner_text()

            page.reload()
            expect(page.locator("tbody tr")).to_have_count(1)
            expect(page.locator("#new-token")).to_have_count(0)
            page.go_back()
            page.go_forward()
            expect(page.locator("tbody tr")).to_have_count(1)
            expect(page.locator("#new-token")).to_have_count(0)
            self.assertNotIn(raw, page.content())
            self.assertEqual(ApiToken.objects.filter(name="home automation").count(), 1)
            ApiToken.objects.all().delete()

    def test_a_failed_resync_shows_on_its_detail_page_as_it_happens(self) -> None:
        session = session_with_energy(kwh=Decimal("3.5"))
        page = self.open_console(f"/admin/sessions/{session.steve_transaction_id}/")
        region = page.locator("#resync-status")
        expect(region).to_be_empty()
        before = region.element_handle()
        wait_for_live_stream(page)
        # What the worker does after "Resync now", while SteVe cannot be reached.
        unreachable = unreachable_steve()
        run = services.sync_run_transaction(
            steve_transaction_id=session.steve_transaction_id,
            trigger="manual",
            client=unreachable,
        )
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        expect(region).to_contain_text(f"failed: {run.error}")
        expect(region.get_by_role("link", name="Sync runs")).to_be_visible()
        # The region screen readers listen to is the one that was there.
        self.assertTrue(page.evaluate("(el) => el.isConnected", before))
        expect(page.locator(".kv")).to_contain_text("3.500 kWh")
        # Each sync re-reads the page: the same words are left as they are, or
        # screen readers would say them again every 10 s.
        said = region.locator(".banner").element_handle()
        self.live_update(page, "#session-detail")
        self.assertTrue(page.evaluate("(el) => el.isConnected", said))

    def test_a_filtered_sync_runs_list_updates_live_with_its_own_runs(self) -> None:
        succeeded = SyncRunFactory()
        page = self.open_console("/admin/sync-runs/?status=failed")
        runs = page.locator("#sync-runs")
        expect(runs).to_contain_text("No run matches these filters")
        expect(page.get_by_label("Status")).to_have_value("failed")
        wait_for_live_stream(page)
        unreachable = unreachable_steve()
        failed = services.sync_run_transactions(trigger="command", client=unreachable)
        self.assertEqual(failed.status, SyncRun.Status.FAILED)
        expect(runs).to_contain_text(f"#{failed.pk}")
        expect(runs).to_contain_text(failed.error)
        expect(runs).not_to_contain_text(f"#{succeeded.pk}")

    def test_the_detail_chart_labels_stay_readable_and_inside_the_card(self) -> None:
        # 0.002 kWh counts in steps of 0.0005: the longest labels the axis makes.
        tiny = session_with_energy(kwh=Decimal("0.002"))
        usual = session_with_energy(kwh=Decimal("12.345"))
        staff = StaffFactory(username="operator")
        for width, height in ((1280, 800), (390, 844), (320, 640)):
            page = self.browser.new_page(viewport={"width": width, "height": height})
            sign_in(page, self.base_url, staff.username, "driver")
            for session, first in ((tiny, ["0.0000", "0.0005"]), (usual, ["0", "5"])):
                page.goto(
                    f"{self.base_url}/admin/sessions/{session.steve_transaction_id}/"
                )
                card = page.locator("section", has=page.locator("#chart-title"))
                labels = card.locator(".chart__label")
                expect(labels.first).to_be_visible()
                y_labels = card.locator(".line-chart__y .chart__label")
                texts = y_labels.evaluate_all("(els) => els.map((e) => e.textContent)")
                self.assertEqual(texts[::-1][:2], first, (width, texts))
                looks = labels.evaluate_all(LABEL_LOOKS)
                for look in looks:
                    self.assertGreaterEqual(look["fontSize"], 11, (width, look))
                    self.assertTrue(look["inside"], (width, look))
                scroll = page.evaluate("document.documentElement.scrollWidth")
                self.assertLessEqual(scroll, width)
            page.close()

    def test_the_sections_row_on_a_phone_shows_that_it_scrolls(self) -> None:
        # The sections that do not fit hide behind a faded edge, not a hard cut.
        page = self.open_console()
        nav = page.locator(".sidebar__nav")
        expect(nav).to_have_attribute("data-more", "")
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(nav).to_have_attribute("data-more", "end")
        self.assertNotEqual(nav.evaluate("n => getComputedStyle(n).maskImage"), "none")
        nav.evaluate("n => { n.scrollLeft = n.scrollWidth; }")
        expect(nav).to_have_attribute("data-more", "start")

    def test_a_section_the_keyboard_reaches_on_a_phone_shows_clear_of_the_fade(
        self,
    ) -> None:
        page = self.open_console()
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        nav = page.locator(".sidebar__nav")
        link = nav.get_by_role("link", name="User mappings")
        page.keyboard.press("Tab")
        while not link.evaluate("l => l === document.activeElement"):
            page.keyboard.press("Tab")
        page.wait_for_timeout(300)  # a smooth scroll, where the browser makes one
        shown, seen = nav.bounding_box(), link.bounding_box()
        assert shown is not None and seen is not None
        fade = 48 - 1  # 3rem, less a pixel of rounding
        self.assertGreaterEqual(seen["x"], shown["x"])
        self.assertLessEqual(
            seen["x"] + seen["width"], shown["x"] + shown["width"] - fade
        )

    def test_an_error_page_fits_a_320_px_screen(self) -> None:
        # "Back to Charging Sessions" on one line pushed the card past the edge.
        page = self.open_console()
        page.set_viewport_size({"width": 320, "height": 640})
        page.goto(f"{self.base_url}/nonexistent/")
        expect(
            page.get_by_role("link", name="Back to Charging Sessions")
        ).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        self.assertLessEqual(width, 320)

    def test_filter_notes_with_long_values_wrap_on_a_phone(self) -> None:
        page = self.open_console(
            f"/admin/sessions/?status={'W' * 60}&from={'9' * 60}&to={'M' * 60}"
        )
        page.set_viewport_size({"width": 390, "height": 844})
        notes = page.get_by_role("note")
        expect(notes).to_have_count(3)
        self.assertLessEqual(page.evaluate("document.documentElement.scrollWidth"), 390)
        main = page.locator("#main").bounding_box()
        assert main is not None
        for index in range(3):
            box = notes.nth(index).bounding_box()
            assert box is not None
            self.assertLessEqual(box["x"] + box["width"], main["x"] + main["width"])

    def test_idtags_break_only_on_a_phone(self) -> None:
        # An email wider than half a phone-width card, whatever the factories'
        # count has reached.
        UserMappingFactory(
            steve_ocpp_id_tag="TAG-0001",
            user=UserFactory(username="driver101@example.com"),
        )
        long_tag = "RFID-" + "7F3A9C21" * 5
        # An address longer than half a phone-width card wraps too.
        customer = UserFactory(username="charlotte.montgomery@example.com")
        UserMappingFactory(steve_ocpp_id_tag=long_tag, user=customer)
        page = self.open_console("/admin/user-mappings/")
        tag = page.locator("td[data-label=idTag] a", has_text="TAG-0001")
        # Opening a row's question widens its actions: the tag stays one line.
        row = page.locator("tbody tr", has_text="TAG-0001")
        row.locator("summary").click()
        expect(row.locator(".confirm__body")).to_be_visible()
        for link in (tag, page.locator("td[data-label=idTag] a", has_text="RFID-")):
            self.assertEqual(link.evaluate(TEXT_LINES), 1, link.inner_text())

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        self.assertLessEqual(page.evaluate("document.documentElement.scrollWidth"), 390)
        cell = page.locator("td[data-label=idTag]", has_text="RFID-")
        card = page.locator("tbody tr", has_text="RFID-").bounding_box()
        box = cell.locator("a").bounding_box()
        assert card is not None and box is not None
        self.assertLessEqual(box["x"] + box["width"], card["x"] + card["width"])
        self.assertGreater(cell.locator("a").evaluate(TEXT_LINES), 1)
        # The search button sits under the field as far as fields sit apart.
        field = page.locator("#id_q").bounding_box()
        button = page.get_by_role("button", name="Search").bounding_box()
        assert field is not None and button is not None
        gap = button["y"] - (field["y"] + field["height"])
        self.assertAlmostEqual(gap, 12, delta=1)

    def test_a_tab_whose_sign_in_ended_signs_in_again_where_it_was(self) -> None:
        session = TransactionSyncStateFactory()
        SyncRunFactory()
        page = self.open_console()
        sessions_url = f"{self.base_url}/admin/sessions/"
        # The sign-in ends under the open tab (it expired, or signed out elsewhere)
        # once its stream is open: a stream asked for after it would take the tab
        # to sign in itself.
        wait_for_live_stream(page)
        Session.objects.all().delete()
        page.fill("#id_tag", "04a1")
        page.get_by_role("button", name="Apply filters").click()
        # The whole tab goes to sign in, not the sign-in form inside the table.
        expect(page).to_have_url(
            f"{self.base_url}/accounts/login/?next=/admin/sessions/"
        )
        expect(page.locator(".sidebar")).to_have_count(0)
        self.sign_in_again(page)
        expect(page).to_have_url(sessions_url)
        expect(page.locator("#session-count")).to_have_text(
            "1 session matches current filters"
        )

        # A button pressed after the sign-in ended: signing in opens its address,
        # which leads back to its page and says nothing was done.
        detail_url = f"{sessions_url}{session.steve_transaction_id}/"
        page.goto(detail_url)
        wait_for_live_stream(page)
        Session.objects.all().delete()
        page.get_by_role("button", name="Resync now").click()
        self.sign_in_again(page)
        expect(page).to_have_url(detail_url)
        expect(
            page.get_by_text("Nothing was done yet: press the button again")
        ).to_be_visible()
        self.assertFalse(SyncRun.objects.resyncs_of(session.steve_transaction_id))

    def sign_in_again(self, page: Page) -> None:
        page.fill("input[name=username]", "operator")
        page.fill("input[name=password]", "driver")
        page.click("button[type=submit]")


class LiveRenewalBrowserTests(ConsolePages, TransactionTestCase):
    """The server ends each stream after LIVE_STREAM_MAX_SECONDS (2 here), so that
    the reconnect checks again who may read: the page comes back quietly."""

    @pytest.fixture(autouse=True)
    def _browser(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        server, self.browser = serve_and_browse(self, LIVE_STREAM_MAX_SECONDS="2")
        self.base_url = server.url

    def test_a_renewed_stream_comes_back_without_a_banner_or_a_re_read(self) -> None:
        TransactionSyncStateFactory()
        SyncRunFactory()
        staff = StaffFactory(username="operator")
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, self.base_url, staff.username, "driver")
        streams: list[str] = []
        re_reads: list[str] = []
        # A planned end's error reaches neither htmx (which logs every one) nor
        # the banner.
        errors: list[str] = []
        page.on(
            "console",
            lambda message: (
                errors.append(message.text) if message.type == "error" else None
            ),
        )

        def count(request: Request) -> None:
            if "/admin/live/" in request.url:
                streams.append(request.url)
            elif request.resource_type == "fetch":  # polaris.js's catch-up
                re_reads.append(request.url)

        page.on("request", count)
        page.goto(f"{self.base_url}/admin/sessions/")
        wait_for_live_stream(page)
        page.evaluate(LIVE_STATE_PROBE)
        # An event before the renewals, so that they resume after its id.
        run = SyncRunFactory(created_count=1)
        first = f"1 session updated at {clock_time(run.finished_at)}"
        for _ in range(50):
            publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
            page.wait_for_timeout(200)
            if first in page.locator("#live-banner").inner_text():
                break
        expect(page.locator("#live-banner")).to_have_text(first)
        # At least two renewals, and the banner never said "disconnected".
        for _ in range(150):
            if len(streams) >= 3:
                break
            page.wait_for_timeout(100)
        self.assertGreaterEqual(len(streams), 3, streams)
        self.assertEqual(page.evaluate("window.liveStates"), [])
        self.assertEqual(re_reads, [])
        # Events still arrive.
        run = SyncRunFactory(created_count=2)
        expect(page.locator("#live-banner")).to_have_text(first)
        publish_sessions_changed(sender=SyncRun, run=run, transaction_ids=[])
        expect(page.locator("#live-banner")).to_have_text(
            f"2 sessions updated at {clock_time(run.finished_at)}"
        )
        self.assertEqual(page.evaluate("window.liveStates"), [])
        self.assertEqual(errors, [])

    def test_signing_out_in_another_tab_sends_this_one_to_sign_in(self) -> None:
        staff = StaffFactory(username="operator")
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        sign_in(page, self.base_url, staff.username, "driver")
        page.goto(f"{self.base_url}/admin/sessions/")
        wait_for_live_stream(page)
        other_tab = context.new_page()
        other_tab.goto(f"{self.base_url}/accounts/logout/")
        other_tab.click("form button[type=submit]")
        # Its stream said so, and the page left rather than retrying it.
        page.wait_for_url("**/accounts/login/?next=/admin/sessions/")
        context.close()

    def test_a_sign_in_that_ended_between_two_streams_sends_the_page_to_sign_in(
        self,
    ) -> None:
        page = self.open_console()
        wait_for_live_stream(page)
        # Ended with no sign-out to tell the stream (expired, or removed): the
        # reconnect after its renewal is what finds out.
        Session.objects.all().delete()
        page.wait_for_url("**/accounts/login/?next=/admin/sessions/")


# Counts the live events the page receives, and records whether each re-read they
# trigger was refused (the pause's listener runs first: polaris.js loaded first).
PAUSE_PROBES = """() => {
  window.liveEvents = 0;
  window.liveRereads = [];
  document.addEventListener("htmx:sseBeforeMessage", () => { window.liveEvents++; });
  document.addEventListener("htmx:confirm", (event) => {
    const trigger = event.detail.triggeringEvent;
    if (trigger && trigger.type.startsWith("sse:")) {
      window.liveRereads.push(event.defaultPrevented);
    }
  });
}"""

# How many lines an element's text takes.
TEXT_LINES = """(e) => {
  const range = document.createRange();
  range.selectNodeContents(e);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}"""

# Each chart label's font size on screen and whether it lies inside its card's
# content box (the card body less its padding).
LABEL_LOOKS = """(els) => els.map((e) => {
  const body = e.closest(".card__body");
  const b = body.getBoundingClientRect();
  const s = getComputedStyle(body);
  const left = b.left + parseFloat(s.paddingLeft);
  const right = b.right - parseFloat(s.paddingRight);
  const top = b.top + parseFloat(s.paddingTop);
  const r = e.getBoundingClientRect();
  const range = document.createRange();
  range.selectNodeContents(e);
  const t = range.getBoundingClientRect();
  return {
    text: e.textContent,
    fontSize: parseFloat(getComputedStyle(e).fontSize),
    inside: t.left >= left - 0.5 && t.right <= right + 0.5 && r.top >= top - 0.5,
  };
})"""


def unreachable_steve() -> SteveClient:
    """A SteVe client for the discard port, where nothing listens: a free port
    picked now could be a parallel test's server a moment later."""
    return SteveClient(
        base_url="http://127.0.0.1:9/steve",
        username="polaris",
        password="polaris",
        timeout=2,
    )


# Records each state the live banner takes (paused, disconnected, back to live).
LIVE_STATE_PROBE = """() => {
  window.liveStates = [];
  const banner = document.querySelector("[data-live-updates]");
  new MutationObserver(() => {
    window.liveStates.push(banner.getAttribute("data-live-state"));
  }).observe(banner, { attributes: true, attributeFilter: ["data-live-state"] });
}"""
