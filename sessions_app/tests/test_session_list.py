"""The Charging Sessions page (`/admin/sessions/`) and its CSV export."""

import csv
import io
import re
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest.mock import patch
from zoneinfo import ZoneInfo

import time_machine
from django.db import connection
from django.test import Client, TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bench.asgi import AsgiClient
from polaris import handlers
from sessions_app.tests.base import ConsoleTestCase
from sync.models import SyncRun, TransactionSyncState
from sync.tests.factories import (
    StaffFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)

BERLIN = ZoneInfo("Europe/Berlin")
URL = reverse("sessions_app:session-list")


def row_ids(html: str) -> list[int]:
    """SteVe transaction ids of the table rows, in page order."""
    links = re.findall(r'table__primary mono" href="/admin/sessions/(\d+)/"', html)
    return [int(pk) for pk in links]


class SessionListAccessTests(TestCase):
    def test_anonymous_people_are_sent_to_sign_in(self) -> None:
        response = self.client.get(URL)
        self.assertRedirects(
            response, f"/accounts/login/?next={URL}", fetch_redirect_response=False
        )

    def test_customers_are_refused(self) -> None:
        self.client.force_login(UserFactory())
        response = self.client.get(URL)
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith("/accounts/login/"))

    def test_htmx_after_the_sign_in_ended_sends_the_tab_to_sign_in(self) -> None:
        # A filter, Load more or live re-read from a tab whose session expired:
        # htmx would follow a plain redirect and swap the sign-in page into the
        # table. HX-Redirect takes the whole tab there, back to the page it shows.
        page = "http://testserver/admin/sessions/?tag=04a1"
        for client in (self.client, self.customer_client()):
            response = client.get(
                URL,
                {"rows": "15", "cursor": "1-1"},
                headers={"HX-Request": "true", "HX-Current-URL": page},
            )
            self.assertEqual(
                response["HX-Redirect"],
                "/accounts/login/?next=/admin/sessions/%3Ftag%3D04a1",
            )
            self.assertNotContains(response, "session-tbody")
        # Going Back to the page is a whole page: the ordinary redirect.
        response = self.client.get(
            URL, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
        )
        self.assertRedirects(
            response, f"/accounts/login/?next={URL}", fetch_redirect_response=False
        )

    def customer_client(self) -> Client:
        client = Client()
        client.force_login(UserFactory())
        return client


