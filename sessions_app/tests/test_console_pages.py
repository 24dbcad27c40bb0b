"""Transaction detail, Sync runs and User mappings pages of the console."""

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock
from urllib.parse import quote

import requests
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.http import HttpResponse
from django.test import Client, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_eventstream.utils import get_storage

from polaris import live
from polaris.browser import live_server
from polaris.testing import take_queued_tasks
from sessions_app import selectors
from sessions_app.forms import MAPPING_IMPORT_MAX_BYTES
from sessions_app.models import AuditEntry
from sessions_app.selectors import user_mappings as user_mapping_selectors
from sessions_app.services import api_token_create
from sessions_app.templatetags.console import clock_time, iso_time
from sessions_app.tests.base import ConsoleTestCase
from sync.models import (
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
    UserMapping,
)
from sync.services.mappings import new_customer_account, user_mapping_create
from sync.services.runs.lifecycle import start_run
from sync.signals import run_finished, sessions_changed
from sync.tests.factories import (
    ResyncRunFactory,
    StaffFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)


class SessionDetailTests(ConsoleTestCase):
    def test_it_shows_summary_events_chart_and_flags(self) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="04A1", label="Dana van")
        session = session_with_energy(
            kwh=Decimal("12.345"),
            ocpp_id_tag="04A1",
            is_finalized=True,
            stop_reason="EVDisconnected",
            stop_event_actor="station",
            meter_reset_seen=True,
        )
        url = reverse(
            "sessions_app:session-detail", args=[session.steve_transaction_id]
        )
        # Session, user, row, the events' readings (chart and count), the events
        # the table lists, the last resync, 2 permission checks (act as). A
        # completed session's Last synced is its own: no sync run query.
        with self.assertNumQueries(8):
            response = self.client.get(url)
        self.assertContains(response, f"Transaction #{session.steve_transaction_id}")
        self.assertContains(response, mapping.label)
        self.assertContains(response, "12.345 kWh")
        self.assertContains(response, "EVDisconnected")
        # Said beside the flag, not in a tooltip that touch screens never show.
        self.assertContains(
            response,
            '<span class="badge badge--warning">Meter reset</span> <span '
            'class="flag-list__why">The meter went backwards (a correction event '
            "recorded it, without negative energy), or jumped further than the "
            "charger could deliver (not counted).</span>",
        )
        self.assertContains(response, 'role="img"')
        self.assertContains(response, "Sync events (2)")

    def test_an_unmapped_sessions_detail_leads_to_mapping_its_tag(self) -> None:
        session = session_with_energy(kwh=Decimal("3.5"), ocpp_id_tag="04#B:C")
        url = reverse(
            "sessions_app:session-detail", args=[session.steve_transaction_id]
        )
        response = self.client.get(url)
        create = (
            reverse("sessions_app:user-mapping-create")
            + f"?tag=04%23B%3AC&next={quote(url)}"
        )
        self.assertContains(
            response, f'<a href="{create.replace("&next", "&amp;next")}">Map this'
        )
        form = self.client.get(create)
        self.assertContains(form, 'value="04#B:C"')
        self.assertContains(form, f'<a class="btn btn--ghost" href="{url}">Cancel</a>')

    def test_an_open_session_steve_lost_is_not_said_to_be_stopped_manually(
        self,
    ) -> None:
        session = session_with_energy(
            kwh=Decimal("2"),
            is_finalized=True,
            is_stop_estimated=True,
            is_deleted_in_steve=True,
        )
        response = self.client.get(
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id])
        )
        self.assertContains(response, "SteVe lost this transaction while it was open")
        self.assertNotContains(response, "Stopped manually in SteVe")
        # Stopped by hand in SteVe first, then deleted there: a manual stop still.
        session.stop_event_actor = "manual"
        session.save(update_fields=["stop_event_actor"])
        response = self.client.get(
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id])
        )
        self.assertContains(response, "Stopped manually in SteVe")

    def test_a_tag_steves_api_refuses_is_not_offered_for_mapping(self) -> None:
        # A station may send SteVe any idTag; a mapping holds only what SteVe's
        # API takes, so the form would refuse this one.
        session = session_with_energy(kwh=Decimal("3.5"), ocpp_id_tag="04 B&C")
        response = self.client.get(
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id])
        )
        self.assertNotContains(response, "Map this idTag")
        self.assertContains(response, "this idTag cannot be mapped")

    def test_a_long_charges_events_show_the_latest_and_all_on_request(self) -> None:
        session = TransactionSyncStateFactory(is_finalized=False)
        start = timezone.now() - timedelta(hours=3)
        SyncedTransactionEvent.objects.bulk_create(
            SyncedTransactionEvent(
                transaction=session,
                event_type=SyncedTransactionEvent.EventType.PROGRESS,
                meter_wh=1_000 + 100 * minute,
                reading_at=start + timedelta(minutes=minute),
                kwh_delta=Decimal("0.100"),
                ocpp_id_tag=session.ocpp_id_tag,
            )
            for minute in range(105)
        )
        url = reverse(
            "sessions_app:session-detail", args=[session.steve_transaction_id]
        )
        html = self.client.get(url).content.decode()
        self.assertIn("Sync events (105)", html)
        self.assertIn("The latest 100, oldest first.", html)
        self.assertIn(">Show all 105 events</a>", html)
        rows = html[html.index('id="events-title"') :].count(
            'data-label="Reading time"'
        )
        self.assertEqual(rows, 100)
        # The latest: the first five readings (Wh 1,000 to 1,400) are left out.
        self.assertNotIn(">1,400<", html)
        self.assertIn(">1,500<", html)
        everything = self.client.get(url, {"events": "all"}).content.decode()
        self.assertNotIn("Show all", everything)
        self.assertEqual(everything.count('data-label="Reading time"'), 105)

    def test_a_tag_mapped_from_its_session_leads_back_to_it(self) -> None:
        session = session_with_energy(kwh=Decimal("3.5"), ocpp_id_tag="04A1B2")
        url = reverse(
            "sessions_app:session-detail", args=[session.steve_transaction_id]
        )
        customer = UserFactory(username="ada@example.com", email="ada@example.com")
        saved = self.client.post(
            f"{reverse('sessions_app:user-mapping-create')}?tag=04A1B2&next={url}",
            {"steve_ocpp_id_tag": "04A1B2", "customer_email": customer.email,
             "label": "", "billing_customer_id": "", "is_active": "on"},
            follow=True,
        )  # fmt: skip
        self.assertRedirects(saved, url)
        self.assertContains(saved, "Mapping for 04A1B2 created.")
        self.assertContains(saved, "ada@example.com")

    def test_a_mapping_form_leads_back_only_within_the_console(self) -> None:
        create = reverse("sessions_app:user-mapping-create")
        for elsewhere in (
            "https://evil.example/",
            "//evil.example/",
            "/accounts/logout/",
            "/",
        ):
            with self.subTest(elsewhere=elsewhere):
                form = self.client.get(create, {"next": elsewhere})
                self.assertContains(
                    form,
                    f'href="{reverse("sessions_app:user-mapping-list")}">Cancel',
                )

    def test_an_active_sessions_detail_says_while_syncs_fail(self) -> None:
        active = TransactionSyncStateFactory(is_finalized=False)
        stopped = TransactionSyncStateFactory(is_finalized=True)
        SyncRunFactory(created_count=1)
        SyncRunFactory(status="failed", error="SteVe failed with HTTP 500.")

        def detail(session: TransactionSyncState) -> HttpResponse:
            url = reverse(
                "sessions_app:session-detail", args=[session.steve_transaction_id]
            )
            return self.client.get(url, headers={"HX-Request": "true"})

        # Its live parts re-read on a failing run (which changes no session) and
        # say so; a stopped session's readings are final.
        page = self.client.get(
            reverse("sessions_app:session-detail", args=[active.steve_transaction_id])
        )
        self.assertContains(page, "sse:sync-failing")
        response = detail(active)
        self.assertContains(response, "Sync failing</span> The latest sync run failed")
        self.assertContains(response, "SteVe failed with HTTP 500.")
        self.assertContains(response, "This session's readings may be out of date.")
        self.assertNotContains(detail(stopped), "Sync failing")

        SyncRunFactory()
        self.assertNotContains(detail(active), "Sync failing")

    def test_a_sync_ticks_re_read_gets_the_live_parts_alone(self) -> None:
        session = session_with_energy(kwh=Decimal("3.5"), ocpp_id_tag="04A1")
        url = reverse(
            "sessions_app:session-detail", args=[session.steve_transaction_id]
        )
        # The page's queries without the stream's: the parts read what they show
        # (two of them the staff member's permissions, which "Map this idTag"
        # of an unmapped card asks for); the events twice, their readings for the
        # chart and count, and the rows the table lists.
        with self.assertNumQueries(10):
            response = self.client.get(url, headers={"HX-Request": "true"})
        html = response.content.decode()
        self.assertNotIn("<html", html)
        self.assertNotIn("sse-connect", html)
        self.assertIn('id="resync-status"', html)
        self.assertIn('id="session-detail"', html)
        self.assertContains(response, "3.500 kWh")
        self.assertIn("HX-Request", response["Vary"])

    @override_settings(TIME_ZONE="UTC")
    def test_a_manual_stop_the_station_charges_on_after_says_so(self) -> None:
        reading = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
        session = TransactionSyncStateFactory(
            is_finalized=True,
            stop_event_actor="manual",
            is_stop_estimated=True,
            last_reading_after_stop_at=reading,
        )
        url = reverse(
            "sessions_app:session-detail", args=[session.steve_transaction_id]
        )
        self.assertContains(
            self.client.get(url),
            "The station still sent a reading at <time "
            'datetime="2026-03-02T10:15:00+00:00">Mar 2, 2026, 10:15:00 UTC</time>, '
            "after this stop: it charges on until it stops the session itself.",
        )

    def test_an_active_session_was_last_synced_by_the_last_good_run(self) -> None:
        # A run that succeeded re-read every active session, even one it did not
        # change; a completed session keeps its own time.
        long_ago = timezone.now() - timedelta(hours=2)
        active = TransactionSyncStateFactory(
            is_finalized=False, last_synced_at=long_ago
        )
        done = TransactionSyncStateFactory(is_finalized=True, last_synced_at=long_ago)
        run = SyncRunFactory(started_at=timezone.now() - timedelta(seconds=30))
        for session, expected in ((active, run.finished_at), (done, long_ago)):
            url = reverse(
                "sessions_app:session-detail", args=[session.steve_transaction_id]
            )
            self.assertContains(
                self.client.get(url),
                f'<dt>Last synced</dt><dd><time datetime="{iso_time(expected)}"',
            )

    def assert_stale_on_both_pages(
        self, *, stale: TransactionSyncState, fresh: TransactionSyncState
    ) -> None:
        """`stale` is marked Stale on its detail page and in the table, the only
        row there so marked; `fresh` on neither."""
        mark = '<span class="badge badge--warning" title="Not synced for more'
        for session, is_stale in ((stale, True), (fresh, False)):
            url = reverse(
                "sessions_app:session-detail", args=[session.steve_transaction_id]
            )
            detail = self.client.get(url).content.decode()
            self.assertEqual(mark in detail, is_stale, session)
        table = self.client.get(reverse("sessions_app:session-list"))
        self.assertContains(table, mark, count=1)

    def test_an_active_session_no_run_confirmed_lately_is_stale_on_both_pages(
        self,
    ) -> None:
        # The seed: stale timestamps point at a sync run problem. The detail page
        # says so as the table does; a completed session is never stale.
        long_ago = timezone.now() - timedelta(hours=2)
        SyncRunFactory(started_at=long_ago)
        active = TransactionSyncStateFactory(
            is_finalized=False, last_synced_at=long_ago
        )
        done = TransactionSyncStateFactory(is_finalized=True, last_synced_at=long_ago)
        self.assert_stale_on_both_pages(stale=active, fresh=done)

    def test_a_partial_run_confirms_the_sessions_it_did_not_name_unread(
        self,
    ) -> None:
        long_ago = timezone.now() - timedelta(hours=2)
        SyncRunFactory(started_at=long_ago)
        read, unread = (
            TransactionSyncStateFactory(is_finalized=False, last_synced_at=long_ago)
            for _ in range(2)
        )
        # SteVe could not serve one transaction's meter values; the run read the
        # others, whose rows it did not need to write.
        SyncRunFactory(
            status=SyncRun.Status.PARTIAL,
            unread_transaction_ids=[unread.steve_transaction_id],
        )
        self.assert_stale_on_both_pages(stale=unread, fresh=read)

    def test_a_suspected_stuck_session_says_how_long_no_reading_came(self) -> None:
        # SteVe never closes it; "still charging" is more than anyone knows.
        now = timezone.now()
        session = TransactionSyncStateFactory(
            is_finalized=False,
            is_suspected_stuck=True,
            started_at=now - timedelta(hours=40, minutes=2),
            last_reading_at=now - timedelta(hours=39, minutes=10),
        )
        with time_machine.travel(now, tick=False):
            detail = self.client.get(
                reverse(
                    "sessions_app:session-detail", args=[session.steve_transaction_id]
                )
            )
            row = self.client.get(reverse("sessions_app:session-list"))
        self.assertContains(
            detail,
            "<dd>Not stopped in SteVe; suspected stuck, with no reading for "
            "39 h 10 min</dd>",
        )
        self.assertNotContains(detail, "Still charging")
        self.assertContains(row, "no reading for 39 h 10 min</td>")
        self.assertNotContains(row, "so far")

    @override_settings(USE_THOUSAND_SEPARATOR=True)
    def test_its_ids_are_never_grouped_like_amounts(self) -> None:
        session = session_with_energy(kwh=Decimal("2"), steve_transaction_id=1234567)
        session.events.update(sync_run=SyncRunFactory(id=7654321))
        url = reverse("sessions_app:session-detail", args=[1234567])
        response = self.client.get(url)
        self.assertContains(response, "<title>Transaction 1234567")
        self.assertContains(response, "Transaction #1234567")
        self.assertContains(response, "#7654321")
        self.assertNotContains(response, "1,234,567")
        self.assertNotContains(response, "7,654,321")

    def test_an_unknown_transaction_is_404(self) -> None:
        url = reverse("sessions_app:session-detail", args=[999999])
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_resync_queues_one_task_and_says_the_page_will_show_how_it_went(
        self,
    ) -> None:
        take_queued_tasks()
        session = TransactionSyncStateFactory()
        url = reverse(
            "sessions_app:session-resync", args=[session.steve_transaction_id]
        )
        response = self.client.post(url, follow=True)
        self.assertRedirects(
            response,
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id]),
        )
        # Said in the resync notice, which the run's outcome replaces, not above
        # the page, where it would stay beside the outcome.
        html = response.content.decode()
        notice = html[
            html.index('id="resync-status"') : html.index('id="session-detail"')
        ]
        self.assertRegex(
            notice,
            rf"Resync of transaction {session.steve_transaction_id} queued at "
            r"<time [^>]+>[^<]+</time>; this page shows how it went in a "
            "few seconds.",
        )
        self.assertEqual(html.count("; this page shows how it went"), 1)
        self.assertEqual(
            take_queued_tasks(),
            [("sync.tasks.sync_run_transaction", f"({session.steve_transaction_id},)")],
        )

    def test_a_resync_queued_is_said_until_its_own_run_starts(self) -> None:
        session = TransactionSyncStateFactory()
        earlier = ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
            status=SyncRun.Status.FAILED,
            error="SteVe cannot be reached.",
            started_at=timezone.now() - timedelta(seconds=12),
        )
        self.client.post(
            reverse("sessions_app:session-resync", args=[session.steve_transaction_id])
        )
        take_queued_tasks()
        # Re-read before the worker starts the run: not the earlier outcome.
        notice = self.resync_notice(session.steve_transaction_id)
        self.assertIn("queued at", notice)
        self.assertNotIn(earlier.error, notice)
        # Its run started: its outcome, and from then on the latest run's.
        ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
            status=SyncRun.Status.SUCCEEDED,
        )
        for _ in range(2):
            notice = self.resync_notice(session.steve_transaction_id)
            self.assertIn("Resynced from SteVe at", notice)
            self.assertNotIn("queued at", notice)

    def test_a_resync_done_before_its_page_shows_takes_the_focus(self) -> None:
        # A quick worker finished it before the redirect's page was drawn: its
        # outcome is what "Resync now" answers, and is read out; later re-reads
        # and visits leave the focus where it is.
        session = TransactionSyncStateFactory()
        self.client.post(
            reverse("sessions_app:session-resync", args=[session.steve_transaction_id])
        )
        take_queued_tasks()
        ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
            status=SyncRun.Status.SUCCEEDED,
        )
        notice = self.resync_notice(session.steve_transaction_id)
        self.assertIn("Resynced from SteVe at", notice)
        self.assertIn("data-focus-on-load", notice)
        notice = self.resync_notice(session.steve_transaction_id)
        self.assertIn("Resynced from SteVe at", notice)
        self.assertNotIn("data-focus-on-load", notice)

    def resync_notice(self, session_id: int) -> str:
        """The HTML of the detail page's resync status region."""
        url = reverse("sessions_app:session-detail", args=[session_id])
        html = self.client.get(url).content.decode()
        html = html[
            html.index('id="resync-status"') : html.index('id="session-detail"')
        ]
        # Not the live banner that follows it.
        return html.split('class="live-banner-slot"')[0]

    def test_a_failed_resync_shows_its_sentence_on_the_detail_page(self) -> None:
        session = TransactionSyncStateFactory()
        other = TransactionSyncStateFactory()
        ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
            status=SyncRun.Status.FAILED,
            error="SteVe did not answer within 10 s.",
        )
        notice = self.resync_notice(session.steve_transaction_id)
        self.assertIn("banner--error", notice)
        self.assertIn("failed: SteVe did not answer within 10 s.", notice)
        self.assertIn(
            f"{reverse('sessions_app:sync-run-list')}?kind=transaction", notice
        )
        # Another transaction's resync is not this page's business.
        self.assertNotIn("banner", self.resync_notice(other.steve_transaction_id))

    def test_a_failed_resync_is_not_reported_once_a_later_run_synced_it(
        self,
    ) -> None:
        # Its failure is past: next to "Last synced just now" it would mislead.
        session = TransactionSyncStateFactory(
            is_finalized=False, last_synced_at=timezone.now() - timedelta(minutes=1)
        )
        ResyncRunFactory(
            steve_transaction_id=session.steve_transaction_id,
            status=SyncRun.Status.FAILED,
            error="SteVe failed with HTTP 503.",
            started_at=timezone.now() - timedelta(seconds=30),
        )
        self.assertIn("HTTP 503", self.resync_notice(session.steve_transaction_id))
        SyncRunFactory()  # the next scheduled run, which re-read every active one
        self.assertNotIn("banner", self.resync_notice(session.steve_transaction_id))

    def test_the_notice_follows_the_latest_resync_while_it_is_recent(self) -> None:
        session = TransactionSyncStateFactory()
        resync = {
            "kind": SyncRun.Kind.TRANSACTION,
            "steve_transaction_id": session.steve_transaction_id,
        }
        SyncRunFactory(
            **resync, status=SyncRun.Status.FAILED, error="SteVe refused.",
            started_at=timezone.now() - timedelta(minutes=3),
        )  # fmt: skip
        latest = SyncRunFactory(
            **resync, status=SyncRun.Status.RUNNING, finished_at=None
        )
        self.assertIn(
            "waiting for SteVe…", self.resync_notice(session.steve_transaction_id)
        )
        latest.status, latest.finished_at = SyncRun.Status.SUCCEEDED, timezone.now()
        latest.save()
        notice = self.resync_notice(session.steve_transaction_id)
        self.assertIn("banner--success", notice)
        self.assertIn("nothing had changed.", notice)
        latest.updated_count = 1
        latest.save()
        self.assertIn(
            "the changes show below.", self.resync_notice(session.steve_transaction_id)
        )
        # After a quarter of an hour the Last synced time says enough.
        SyncRun.objects.update(started_at=timezone.now() - timedelta(minutes=16))
        self.assertNotIn("banner", self.resync_notice(session.steve_transaction_id))

    def test_an_action_opened_as_a_page_does_nothing_and_leads_to_its_button(
        self,
    ) -> None:
        # Signing in again after the session ended as a button was pressed brings
        # the browser to the action's address with a GET: not a blank 405.
        take_queued_tasks()
        session = TransactionSyncStateFactory()
        mapping = UserMappingFactory()
        token, _ = api_token_create(user=self.staff, name="export")
        steve_id = session.steve_transaction_id
        actions = [
            (
                reverse("sessions_app:session-resync", args=[steve_id]),
                reverse("sessions_app:session-detail", args=[steve_id]),
            ),
            (
                reverse("sessions_app:sync-run-create"),
                reverse("sessions_app:sync-run-list"),
            ),
            (
                reverse("sessions_app:user-mapping-deactivate", args=[mapping.pk]),
                reverse("sessions_app:user-mapping-list"),
            ),
            (
                reverse("sessions_app:api-token-revoke", args=[token.pk]),
                reverse("sessions_app:api-token-list"),
            ),
        ]
        for action, page in actions:
            response = self.client.get(action, follow=True)
            self.assertRedirects(response, page)
            self.assertContains(
                response, "Nothing was done yet: press the button again to go ahead."
            )
        # An import's file went with the POST: it must be chosen again.
        response = self.client.get(
            reverse("sessions_app:user-mapping-import"), follow=True
        )
        self.assertRedirects(response, reverse("sessions_app:user-mapping-list"))
        self.assertContains(
            response,
            "Nothing was imported yet: choose the file again and press Import.",
        )
        self.assertEqual(take_queued_tasks(), [])
        mapping.refresh_from_db()
        token.refresh_from_db()
        self.assertTrue(mapping.is_active)
        self.assertIsNone(token.revoked_at)
        # Other methods than GET and POST are still refused.
        self.assertEqual(self.client.put(actions[0][0]).status_code, 405)