class SessionListTests(ConsoleTestCase):
    def test_it_says_no_sync_has_completed_on_a_fresh_environment(self) -> None:
        response = self.client.get(URL)
        self.assertContains(response, "No sync has completed yet")
        self.assertContains(response, reverse("sessions_app:sync-run-list"))
        self.assertContains(response, "0 sessions match current filters")

    def test_runs_that_failed_are_not_a_completed_sync(self) -> None:
        # They never read SteVe: "found no transactions" would be untrue.
        SyncRunFactory(status=SyncRun.Status.FAILED, error="SteVe cannot be reached")
        SyncRunFactory(kind=SyncRun.Kind.CHARGERS)
        response = self.client.get(URL)
        self.assertContains(response, "No sync has completed yet")
        self.assertNotContains(response, "No sessions yet")

    def test_it_says_no_sessions_yet_when_syncs_found_none(self) -> None:
        SyncRunFactory()
        response = self.client.get(URL)
        self.assertContains(response, "No sessions yet")
        self.assertNotContains(response, "No sync has completed yet")
        self.assertNotContains(response, "No session matches these filters")
        response = self.client.get(URL, {"status": "active"})
        self.assertContains(response, "No session matches these filters")

    def test_a_session_whose_meter_misread_is_marked_in_its_row(self) -> None:
        # README: the flag asks a person to look; the table is where they look.
        TransactionSyncStateFactory(meter_reset_seen=True, is_finalized=True)
        TransactionSyncStateFactory(is_finalized=True)
        html = self.client.get(URL).content.decode()
        self.assertEqual(
            html.count('<span class="badge badge--warning">Meter reset</span>'), 1
        )

    def test_it_shows_the_15_most_recently_updated_sessions(self) -> None:
        now = datetime(2026, 11, 21, 12, 0, tzinfo=BERLIN)
        sessions = [
            TransactionSyncStateFactory(updated_at=now - timedelta(minutes=i))
            for i in range(20)
        ]
        # Ties on updatedAt are broken by the SteVe transaction id, newest first.
        tied = TransactionSyncStateFactory(updated_at=sessions[0].updated_at)
        SyncRunFactory()
        response = self.client.get(URL)
        expected = [tied.steve_transaction_id] + [
            s.steve_transaction_id for s in sessions[:14]
        ]
        self.assertEqual(row_ids(response.content.decode()), expected)
        self.assertContains(response, "21 sessions match current filters")
        self.assertContains(response, "Load more")

    def test_the_pause_control_is_hidden_until_script_makes_it_work(self) -> None:
        # Without JavaScript nothing updates by itself, so there is nothing to pause.
        self.assertRegex(
            self.client.get(URL).content.decode(),
            r'<button id="live-pause" [^>]*type="button"[^>]* hidden>'
            r"Pause live updates</button>",
        )

    @override_settings(TIME_ZONE="UTC")
    @time_machine.travel(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=False)
    def test_last_synced_is_a_time_not_a_phrase_that_freezes(self) -> None:
        # "2 seconds ago" stays on a page left open; a time does not lie.
        now = timezone.now()
        TransactionSyncStateFactory(is_finalized=True, last_synced_at=now)
        TransactionSyncStateFactory(
            is_finalized=True, last_synced_at=now - timedelta(days=3, minutes=5)
        )
        body = self.client.get(URL).content.decode()
        self.assertIn(
            'title="Mar 2, 2026, 12:00:00 UTC" data-age>12:00:00</time>', body
        )
        self.assertIn(
            'title="Feb 27, 2026, 11:55:00 UTC" data-age>Feb 27, 11:55</time>', body
        )
        self.assertNotIn("ago", body)

    def test_the_header_is_singular_for_one_session(self) -> None:
        TransactionSyncStateFactory()
        self.assertContains(self.client.get(URL), "1 session matches current filters")

    @override_settings(USE_THOUSAND_SEPARATOR=True)
    def test_transaction_numbers_and_row_ids_are_never_grouped(self) -> None:
        session = TransactionSyncStateFactory(pk=20001, steve_transaction_id=1234567)
        body = self.client.get(URL).content.decode()
        self.assertIn('id="session-20001"', body)
        self.assertIn(">#1234567</a>", body)
        self.assertEqual(row_ids(body), [session.steve_transaction_id])
        self.assertNotIn("1,234,567", body)
        self.assertNotIn("20,001", body)

    def test_a_get_issues_only_selects_in_a_fixed_number_of_queries(self) -> None:
        for _ in range(30):
            session_with_energy(kwh=Decimal("2.5"), ocpp_id_tag="TAG-0001")
        UserMappingFactory(steve_ocpp_id_tag="TAG-0001")
        SyncRunFactory()
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(URL, {"tag": "tag-0"})
        self.assertEqual(response.status_code, 200)
        statements = [q["sql"].lstrip().split()[0].upper() for q in queries]
        self.assertEqual(set(statements), {"SELECT"}, statements)
        # Session, user, rows, count, stats, 2 freshness, and (staff without
        # superuser status) 2 permission reads for the Django admin link: none
        # per row.
        self.assertEqual(len(queries), 9, "\n".join(q["sql"] for q in queries))