class TaskQueueDownTests(TransactionTestCase):
    """Redis, the task queue, down: the console's buttons say so, under uvicorn."""

    def test_resync_and_run_sync_say_the_queue_cannot_be_reached(self) -> None:
        StaffFactory(username="operator")
        session = TransactionSyncStateFactory()
        steve_id = session.steve_transaction_id
        buttons = [
            (
                reverse("sessions_app:session-detail", args=[steve_id]),
                reverse("sessions_app:session-resync", args=[steve_id]),
                "The resync did not start: the task queue (Redis) cannot be reached.",
            ),
            (
                reverse("sessions_app:sync-run-list"),
                reverse("sessions_app:sync-run-create"),
                "The sync run was not queued: the task queue (Redis) cannot be "
                "reached.",
            ),
        ]
        unreachable = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
        with live_server(REDIS_URL=unreachable) as server, requests.Session() as web:
            login = f"{server.url}/accounts/login/"
            credentials = {"username": "operator", "password": "driver"}
            web.post(login, data=with_csrf(web.get(login).text, credentials))
            for page, action, sentence in buttons:
                html = web.get(f"{server.url}{page}").text
                self.assertIn(f'action="{action}"', html)
                response = web.post(f"{server.url}{action}", data=with_csrf(html, {}))
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.url, f"{server.url}{page}")
                self.assertIn(sentence, response.text)