class SessionFilterTests(ConsoleTestCase):
    def test_status_active_and_completed(self) -> None:
        active = TransactionSyncStateFactory(is_finalized=False)
        done = TransactionSyncStateFactory(is_finalized=True)
        self.assertEqual(
            row_ids(self.client.get(URL, {"status": "active"}).content.decode()),
            [active.steve_transaction_id],
        )
        self.assertEqual(
            row_ids(self.client.get(URL, {"status": "completed"}).content.decode()),
            [done.steve_transaction_id],
        )

    def test_an_unknown_status_falls_back_to_all(self) -> None:
        TransactionSyncStateFactory(is_finalized=False)
        TransactionSyncStateFactory(is_finalized=True)
        response = self.client.get(URL, {"status": "ACTIVE'; DROP TABLE"})
        self.assertContains(response, "2 sessions match current filters")
        self.assertContains(response, "showing all")
        # The values are all, active and completed as written; any other is all.
        for other in ("ACTIVE", "Completed", " active"):
            response = self.client.get(URL, {"status": other})
            self.assertContains(response, "2 sessions match current filters")
            self.assertContains(response, "is not all, active or completed")

    @override_settings(TIME_ZONE="Europe/Berlin")
    def test_dates_filter_updated_at_and_to_includes_its_whole_day(self) -> None:
        day = datetime(2026, 11, 20, tzinfo=BERLIN)
        last_second = day + timedelta(hours=23, minutes=59, seconds=59)
        inside = [
            TransactionSyncStateFactory(updated_at=day),
            TransactionSyncStateFactory(updated_at=last_second),
        ]
        TransactionSyncStateFactory(updated_at=day - timedelta(microseconds=1))
        TransactionSyncStateFactory(updated_at=day + timedelta(days=1))
        # Started long before the window: the filter is on updatedAt, not start.
        inside[0].started_at = day - timedelta(days=30)
        inside[0].save()
        response = self.client.get(URL, {"from": "2026-11-20", "to": "2026-11-20"})
        self.assertEqual(
            sorted(row_ids(response.content.decode())),
            sorted(s.steve_transaction_id for s in inside),
        )

    @override_settings(TIME_ZONE="America/Santiago")
    def test_to_keeps_a_last_hour_that_happens_twice(self) -> None:
        # Chile leaves summer time at midnight on 2026-04-04: 23:00-23:59 happens
        # first at UTC-3, then again at UTC-4, and both belong to the 4th.
        first_pass = TransactionSyncStateFactory(
            updated_at=datetime(2026, 4, 5, 2, 30, tzinfo=UTC)
        )
        second_pass = TransactionSyncStateFactory(
            updated_at=datetime(2026, 4, 5, 3, 30, tzinfo=UTC)
        )
        next_day = TransactionSyncStateFactory(
            updated_at=datetime(2026, 4, 5, 4, 0, tzinfo=UTC)
        )
        response = self.client.get(URL, {"to": "2026-04-04"})
        self.assertEqual(
            row_ids(response.content.decode()),
            [second_pass.steve_transaction_id, first_pass.steve_transaction_id],
        )
        self.assertContains(response, "2 sessions match current filters")
        response = self.client.get(URL, {"from": "2026-04-05", "to": "2026-04-05"})
        self.assertEqual(
            row_ids(response.content.decode()), [next_day.steve_transaction_id]
        )
        self.assertContains(response, "1 session matches current filters")

    def test_an_invalid_date_is_ignored_with_a_visible_note(self) -> None:
        TransactionSyncStateFactory()
        response = self.client.get(URL, {"from": "2026-13-45", "to": "yesterday"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "From date “2026-13-45” is not a date")
        self.assertContains(response, "To date “yesterday” is not a date")
        self.assertContains(response, "1 session matches current filters")

    def test_tag_is_a_case_insensitive_substring_of_mapped_tags_counted_once(
        self,
    ) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1B2C3")
        matching = session_with_energy(kwh=Decimal("3"), ocpp_id_tag="04A1B2C3")
        session_with_energy(kwh=Decimal("3"), ocpp_id_tag="UNMAPPED-A1B2")
        response = self.client.get(URL, {"tag": "a1b2"})
        # The matching session has two events through that tag; it counts once.
        self.assertContains(response, "1 session matches current filters")
        self.assertEqual(
            row_ids(response.content.decode()), [matching.steve_transaction_id]
        )

    def test_a_tag_only_on_unmapped_cards_says_the_filter_reads_mapped_tags(
        self,
    ) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1B2C3")
        session_with_energy(kwh=Decimal("3"), ocpp_id_tag="UNMAPPED-77F0")
        said = "The Tag filter searches mapped idTags only, and “77f0” appears only"
        response = self.client.get(URL, {"tag": "77f0"})
        self.assertContains(response, "0 sessions match current filters")
        self.assertContains(response, said)
        self.assertContains(response, reverse("sessions_app:user-mapping-list"))
        # Text on no card, or on a mapped one the other filters leave out: the
        # usual advice.
        for query in ({"tag": "zz9"}, {"tag": "a1b2", "status": "active"}):
            with self.subTest(query=query):
                response = self.client.get(URL, query)
                self.assertContains(response, "Remove a filter above")
                self.assertNotContains(response, "mapped idTags only")

    def test_the_live_re_read_keeps_the_unmapped_hint_without_scanning(
        self,
    ) -> None:
        # The answer needs a scan of every session's idTag: the table's re-read
        # after each sync carries what the page showed instead.
        session_with_energy(kwh=Decimal("3"), ocpp_id_tag="UNMAPPED-77F0")
        page = self.client.get(URL, {"tag": "77f0"}).content.decode()
        self.assertIn("""hx-vals='{"tag_hint": "unmapped"}'""", page)
        live = {"HX-Request": "true", "HX-Trigger": "session-results"}
        scan = '"transaction_sync_state"."ocppIdTag"::text) LIKE'
        with CaptureQueriesContext(connection) as queries:
            self.client.get(URL, {"tag": "77f0"})
        self.assertTrue([q for q in queries if scan in q["sql"]])
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(
                URL, {"tag": "77f0", "tag_hint": "unmapped"}, headers=live
            )
        self.assertContains(response, "mapped idTags only")
        self.assertFalse([q for q in queries if scan in q["sql"]])
        response = self.client.get(URL, {"tag": "77f0"}, headers=live)
        self.assertContains(response, "Remove a filter above")

    def test_the_date_filters_name_the_time_zone_of_their_days(self) -> None:
        with override_settings(TIME_ZONE="Europe/Berlin"):
            response = self.client.get(URL)
        self.assertContains(
            response,
            '<span class="field__help" id="dates-help">Last update; days in '
            "Europe/Berlin, as for “Sessions today”.</span>",
        )
        self.assertContains(response, 'aria-describedby="dates-help"', count=2)

    def test_a_tag_over_the_limit_is_shortened_with_a_visible_note(self) -> None:
        UserMappingFactory(steve_ocpp_id_tag="04A1B2C3")
        session_with_energy(kwh=Decimal("1"), ocpp_id_tag="04A1B2C3")
        response = self.client.get(URL, {"tag": "a1b2" + "x" * 200})
        self.assertContains(response, "Tag is longer than 100 characters")
        self.assertEqual(response.context["filters"].tag, "a1b2" + "x" * 96)

    def test_the_console_root_opens_charging_sessions(self) -> None:
        self.assertRedirects(self.client.get("/admin/"), URL)

    def test_chips_show_each_filter_with_a_remove_link_keeping_the_others(self) -> None:
        response = self.client.get(URL, {"status": "active", "tag": "04A"})
        html = response.content.decode()
        self.assertIn('aria-label="Remove filter Status Active"', html)
        self.assertIn(f'href="{URL}?tag=04A"', html)
        self.assertIn(f'href="{URL}?status=active"', html)
        self.assertIn('value="04A"', html)

    def test_chips_write_statuses_and_dates_as_the_page_does(self) -> None:
        response = self.client.get(
            URL, {"status": "completed", "from": "2026-12-01", "to": "2026-12-07"}
        )
        chips = [
            " ".join(chip.split())
            for chip in re.findall(
                r'<span class="chip">(.*?)<a ', response.content.decode(), re.S
            )
        ]
        self.assertEqual(
            [re.sub(r"<[^>]+>", "", chip) for chip in chips],
            ["Status: Completed", "From: Dec 1, 2026", "To: Dec 7, 2026"],
        )
        # The addresses keep the values as typed.
        self.assertIn("status=completed&amp;from=2026-12-01", response.content.decode())


class SessionStatStripTests(ConsoleTestCase):
    @override_settings(TIME_ZONE="Europe/Berlin")
    def test_the_stat_strip_covers_the_whole_dataset(self) -> None:
        now = datetime(2026, 11, 21, 9, 0, tzinfo=BERLIN)
        with time_machine.travel(now, tick=False):
            # Updated after local midnight, one of them still active.
            hours = timedelta(hours=1)
            days = timedelta(days=1)
            session_with_energy(
                kwh=Decimal("10"), is_finalized=False, updated_at=now - 8 * hours,
                started_at=now - 9 * hours, reading_at=now - 8 * hours,
            )  # fmt: skip
            session_with_energy(
                kwh=Decimal("5"), is_finalized=True, updated_at=now - hours,
                started_at=now - 6 * days - hours, reading_at=now - 6 * days,
            )  # fmt: skip
            # Updated at 23:59 yesterday (Berlin): not today; energy 8 days ago.
            session_with_energy(
                kwh=Decimal("7"), is_finalized=True,
                updated_at=now - 9 * hours - timedelta(minutes=1),
                started_at=now - 8 * days - hours, reading_at=now - 8 * days,
            )  # fmt: skip
            response = self.client.get(URL, {"status": "completed"})
        stats = response.context["stats"]
        self.assertEqual(stats.sessions_today, 2)
        self.assertEqual(stats.kwh_7d, Decimal("15.000"))
        self.assertEqual(stats.active_now, 1)
        self.assertEqual(stats.avg_kwh_7d, Decimal("7.50"))
        html = response.content.decode()
        labels = ["Sessions today", "kWh delivered (7d)", "Active now"]
        for label in [*labels, "Avg kWh / session (7d)"]:
            self.assertIn(label, html)

    @override_settings(TIME_ZONE="Europe/Berlin")
    def test_sessions_today_start_at_the_operators_midnight_not_utcs(self) -> None:
        # 00:30 in Berlin is still yesterday in UTC: yesterday's sessions are not
        # today's for the hour (two in summer) before UTC's midnight.
        now = datetime(2026, 11, 21, 0, 30, tzinfo=BERLIN)
        TransactionSyncStateFactory(updated_at=now - timedelta(hours=12))
        TransactionSyncStateFactory(updated_at=now - timedelta(minutes=15))
        with time_machine.travel(now, tick=False):
            response = self.client.get(URL)
        self.assertEqual(response.context["stats"].sessions_today, 1)

    def test_the_7_day_energy_counts_to_the_minute_not_the_quarter_hour(self) -> None:
        # The rollup keeps quarter hours: the week's first, cut by the window,
        # counts only its readings inside the window.
        now = datetime(2026, 11, 21, 9, 7, tzinfo=UTC)
        week_ago = now - timedelta(days=7)
        with time_machine.travel(now, tick=False):
            for kwh, reading_at in (
                (Decimal("2"), week_ago + timedelta(minutes=3)),
                (Decimal("3"), week_ago - timedelta(minutes=3)),
            ):
                session_with_energy(
                    kwh=kwh, is_finalized=True, updated_at=reading_at,
                    started_at=reading_at - timedelta(hours=1), reading_at=reading_at,
                )  # fmt: skip
            response = self.client.get(URL)
        self.assertEqual(response.context["stats"].kwh_7d, Decimal("2.000"))

    def test_the_7_day_energy_leaves_out_readings_stamped_days_ahead(self) -> None:
        # A station whose clock ran a month ahead stamped its charge in January:
        # not energy of the last 7 days, nor a session with energy in them. One
        # with energy an hour ago and its stop stamped tomorrow is both.
        now = datetime(2026, 12, 7, 9, 7, tzinfo=UTC)
        with time_machine.travel(now, tick=False):
            for kwh, reading_at in (
                (Decimal("4"), now - timedelta(hours=1)),
                (Decimal("15"), now + timedelta(days=30)),
                (Decimal("6"), now - timedelta(hours=1)),
            ):
                session = session_with_energy(
                    kwh=kwh, is_finalized=True, updated_at=now,
                    started_at=reading_at - timedelta(hours=1), reading_at=reading_at,
                )  # fmt: skip
            session.events.create(
                event_type="stopped",
                meter_wh=session.meter_start_wh + 6000,
                reading_at=now + timedelta(days=1),
                kwh_delta=0,
            )
            stats = self.client.get(URL).context["stats"]
        self.assertEqual((stats.kwh_7d, stats.avg_kwh_7d), (Decimal("10.000"), 5))

    @override_settings(TIME_ZONE="Atlantic/Azores")
    def test_sessions_today_start_at_the_first_midnight_when_it_repeats(self) -> None:
        # The Azores leave summer time at 01:00 on 2026-10-25, back to 00:00: the
        # day's first hour happens twice and the day began at the first midnight.
        TransactionSyncStateFactory(
            updated_at=datetime(2026, 10, 24, 23, 50, tzinfo=UTC)
        )
        TransactionSyncStateFactory(
            updated_at=datetime(2026, 10, 25, 0, 15, tzinfo=UTC)
        )
        second_pass = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
        with time_machine.travel(second_pass, tick=False):
            response = self.client.get(URL)
        self.assertEqual(response.context["stats"].sessions_today, 1)


class SessionLoadMoreTests(ConsoleTestCase):
    def test_load_more_continues_after_the_cursor_even_when_sessions_change(
        self,
    ) -> None:
        now = datetime(2026, 11, 21, 12, 0, tzinfo=BERLIN)
        sessions = [
            TransactionSyncStateFactory(updated_at=now - timedelta(minutes=i))
            for i in range(40)
        ]
        first = self.client.get(URL)
        cursor = first.context["page"].next_cursor
        # Between the clicks a session from page one and one from page two change:
        # they move to the top, and page two must neither repeat nor skip rows.
        for moved in (sessions[3], sessions[20]):
            TransactionSyncState.objects.filter(pk=moved.pk).update(
                updated_at=now + timedelta(minutes=1)
            )
        second = self.client.get(
            URL, {"cursor": cursor}, headers={"HX-Request": "true"}
        )
        self.assertEqual(second.status_code, 200)
        expected = [
            s.steve_transaction_id for s in sessions[15:31] if s is not sessions[20]
        ]
        self.assertEqual(row_ids(second.content.decode()), expected[:15])
        self.assertNotIn("<html", second.content.decode())
        self.assertIn('hx-swap-oob="true"', second.content.decode())

    def test_load_more_walks_sessions_updated_at_the_same_moment_once_each(
        self,
    ) -> None:
        # A sync run gives every session of its batch the same updatedAt: ties
        # are the rule, and the id orders them.
        moment = timezone.now()
        sessions = [TransactionSyncStateFactory(updated_at=moment) for _ in range(40)]
        shown: list[int] = []
        cursor = None
        for _ in range(3):
            query = {"cursor": cursor} if cursor else {}
            response = self.client.get(URL, query, headers={"HX-Request": "true"})
            shown += row_ids(response.content.decode())
            cursor = response.context["page"].next_cursor
        self.assertIsNone(cursor)
        self.assertEqual(
            shown, sorted((s.steve_transaction_id for s in sessions), reverse=True)
        )

    def test_load_more_keeps_the_filters(self) -> None:
        for _ in range(20):
            TransactionSyncStateFactory(is_finalized=False)
        TransactionSyncStateFactory(is_finalized=True)
        first = self.client.get(URL, {"status": "active"})
        self.assertContains(first, "status=active&amp;rows=15&amp;cursor=")
        cursor = first.context["page"].next_cursor
        second = self.client.get(
            URL,
            {"status": "active", "rows": "15", "cursor": cursor},
            headers={"HX-Request": "true"},
        )
        self.assertEqual(len(row_ids(second.content.decode())), 5)
        # The next refresh re-reads all twenty rows the page now shows.
        self.assertIn('id="rows-shown" name="rows" value="20"', second.content.decode())
        self.assertIn("20 sessions shown.", second.content.decode())
        # So does the address, for Back from a session opened below them.
        self.assertEqual(second["HX-Push-Url"], f"{URL}?status=active&rows=20")

    def test_a_load_more_link_opened_as_a_page_shows_the_table_it_grows(
        self,
    ) -> None:
        # A new tab, or no JavaScript: the rows before the link come too, and the
        # count and the next link go on from there.
        now = timezone.now()
        sessions = [
            TransactionSyncStateFactory(updated_at=now - timedelta(minutes=i))
            for i in range(40)
        ]
        cursor = self.client.get(URL).context["page"].next_cursor
        response = self.client.get(URL, {"rows": "15", "cursor": cursor})
        html = response.content.decode()
        self.assertIn("<html", html)
        self.assertEqual(row_ids(html), [s.steve_transaction_id for s in sessions[:30]])
        self.assertIn('id="rows-shown" name="rows" value="30"', html)
        self.assertIn("30 sessions shown.", html)
        self.assertIn("rows=30&amp;cursor=", html)

    def test_a_refresh_rereads_as_many_rows_as_the_page_shows(self) -> None:
        now = timezone.now()
        sessions = [
            TransactionSyncStateFactory(updated_at=now - timedelta(minutes=i))
            for i in range(40)
        ]
        for rows, expected in [("30", 30), ("16", 30), ("0", 15), ("x", 15)]:
            with self.subTest(rows=rows):
                response = self.client.get(
                    URL,
                    {"rows": rows},
                    headers={"HX-Request": "true", "HX-Trigger": "session-results"},
                )
                html = response.content.decode()
                self.assertEqual(
                    row_ids(html),
                    [s.steve_transaction_id for s in sessions[:expected]],
                )
                # The filter form is left alone: it may hold what someone is typing.
                self.assertNotIn('id="session-filters"', html)
        many = self.client.get(
            URL,
            {"rows": "100000"},
            headers={"HX-Request": "true", "HX-Trigger": "session-results"},
        )
        self.assertEqual(len(row_ids(many.content.decode())), 40)

    def test_a_refresh_drops_sessions_that_left_the_filter(self) -> None:
        active = TransactionSyncStateFactory(is_finalized=False)
        TransactionSyncStateFactory(is_finalized=False)
        TransactionSyncState.objects.filter(pk=active.pk).update(is_finalized=True)
        response = self.client.get(
            URL,
            {"status": "active", "rows": "15"},
            headers={"HX-Request": "true", "HX-Trigger": "session-results"},
        )
        self.assertNotIn(
            active.steve_transaction_id, row_ids(response.content.decode())
        )
        self.assertContains(response, "1 session matches current filters")

    def test_new_filters_bring_the_form_export_link_and_address_along(self) -> None:
        TransactionSyncStateFactory(is_finalized=False)
        response = self.client.get(
            URL,
            {"status": "active", "from": "", "to": "", "tag": ""},
            headers={"HX-Request": "true", "HX-Trigger": "session-filters"},
        )
        html = response.content.decode()
        self.assertIn('id="session-results"', html)
        self.assertRegex(html, r'<form id="session-filters"[^>]*hx-swap-oob="true"')
        self.assertIn('<option value="active" selected>', html)
        self.assertRegex(
            html, r'id="session-export"[^>]*href="[^"]*export.csv\?status=active"'
        )
        # Empty fields are left out of the address the browser shows.
        self.assertEqual(response.headers["HX-Push-Url"], f"{URL}?status=active")
        cleared = self.client.get(URL, headers={"HX-Request": "true"})
        self.assertEqual(cleared.headers["HX-Push-Url"], URL)
        self.assertIn('<option value="all" selected>', cleared.content.decode())

    def test_applied_filters_are_announced_in_a_region_the_page_already_has(
        self,
    ) -> None:
        TransactionSyncStateFactory(is_finalized=False)
        status = '<p id="filter-status" class="visually-hidden" role="status"'
        self.assertContains(self.client.get(URL), f"{status}></p>", html=False)
        applied = self.client.get(
            URL,
            {"status": "active"},
            headers={"HX-Request": "true", "HX-Trigger": "session-filters"},
        )
        self.assertContains(
            applied,
            f'{status} hx-swap-oob="innerHTML">1 session matches current filters</p>',
        )
        # A chip's link moves the focus to the count, which says it already.
        chip = self.client.get(
            URL, headers={"HX-Request": "true", "HX-Trigger": "chips-clear"}
        )
        self.assertContains(chip, f'{status} hx-swap-oob="innerHTML"></p>')

    def test_a_malformed_cursor_shows_the_first_page(self) -> None:
        TransactionSyncStateFactory()
        response = self.client.get(URL, {"cursor": "x-y-z"})
        self.assertEqual(len(row_ids(response.content.decode())), 1)

    def test_a_history_restore_request_gets_the_whole_page(self) -> None:
        response = self.client.get(
            URL, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
        )
        self.assertContains(response, "<html")


class SessionExportTests(ConsoleTestCase):
    @override_settings(TIME_ZONE="Europe/Berlin")
    def test_it_streams_every_row_of_the_filtered_view_with_offsets(self) -> None:
        for _ in range(40):
            TransactionSyncStateFactory(is_finalized=True)
        active = TransactionSyncStateFactory(is_finalized=False)
        response = self.client.get(
            reverse("sessions_app:session-export"), {"status": "completed"}
        )
        self.assertEqual(response["Content-Type"], "text/csv; charset=utf-8")
        rows = list(
            csv.reader(
                io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))
            )
        )
        self.assertEqual(rows[0][0], "steveTransactionId")
        self.assertEqual(len(rows), 41)
        self.assertNotIn(str(active.steve_transaction_id), [r[0] for r in rows])
        self.assertRegex(rows[1][6], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*\+0[12]:00$")

    def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_exported_as_text(
        self,
    ) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="-TAG-1", label="=1+2")
        TransactionSyncStateFactory(ocpp_id_tag=mapping.steve_ocpp_id_tag)
        response = self.client.get(reverse("sessions_app:session-export"))
        rows = list(
            csv.reader(
                io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))
            )
        )
        self.assertEqual(rows[1][4:6], ["'=1+2", "'-TAG-1"])

    def test_labels_beyond_ascii_reach_a_spreadsheet_as_typed(self) -> None:
        # Excel reads a CSV file as UTF-8 only when it starts with a byte order
        # mark; otherwise "Zoë's Café" arrives as "ZoÃ«'s CafÃ©".
        mapping = UserMappingFactory(steve_ocpp_id_tag="TAG-1", label="Zoë's Café")
        TransactionSyncStateFactory(ocpp_id_tag=mapping.steve_ocpp_id_tag)
        response = self.client.get(reverse("sessions_app:session-export"))
        body = b"".join(response.streaming_content)
        self.assertTrue(body.startswith(b"\xef\xbb\xbfsteveTransactionId,"), body[:20])
        self.assertIn("Zoë's Café".encode(), body)
        self.assertEqual(response["Content-Type"], "text/csv; charset=utf-8")