def with_csrf(html: str, data: dict[str, str]) -> dict[str, str]:
    """`data` with the page's CSRF token (one per page and session)."""
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token is not None, html
    return {**data, "csrfmiddlewaretoken": token[1]}


class DjangoAdminLinkTests(ConsoleTestCase):
    def test_only_staff_who_may_see_something_there_are_offered_it(self) -> None:
        self.staff = StaffFactory(may_change_mappings=False)
        self.client.force_login(self.staff)
        sessions = reverse("sessions_app:session-list")
        link = 'href="/django-admin/"'
        self.assertNotContains(self.client.get(sessions), link)
        self.staff.user_permissions.add(Permission.objects.get(codename="view_rate"))
        self.assertContains(self.client.get(sessions), link)


class UserMappingPagesTests(ConsoleTestCase):
    def import_csv(self, content: bytes) -> HttpResponse:
        """The console's import of a file with `content`, redirect followed."""
        upload = SimpleUploadedFile("mappings.csv", content)
        return self.client.post(
            reverse("sessions_app:user-mapping-import"), {"file": upload}, follow=True
        )

    def test_a_long_email_breaks_at_its_dots_and_at_and_a_short_one_not(
        self,
    ) -> None:
        long = "gus.garage.with.a.really.long.address@example-fleet.com"
        UserMappingFactory(user__username=long)
        UserMappingFactory(user__username="dana@example.com")
        page = self.client.get(reverse("sessions_app:user-mapping-list"))
        self.assertContains(
            page,
            '<span class="email">gus.<wbr>garage.<wbr>with.<wbr>a.<wbr>really.<wbr>'
            "long.<wbr>address<wbr>@example-fleet.<wbr>com</span>",
        )
        self.assertContains(page, '<span class="email">dana@example.com</span>')

    def test_staff_without_the_mapping_permissions_read_them_and_change_none(
        self,
    ) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="04A1B2")
        session = session_with_energy(kwh=Decimal("1"), ocpp_id_tag="UNMAPPED-1")
        self.client.force_login(StaffFactory(may_change_mappings=False))
        page = self.client.get(reverse("sessions_app:user-mapping-list"))
        self.assertContains(page, "04A1B2")
        self.assertContains(page, "Your account may read mappings but not change")
        for offered in ("New mapping", "Edit", "Deactivate", "Import from CSV"):
            self.assertNotContains(page, offered)
        detail = self.client.get(
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id])
        )
        self.assertContains(detail, "Unmapped")
        self.assertNotContains(detail, "Map this idTag")

        upload = SimpleUploadedFile("mappings.csv", b"steveOcppIdTag,email\nT1,a@b.c\n")
        for response, permissions in (
            (
                self.client.get(reverse("sessions_app:user-mapping-create")),
                "“Can add user mapping”",
            ),
            (
                self.client.get(
                    reverse("sessions_app:user-mapping-edit", args=[mapping.pk])
                ),
                "“Can change user mapping”",
            ),
            (
                self.client.post(
                    reverse("sessions_app:user-mapping-deactivate", args=[mapping.pk])
                ),
                "“Can change user mapping”",
            ),
            (
                self.client.post(
                    reverse("sessions_app:user-mapping-import"), {"file": upload}
                ),
                "“Can add user mapping” and “Can change user mapping”",
            ),
        ):
            self.assertContains(
                response, f"This needs the permission {permissions}", status_code=403
            )
        mapping.refresh_from_db()
        self.assertTrue(mapping.is_active)
        self.assertEqual(UserMapping.objects.count(), 1)
        self.assertFalse(AuditEntry.objects.exists())

    def test_an_import_refused_names_only_the_permission_missing(self) -> None:
        changer = StaffFactory(may_change_mappings=False)
        changer.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="sync", codename="change_usermapping"
            )
        )
        self.client.force_login(changer)
        upload = SimpleUploadedFile("mappings.csv", b"steveOcppIdTag,email\nT1,a@b.c\n")
        response = self.client.post(
            reverse("sessions_app:user-mapping-import"), {"file": upload}
        )
        self.assertContains(
            response,
            "This needs the permission “Can add user mapping”, which your account",
            status_code=403,
        )

    def test_search_finds_by_tag_label_and_email(self) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1B2", label="Blue van")
        UserMappingFactory(steve_ocpp_id_tag="99ZZ", label="Red car")
        url = reverse("sessions_app:user-mapping-list")
        self.assertContains(self.client.get(url, {"q": "a1b"}), "04A1B2")
        self.assertNotContains(self.client.get(url, {"q": "blue"}), "99ZZ")

    def test_a_list_cut_short_says_how_many_match_in_all(self) -> None:
        UserMappingFactory.create_batch(3, label="Fleet van")
        UserMappingFactory(label="Home")
        url = reverse("sessions_app:user-mapping-list")
        with mock.patch.object(user_mapping_selectors, "MAX_LISTED_MAPPINGS", 2):
            self.assertContains(
                self.client.get(url), "Showing the first 2 of 4; search to narrow"
            )
            self.assertContains(
                self.client.get(url, {"q": "van"}), "Showing the first 2 of 3;"
            )
            self.assertNotContains(self.client.get(url, {"q": "home"}), "Showing")

    def test_the_list_reads_in_a_fixed_number_of_queries(self) -> None:
        url = reverse("sessions_app:user-mapping-list")
        UserMappingFactory.create_batch(2)
        self.client.get(url)
        with CaptureQueriesContext(connection) as few:
            self.client.get(url)
        UserMappingFactory.create_batch(5)
        with CaptureQueriesContext(connection) as more:
            self.client.get(url)
        self.assertEqual(len(few), len(more))

    def test_act_as_buttons_name_their_customer_and_match_their_neighbours(
        self,
    ) -> None:
        mapping = UserMappingFactory(
            user=UserFactory(first_name="Ada", last_name="Lovelace")
        )
        UserMappingFactory(user=UserFactory(username="grace@example.com"))
        self.staff.is_superuser = True  # may act as customers
        self.staff.save()
        response = self.client.get(reverse("sessions_app:user-mapping-list"))
        for name in ("Ada Lovelace", "grace@example.com"):
            self.assertContains(
                response,
                f'Act as customer<span class="visually-hidden"> {name}</span>',
            )
        # Small in a table row; beside Resync now, the size of the page's buttons.
        self.assertContains(response, 'class="btn btn--sm btn--secondary"', count=2)
        session = TransactionSyncStateFactory(ocpp_id_tag=mapping.steve_ocpp_id_tag)
        detail = self.client.get(
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id])
        )
        self.assertContains(
            detail,
            'id="session-act-as" class="btn btn--secondary" type="submit" '
            'data-busy-label="Opening…">Act as',
        )
        # A deactivated customer cannot be acted as: no button leading to a 404.
        mapping.user.is_active = False
        mapping.user.save()
        detail = self.client.get(
            reverse("sessions_app:session-detail", args=[session.steve_transaction_id])
        )
        self.assertNotContains(detail, "Act as customer")

    def test_create_edit_and_deactivate_are_audited(self) -> None:
        customer = UserFactory(username="dana@example.com")
        response = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "04A1", "customer_email": "Dana@Example.com",
             "label": "Dana", "billing_customer_id": "cus_1", "is_active": "on"},
        )  # fmt: skip
        self.assertRedirects(response, reverse("sessions_app:user-mapping-list"))
        mapping = UserMapping.objects.get(steve_ocpp_id_tag="04A1")
        self.assertEqual(mapping.user, customer)
        self.client.post(
            reverse("sessions_app:user-mapping-edit", args=[mapping.pk]),
            {"steve_ocpp_id_tag": "04A1", "customer_email": "dana@example.com",
             "label": "Dana's car", "billing_customer_id": "cus_1", "is_active": "on"},
        )  # fmt: skip
        self.client.post(
            reverse("sessions_app:user-mapping-deactivate", args=[mapping.pk])
        )
        mapping.refresh_from_db()
        self.assertFalse(mapping.is_active)
        entries = list(AuditEntry.objects.order_by("id"))
        self.assertEqual(
            [e.action for e in entries],
            ["mapping.created", "mapping.updated", "mapping.deactivated"],
        )
        self.assertEqual(entries[1].before["label"], "Dana")
        self.assertEqual(entries[1].after["label"], "Dana's car")
        self.assertEqual({e.actor for e in entries}, {self.staff})

    def test_the_form_labels_read_like_the_rest_of_the_console(self) -> None:
        response = self.client.get(reverse("sessions_app:user-mapping-create"))
        self.assertContains(response, '<label for="id_steve_ocpp_id_tag">idTag</label>')
        self.assertContains(response, '<label for="id_customer_email">Customer email')
        self.assertNotContains(response, ":</label>")
        # The tag and whose it is first, then the rest.
        order = [
            response.content.decode().index(f'id="id_{name}"')
            for name in ("steve_ocpp_id_tag", "customer_email", "label", "is_active")
        ]
        self.assertEqual(order, sorted(order))

    def test_a_new_mapping_left_unticked_active_is_created_inactive(self) -> None:
        # The form offers the Active box on a new mapping too; an unticked box
        # (absent from the POST) must not come out active.
        customer = UserFactory(username="dana@example.com")
        response = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "04A1", "customer_email": customer.email},
        )
        self.assertRedirects(response, reverse("sessions_app:user-mapping-list"))
        mapping = UserMapping.objects.get(steve_ocpp_id_tag="04A1")
        self.assertFalse(mapping.is_active)
        self.assertIs(AuditEntry.objects.get().after["isActive"], False)

    def test_a_tag_too_long_for_steve_says_so(self) -> None:
        customer = UserFactory(username="dana@example.com")
        response = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "A" * 41, "customer_email": customer.email},
        )
        self.assertContains(
            response, "An idTag is at most 40 characters long; this one has 41."
        )
        self.assertFalse(UserMapping.objects.exists())

        # The field stops typing at the same limit, rather than at the column's.
        form = self.client.get(reverse("sessions_app:user-mapping-create"))
        self.assertContains(form, 'maxlength="40"')

    def test_edit_and_deactivate_lead_back_to_the_same_search(self) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="TAG-0011")
        listed = reverse("sessions_app:user-mapping-list") + "?q=TAG-0011"
        page = self.client.get(listed)
        back = "?next=%2Fadmin%2Fuser-mappings%2F%3Fq%3DTAG-0011"
        edit = reverse("sessions_app:user-mapping-edit", args=[mapping.pk]) + back
        deactivate = (
            reverse("sessions_app:user-mapping-deactivate", args=[mapping.pk]) + back
        )
        self.assertContains(page, f'href="{edit}"', count=2)
        self.assertContains(page, f'action="{deactivate}"')

        form = self.client.get(edit)
        self.assertContains(form, f'href="{listed}"')  # its Cancel
        saved = self.client.post(
            edit,
            {"steve_ocpp_id_tag": "TAG-0011", "customer_email": mapping.user.email,
             "label": "Van", "is_active": "on"},
        )  # fmt: skip
        self.assertRedirects(saved, listed)
        self.assertRedirects(self.client.post(deactivate), listed)
        mapping.refresh_from_db()
        self.assertEqual((mapping.label, mapping.is_active), ("Van", False))

    def test_a_card_in_two_spellings_left_by_an_old_version_can_be_resolved(
        self,
    ) -> None:
        # Migration 0026 stops on such pairs and says to rename and deactivate
        # one in the console; Deactivate answered 500 there (the model's
        # one-spelling constraint, asked though the tag did not change).
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX um_tag_upper_unique")
        UserMappingFactory(steve_ocpp_id_tag="TAG-0004")
        twin = UserMappingFactory(steve_ocpp_id_tag="tag-0004")
        deactivate = reverse("sessions_app:user-mapping-deactivate", args=[twin.pk])
        self.assertEqual(self.client.post(deactivate).status_code, 302)
        edit = reverse("sessions_app:user-mapping-edit", args=[twin.pk])
        renamed = self.client.post(
            edit,
            {"steve_ocpp_id_tag": "TAG-0004-old", "customer_email": twin.user.email},
        )
        self.assertEqual(renamed.status_code, 302)
        twin.refresh_from_db()
        self.assertEqual(
            (twin.steve_ocpp_id_tag, twin.is_active), ("TAG-0004-old", False)
        )

    def test_a_customer_whose_sign_in_name_is_no_address_keeps_their_card(
        self,
    ) -> None:
        # Renamed in Django admin, without an address: the card's other fields
        # can still be changed, and another value must still be an email.
        customer = UserFactory(username="tempuser", email="")
        mapping = UserMappingFactory(steve_ocpp_id_tag="TEMP-1", user=customer)
        edit = reverse("sessions_app:user-mapping-edit", args=[mapping.pk])
        form = self.client.get(edit)
        self.assertContains(form, 'type="text" name="customer_email" value="tempuser"')
        fields = {"steve_ocpp_id_tag": "TEMP-1", "is_active": "on"}
        refused = self.client.post(
            edit, {**fields, "customer_email": "otheruser", "label": "Van"}
        )
        self.assertContains(refused, "Enter a valid email address.")
        saved = self.client.post(
            edit, {**fields, "customer_email": "tempuser", "label": "Van"}
        )
        self.assertEqual(saved.status_code, 302)
        mapping.refresh_from_db()
        self.assertEqual((mapping.user, mapping.label), (customer, "Van"))

    def test_an_unknown_customer_email_is_a_form_error(self) -> None:
        response = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "04A1", "customer_email": "nobody@example.com"},
        )
        self.assertContains(response, "No customer account has this email")
        self.assertFalse(UserMapping.objects.exists())

    def test_a_new_customer_account_is_created_when_asked_for(self) -> None:
        form = {"steve_ocpp_id_tag": "04A1", "customer_email": "New@Example.com"}
        refused = self.client.post(reverse("sessions_app:user-mapping-create"), form)
        self.assertContains(refused, "tick “Create the customer&#x27;s account")
        self.assertFalse(UserMapping.objects.exists())

        created = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {**form, "create_customer": "on", "is_active": "on"},
        )
        self.assertRedirects(created, reverse("sessions_app:user-mapping-list"))
        mapping = UserMapping.objects.select_related("user").get()
        # In lower case, as an import makes it and the sign-in looks it up: the
        # customer signs in with the address however they type it.
        self.assertEqual(
            (mapping.user.username, mapping.user.email),
            ("new@example.com", "new@example.com"),
        )
        self.assertFalse(mapping.user.has_usable_password())
        mapping.user.set_password("a-long-password-1")
        mapping.user.save()
        self.assertTrue(
            self.client_class().login(
                username="NEW@example.com", password="a-long-password-1"
            )
        )
        self.assertEqual(AuditEntry.objects.get().action, "mapping.created")

        # Ticked for an email that has an account, it uses that account.
        self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "04A2", "customer_email": "new@example.com",
             "create_customer": "on"},
        )  # fmt: skip
        self.assertEqual(
            UserMapping.objects.get(steve_ocpp_id_tag="04A2").user, mapping.user
        )

    def test_an_account_made_since_the_form_looked_is_refused_in_words(self) -> None:
        # Two colleagues mapping cards to the same new email at once.
        account = new_customer_account("late@example.com")
        get_user_model().objects.create_user("late@example.com", "late@example.com")
        with self.assertRaisesMessage(
            ValidationError,
            "An account named late@example.com was created a moment ago, perhaps "
            "by a colleague: send the form again to map the tag to it.",
        ):
            user_mapping_create(
                actor=self.staff, steve_ocpp_id_tag="04A9", user=account
            )
        self.assertFalse(UserMapping.objects.exists())

    def test_a_refused_mapping_creates_no_account(self) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1")
        response = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "04A1", "customer_email": "new@example.com",
             "create_customer": "on"},
        )  # fmt: skip
        self.assertContains(response, "is already mapped to")
        self.assertFalse(User.objects.filter(username="new@example.com").exists())

    def test_a_tag_mapped_in_any_letter_case_is_a_form_error(self) -> None:
        holder = UserFactory(username="dana@example.com")
        UserMappingFactory(steve_ocpp_id_tag="04A1-X", user=holder)
        other = UserFactory()
        for tag in ("04A1-X", "04a1-x"):
            with self.subTest(tag=tag):
                response = self.client.post(
                    reverse("sessions_app:user-mapping-create"),
                    {"steve_ocpp_id_tag": tag, "customer_email": other.email},
                )
                self.assertContains(
                    response, "The idTag 04A1-X is already mapped to dana@example.com."
                )
        self.assertEqual(UserMapping.objects.count(), 1)

    def test_editing_a_mapping_keeps_its_own_tag_but_not_anothers(self) -> None:
        mine = UserMappingFactory(steve_ocpp_id_tag="TAG-MINE")
        UserMappingFactory(steve_ocpp_id_tag="TAG-THEIRS")
        url = reverse("sessions_app:user-mapping-edit", args=[mine.pk])
        form = {"customer_email": mine.user.email, "label": "Fleet", "is_active": "on"}
        kept = self.client.post(url, {**form, "steve_ocpp_id_tag": "tag-mine"})
        self.assertEqual(kept.status_code, 302)
        taken = self.client.post(url, {**form, "steve_ocpp_id_tag": "tag-theirs"})
        self.assertContains(taken, "The idTag TAG-THEIRS is already mapped")

    def test_the_edit_form_says_another_customer_gets_the_cards_history(
        self,
    ) -> None:
        # Sessions link to a card by its tag, whoever held it then.
        moved = "moves the card with its whole history"
        mapping = UserMappingFactory(steve_ocpp_id_tag="TAG-MINE")
        edit = reverse("sessions_app:user-mapping-edit", args=[mapping.pk])
        self.assertContains(self.client.get(edit), moved)
        create = reverse("sessions_app:user-mapping-create")
        self.assertNotContains(self.client.get(create), moved)

    def test_a_tag_typed_in_another_letter_case_links_its_sessions(self) -> None:
        # SteVe reports TAG-0012; sessions link to mappings by the exact tag.
        session = session_with_energy(kwh=Decimal("4"), ocpp_id_tag="TAG-0012")
        customer = UserFactory(username="dana@example.com")
        response = self.client.post(
            reverse("sessions_app:user-mapping-create"),
            {"steve_ocpp_id_tag": "tag-0012", "customer_email": customer.email,
             "label": "Dana's van", "is_active": "on"},
            follow=True,
        )  # fmt: skip
        self.assertContains(
            response,
            "Mapping for TAG-0012 created, in the letter case SteVe uses (you typed "
            "tag-0012), so its sessions link to it.",
        )
        self.assertEqual(UserMapping.objects.get().steve_ocpp_id_tag, "TAG-0012")
        sessions = self.client.get(reverse("sessions_app:session-list"))
        self.assertContains(sessions, "Dana&#x27;s van")
        self.assertNotContains(sessions, "Unmapped")
        found = self.client.get(reverse("sessions_app:session-list"), {"tag": "0012"})
        self.assertContains(found, "1 session matches current filters")
        self.assertContains(found, f"#{session.steve_transaction_id}")

    def test_a_tag_no_session_has_yet_is_kept_as_typed_and_says_so(self) -> None:
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0012")
        customer = UserFactory(username="dana@example.com")
        create = reverse("sessions_app:user-mapping-create")
        for tag, said in (
            ("tag-0099", "No session with this idTag has synced yet"),
            ("TAG-0012", "Mapping for TAG-0012 created."),
        ):
            with self.subTest(tag=tag):
                response = self.client.post(
                    create,
                    {"steve_ocpp_id_tag": tag, "customer_email": customer.email},
                    follow=True,
                )
                self.assertContains(response, said)
                self.assertTrue(UserMapping.objects.filter(steve_ocpp_id_tag=tag))
        self.assertNotContains(response, "No session with this idTag")

    def test_editing_a_tag_stores_it_as_steve_writes_it(self) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="tag-0012")
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0012")
        response = self.client.post(
            reverse("sessions_app:user-mapping-edit", args=[mapping.pk]),
            {"steve_ocpp_id_tag": "tag-0012", "customer_email": mapping.user.email,
             "label": mapping.label, "is_active": "on"},
            follow=True,
        )  # fmt: skip
        self.assertContains(response, "Mapping for TAG-0012 saved, in the letter case")
        mapping.refresh_from_db()
        self.assertEqual(mapping.steve_ocpp_id_tag, "TAG-0012")
        entry = AuditEntry.objects.get()
        self.assertEqual(
            (entry.before["steveOcppIdTag"], entry.after["steveOcppIdTag"]),
            ("tag-0012", "TAG-0012"),
        )

    def test_csv_import_stores_tags_as_steve_writes_them_and_says_so(self) -> None:
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0012")
        TransactionSyncStateFactory(ocpp_id_tag="Fleet-7")
        legacy = UserMappingFactory(steve_ocpp_id_tag="fleet-7")
        response = self.import_csv(
            b"steveOcppIdTag,email,label\ntag-0012,new@example.com,New\n"
            b"tag-0099,new@example.com,Spare\n"
            + f"FLEET-7,{legacy.user.email},{legacy.label}\n".encode(),
        )
        self.assertContains(
            response,
            "Import done: 2 created, 1 updated, 0 unchanged, 0 skipped; 1 customer "
            "account created. 2 idTags "
            "were stored in the letter case SteVe uses, not the file&#x27;s. No "
            "session with 1 of the new idTags has synced yet; the sync stores it "
            "in SteVe&#x27;s letter case with the first one.",
        )
        self.assertEqual(
            set(UserMapping.objects.values_list("steve_ocpp_id_tag", flat=True)),
            {"TAG-0012", "tag-0099", "Fleet-7"},
        )

    def test_csv_import_says_when_an_unchanged_rows_tag_is_stored_otherwise(
        self,
    ) -> None:
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0002")
        mapping = UserMappingFactory(steve_ocpp_id_tag="TAG-0002", label="Van")
        response = self.import_csv(
            b"steveOcppIdTag,email,label\n"
            + f"tag-0002,{mapping.user.email},Van\n".encode()
            + b"TAG-0777,new@example.com,New\n",
        )
        self.assertContains(
            response,
            "Import done: 1 created, 0 updated, 1 unchanged, 0 skipped; 1 customer "
            "account created. 1 idTag was stored in the letter case SteVe uses, not "
            "the file&#x27;s. No session with 1 of the new idTags has synced yet;",
        )

    def test_csv_import_goes_through_the_same_service(self) -> None:
        response = self.import_csv(
            b"steveOcppIdTag,email,label\n"
            b"TAG-1,new@example.com,New\n"
            b"bad tag,x@example.com,\n",
        )
        self.assertContains(response, "1 created, 0 updated, 0 unchanged, 1 skipped")
        self.assertContains(response, "The skipped lines are listed below.")
        self.assertContains(
            response,
            '<tr><td class="num tabular">3</td><td>An idTag is 1 to 40',
        )
        # Once: the next visit of the page has no report.
        again = self.client.get(reverse("sessions_app:user-mapping-list"))
        self.assertNotContains(again, "Skipped lines of the import")
        self.assertTrue(UserMapping.objects.filter(steve_ocpp_id_tag="TAG-1").exists())
        self.assertEqual(AuditEntry.objects.get().source, "import")

    def test_csv_import_says_which_accounts_it_created_and_reuses_known_ones(
        self,
    ) -> None:
        # An account is found by its address as well as its username, as the
        # New-mapping form finds it.
        admin = UserFactory(username="admin", email="Admin@Example.com")
        response = self.import_csv(
            b"steveOcppIdTag,email,label\nX,admin@example.com,x\n"
            b"Y,new@example.com,y\nZ,other@example.com,z\n",
        )
        self.assertContains(
            response,
            "Import done: 3 created, 0 updated, 0 unchanged, 0 skipped; 2 customer "
            "accounts created.",
        )
        self.assertEqual(UserMapping.objects.get(steve_ocpp_id_tag="X").user, admin)
        self.assertFalse(
            get_user_model().objects.filter(username="admin@example.com").exists()
        )

    def test_csv_import_of_a_header_without_rows_says_there_were_none(self) -> None:
        response = self.import_csv(b"steveOcppIdTag,email,label\r\n\r\n")
        summary = next(iter(response.context["messages"]))
        self.assertEqual(
            summary.message,
            "The file has no rows under its header, so nothing was imported.",
        )
        self.assertEqual(summary.level_tag, "warning")

    def test_csv_import_names_the_line_that_is_not_utf8_and_imports_nothing(
        self,
    ) -> None:
        response = self.import_csv(
            b"steveOcppIdTag,email,label\n"
            b"TAG-1,new@example.com,New\n"
            + "TAG-2,new@example.com,Café\n".encode("latin-1"),
        )
        # The command's sentence (sync/tests/test_import_user_mappings.py).
        self.assertContains(
            response,
            "Line 3 is not UTF-8 text (byte 0xe9), so nothing was imported: save "
            "the file as UTF-8 (&quot;CSV UTF-8&quot; in a spreadsheet) and import "
            "it again.",
        )
        self.assertFalse(UserMapping.objects.exists())

    def test_csv_import_with_rejected_lines_is_a_warning_not_a_success(self) -> None:
        # As the command styles its summary: green would say all went well.
        response = self.import_csv(
            b"steveOcppIdTag,email,label\nTAG-1,new@example.com,\nbad tag,x@x.com,\n",
        )
        summary = next(iter(response.context["messages"]))
        self.assertIn("1 created", summary.message)
        self.assertEqual(summary.level_tag, "warning")
        response = self.import_csv(
            b"steveOcppIdTag,email,label\nTAG-2,new@example.com,\n"
        )
        self.assertEqual(next(iter(response.context["messages"])).level_tag, "success")

    def test_csv_import_of_an_empty_file_asks_for_the_header(self) -> None:
        # The person did choose a file: "Choose a CSV file" would send them looking
        # for a step they took. The command says the same for an empty file.
        response = self.import_csv(b"")
        self.assertContains(
            response,
            "The first line must be the header steveOcppIdTag,email,label; the file "
            "is empty.",
        )
        self.assertNotContains(response, "Choose a CSV file to import.")

    def test_csv_import_without_a_file_asks_for_one(self) -> None:
        response = self.client.post(
            reverse("sessions_app:user-mapping-import"), {}, follow=True
        )
        self.assertContains(response, "Choose a CSV file to import.")

    def test_csv_import_takes_a_file_up_to_the_size_limit_and_refuses_more(
        self,
    ) -> None:
        # Padded with a line of spaces, which the import skips as blank: the
        # limit is on the file's bytes, before a line of it is read.
        row = b"steveOcppIdTag,email,label\nTAG-1,new@example.com,New\n"
        at_limit = row + b" " * (MAPPING_IMPORT_MAX_BYTES - len(row) - 1) + b"\n"
        self.assertEqual(len(at_limit), MAPPING_IMPORT_MAX_BYTES)
        response = self.import_csv(at_limit + b"\n")
        self.assertContains(
            response,
            "This file is just over 1 MB; the console imports files of up to 1 MB, "
            "so nothing was imported. Split it into smaller files, or import it on "
            "the server with manage.py import_user_mappings FILE.csv, which takes "
            "files of any size.",
        )
        response = self.import_csv(at_limit + b" " * MAPPING_IMPORT_MAX_BYTES)
        self.assertContains(response, "This file is 2.0 MB; the console imports")
        self.assertFalse(UserMapping.objects.exists())
        self.assertFalse(AuditEntry.objects.exists())
        response = self.import_csv(at_limit)
        self.assertContains(response, "Import done: 1 created, 0 updated")
        self.assertContains(
            response,
            "Up to 1 MB; import a bigger file on the server with manage.py "
            "import_user_mappings FILE.csv.",
        )

    def test_csv_import_says_how_many_rejected_lines_it_did_not_list(self) -> None:
        rows = "".join(f"bad tag {n},x{n}@example.com,\n" for n in range(105))
        response = self.import_csv(f"steveOcppIdTag,email,label\n{rows}".encode())
        self.assertContains(response, '<td class="num tabular">101</td>')
        self.assertNotContains(response, '<td class="num tabular">102</td>')
        self.assertContains(
            response,
            "5 more lines were skipped (lines 102 to 106); fix the lines above and "
            "import the file again to see them.",
        )


# One prefix per test process: parallel workers share Redis, and each would read
# the other's events on the same channel.
@override_settings(LIVE_CHANNEL_PREFIX=f"test-console-live-{uuid.uuid4().hex[:8]}-")
class ConsoleLiveUpdateTests(ConsoleTestCase):
    """The sync's signals become staff-channel events rendered from the partials.

    Events are read back from the Redis event storage that serves Last-Event-ID
    replays, which is exactly what a reconnecting browser would receive.
    """

    def setUp(self) -> None:
        super().setUp()
        self.storage = get_storage()
        self.channel = live.staff_channel()
        self.last_id = self.storage.get_current_id(self.channel)

    def published(self) -> list[tuple[str, str]]:
        events = self.storage.get_events(self.channel, self.last_id)
        return [(event.type, event.data) for event in events]

    def test_changed_sessions_tick_the_banner_and_refresh_the_stat_strip(
        self,
    ) -> None:
        session = session_with_energy(kwh=Decimal("4.2"))
        run = SyncRunFactory(created_count=1, updated_count=2)
        sessions_changed.send(sender=SyncRun, run=run, transaction_ids=[session.pk])
        ((event_type, html),) = self.published()
        self.assertEqual(event_type, "sessions-updated")
        self.assertIn("3 sessions updated at <time", html)
        self.assertIn(f">{clock_time(run.finished_at)}</time>", html)
        self.assertRegex(html, r'id="stat-strip"[^>]*hx-swap-oob="true"')
        self.assertIn("4.2<span", html)

    def test_the_event_names_the_sessions_it_changed_unless_there_are_many(
        self,
    ) -> None:
        run = SyncRunFactory(created_count=600)
        sessions_changed.send(sender=SyncRun, run=run, transaction_ids=[7, 9])
        sessions_changed.send(
            sender=SyncRun, run=run, transaction_ids=list(range(1, 601))
        )
        few, many = (html for _, html in self.published())
        self.assertIn('<template data-changed-sessions="7 9"></template>', few)
        # Every open detail page re-reads itself instead.
        self.assertNotIn("data-changed-sessions", many)

    def test_every_finished_run_has_the_sync_runs_table_re_read(self) -> None:
        run = SyncRunFactory(error="SteVe failed with HTTP 503.", status="failed")
        run_finished.send(sender=SyncRun, run=run)
        # It names the run, not the table every console tab would download.
        (event_type, data), *_ = self.published()
        self.assertEqual((event_type, data), ("sync-runs-updated", str(run.pk)))

    def test_a_run_shows_on_the_sync_runs_table_from_its_start(self) -> None:
        # A run SteVe keeps waiting would otherwise be missing there until it
        # ends, while Run sync now says one is in progress.
        run = start_run(SyncRun.Kind.TRANSACTIONS, SyncRun.Trigger.BEAT, dry_run=False)
        ((event_type, data),) = self.published()
        self.assertEqual((event_type, data), ("sync-runs-updated", str(run.pk)))
        table = self.client.get("/admin/sync-runs/", headers={"HX-Request": "true"})
        self.assertContains(table, f"#{run.pk}")
        self.assertContains(table, "badge--running")

    def banner_events(self) -> list[str]:
        return [html for type_, html in self.published() if type_ == "sync-failing"]

    def test_the_banner_says_when_syncs_fail_and_when_they_work_again(self) -> None:
        # The last run that changed sessions, then runs that changed nothing.
        SyncRunFactory(created_count=2)
        failed = SyncRunFactory(
            status="failed", error="SteVe refused Polaris's credentials (HTTP 401)."
        )
        run_finished.send(sender=SyncRun, run=failed)
        (html,) = self.banner_events()
        self.assertIn("2 sessions updated at", html)
        self.assertIn("Sync failing</span> The latest sync run failed at <time", html)
        self.assertIn("SteVe refused Polaris&#x27;s credentials (HTTP 401).", html)
        page = self.client.get(reverse("sessions_app:session-list"))
        self.assertContains(page, "Sync failing")

        self.last_id = self.storage.get_current_id(self.channel)
        recovered = SyncRunFactory()
        run_finished.send(sender=SyncRun, run=recovered)
        (html,) = self.banner_events()
        self.assertIn("2 sessions updated at", html)
        self.assertNotIn("Sync failing", html)
        page = self.client.get(reverse("sessions_app:session-list"))
        self.assertNotContains(page, "Sync failing")

        # A run like the one before it changes nothing the banner says.
        self.last_id = self.storage.get_current_id(self.channel)
        run_finished.send(sender=SyncRun, run=SyncRunFactory())
        self.assertEqual(self.banner_events(), [])

    def test_a_run_that_changed_nothing_has_active_sessions_re_read(self) -> None:
        # It moved their Last synced: a page showing the time before would say
        # a working sync was late.
        def read_events() -> list[str]:
            return [
                data for type_, data in self.published() if type_ == "sessions-read"
            ]

        run_finished.send(sender=SyncRun, run=SyncRunFactory())
        self.assertEqual(read_events(), [])  # no active session to re-read
        active = TransactionSyncStateFactory(is_finalized=False)
        done = TransactionSyncStateFactory(is_finalized=True)
        self.last_id = self.storage.get_current_id(self.channel)
        quiet = SyncRunFactory()
        run_finished.send(sender=SyncRun, run=quiet)
        self.assertEqual(read_events(), [str(quiet.pk)])
        # A run that changed sessions has them re-read by its sessions_changed;
        # a failed one read nothing (its sync-failing has the pages re-read).
        for other in (SyncRunFactory(updated_count=1), SyncRunFactory(status="failed")):
            self.last_id = self.storage.get_current_id(self.channel)
            run_finished.send(sender=SyncRun, run=other)
            self.assertEqual(read_events(), [])
        listing = self.client.get(reverse("sessions_app:session-list"))
        self.assertContains(listing, "sse:sessions-read")
        detail = "sessions_app:session-detail"
        for session, listens in ((active, True), (done, False)):
            page = self.client.get(reverse(detail, args=[session.steve_transaction_id]))
            self.assertEqual("sse:sessions-read" in page.content.decode(), listens)

    def test_the_re_read_table_has_the_note_of_the_page(self) -> None:
        def re_read() -> HttpResponse:
            return self.client.get("/admin/sync-runs/", headers={"HX-Request": "true"})

        SyncRunFactory.create_batch(3)
        self.assertContains(re_read(), "Showing all 3 runs.")
        SyncRunFactory.create_batch(selectors.SYNC_RUNS_SHOWN)
        self.assertContains(
            re_read(), "runs that changed nothing are deleted after 30 days."
        )