class SessionExportServedTests(TransactionTestCase):
    """The export as uvicorn serves it: through the ASGI handler, whose worker
    thread reads what the test wrote, so the rows are committed."""

    @patch.object(handlers, "STREAM_BATCH_BYTES", 1000)
    def test_it_goes_out_in_batches_as_the_rows_are_read(self) -> None:
        for _ in range(41):
            TransactionSyncStateFactory()
        client = AsgiClient.signed_in(handlers.SyncStackASGIHandler(), StaffFactory())
        with warnings.catch_warnings():
            # Django's warning when it reads a synchronous iterator whole first.
            warnings.simplefilter("error")
            response = client.get(reverse("sessions_app:session-export"))
        self.assertEqual(response.status, 200)
        rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
        self.assertEqual(len(rows), 42)
        # About 6 kB in batches of about 1 kB: neither a message per line (43)
        # nor the whole file at once.
        self.assertGreater(response.body_messages, 3)
        self.assertLess(response.body_messages, 15)

    @patch.object(handlers, "STREAM_BATCH_BYTES", 1000)
    def test_a_download_given_up_ends_its_read_in_the_request(self) -> None:
        for _ in range(41):
            TransactionSyncStateFactory()
        client = AsgiClient.signed_in(handlers.SyncStackASGIHandler(), StaffFactory())
        # The rows are read in one transaction. Ended with the response, in the
        # request's thread, it gives the connection back to the pool as it found
        # it: the pool warns when it has to roll one back.
        with self.assertNoLogs("psycopg.pool", "WARNING"):
            response = client.get_then_leave(
                reverse("sessions_app:session-export"), body_messages=2
            )
        self.assertEqual(response.status, 200)
        self.assertLess(response.body_messages, 5)
        # The next request finds a working connection.
        self.assertEqual(client.get(reverse("sessions_app:session-list")).status, 200)