class ApiTokenPageTests(ConsoleTestCase):
    url = reverse("sessions_app:api-token-list")

    def test_create_shows_the_token_once_and_it_authenticates(self) -> None:
        response = self.client.post(self.url, {"name": "billing export"}, follow=True)
        raw = response.context["new_token"]
        self.assertContains(response, raw)
        self.assertNotContains(self.client.get(self.url), raw)
        api = Client().get(
            "/api/v1/sessions", headers={"Authorization": f"Bearer {raw}"}
        )
        self.assertEqual(api.status_code, 200)

    def test_it_promises_starting_for_customers_only_with_the_permission(
        self,
    ) -> None:
        # Without it, the API answers a start for someone else with a 403.
        self.assertContains(
            self.client.get(self.url),
            "starting and stopping customers' sessions takes the permission "
            "“Can start and stop any customer's API sessions”",
        )
        self.staff.user_permissions.add(
            Permission.objects.get(codename="manage_any_session")
        )
        self.assertContains(
            self.client.get(self.url),
            "A staff token sees every session and may start and stop sessions for "
            "customers.",
        )

    def test_the_list_reads_in_a_fixed_number_of_queries(self) -> None:
        api_token_create(user=self.staff, name="first")
        self.client.get(self.url)
        with CaptureQueriesContext(connection) as few:
            self.client.get(self.url)
        for number in range(4):
            api_token_create(user=self.staff, name=f"more {number}")
        with CaptureQueriesContext(connection) as more:
            response = self.client.get(self.url)
        self.assertContains(response, "more 3")
        self.assertEqual(len(few), len(more))

    def test_revoke_stops_the_token(self) -> None:
        response = self.client.post(self.url, {"name": "x"}, follow=True)
        raw = response.context["new_token"]
        token = self.staff.api_tokens.get()
        self.client.post(reverse("sessions_app:api-token-revoke", args=[token.pk]))
        api = self.client.get(
            "/api/v1/sessions", headers={"Authorization": f"Bearer {raw}"}
        )
        self.assertEqual(api.status_code, 401)

    def test_nobody_revokes_another_persons_token(self) -> None:
        other = StaffFactory()
        self.client.force_login(other)
        self.client.post(self.url, {"name": "mine"})
        token = other.api_tokens.get()
        self.client.force_login(self.staff)
        response = self.client.post(
            reverse("sessions_app:api-token-revoke", args=[token.pk])
        )
        self.assertEqual(response.status_code, 404)
