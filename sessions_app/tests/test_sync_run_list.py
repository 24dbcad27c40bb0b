"""The Sync runs page (`/admin/sync-runs/`) and its "Run sync now" button."""

from datetime import UTC, datetime, timedelta

import psycopg
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from polaris.testing import current_database_url, take_queued_tasks
from sessions_app.tests.base import ConsoleTestCase
from sync.locks import TRANSACTIONS_LOCK
from sync.models import SyncRun
from sync.services.runs.lifecycle import start_run
from sync.tests.factories import StaffFactory, SyncRunFactory, UserFactory

LIST_URL = reverse("sessions_app:sync-run-list")
CREATE_URL = reverse("sessions_app:sync-run-create")
LOGIN_URL = "/accounts/login/"


class SyncRunListTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.customer = UserFactory()

    def test_it_sends_anonymous_people_to_the_login_page(self) -> None:
        response = self.client.get(LIST_URL)
        self.assertRedirects(response, f"{LOGIN_URL}?next={LIST_URL}")

    def test_it_refuses_customers(self) -> None:
        self.client.force_login(self.customer)
        response = self.client.get(LIST_URL, follow=True)
        self.assertRedirects(response, f"{LOGIN_URL}?next={LIST_URL}")
        self.assertContains(response, "which cannot open that page")
        self.assertContains(response, '<a href="/">go back to your dashboard</a>')
        self.assertNotContains(response, "Run sync now")

    def test_it_lists_runs_newest_first(self) -> None:
        start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        # Created out of order: the page orders by start time, not by id.
        middle = SyncRunFactory(started_at=start + timedelta(minutes=1))
        newest = SyncRunFactory(started_at=start + timedelta(minutes=2))
        oldest = SyncRunFactory(started_at=start)
        self.client.force_login(self.staff)

        html = self.client.get(LIST_URL).content.decode()

        positions = [html.index(f">#{run.pk}<") for run in (newest, middle, oldest)]
        self.assertEqual(positions, sorted(positions))

    def test_it_shows_counts_status_and_the_error_sentence(self) -> None:
        SyncRunFactory(
            status=SyncRun.Status.PARTIAL,
            fetched_count=1234,
            created_count=3,
            updated_count=7,
            events_count=42,
            errors_count=2,
            error="SteVe did not answer within 10 s.",
        )
        SyncRunFactory(status=SyncRun.Status.RUNNING, finished_at=None)
        self.client.force_login(self.staff)

        response = self.client.get(LIST_URL)

        self.assertContains(response, '<span class="badge badge--partial">Partial')
        self.assertContains(response, '<span class="badge badge--running">Running')
        self.assertContains(response, "1,234")
        self.assertContains(response, "SteVe did not answer within 10 s.")
        self.assertContains(response, "running…")
        self.assertContains(response, "Showing all 2 runs.")
        self.assertNotContains(response, "Older runs stay")

    def test_a_run_cut_off_has_no_duration_to_show(self) -> None:
        # Its finished_at is when the next run noticed it, long after it died.
        dead = SyncRunFactory(status=SyncRun.Status.RUNNING, finished_at=None)
        start_run(SyncRun.Kind.TRANSACTIONS, SyncRun.Trigger.BEAT, dry_run=False)
        self.client.force_login(self.staff)
        body = self.client.get(LIST_URL).content.decode()
        row = body[body.index(f">#{dead.pk}</td>") :]
        cut_off = row[row.index('data-label="Duration"') :].split("</td>")[0]
        self.assertIn("not known", cut_off)
        self.assertNotIn(" s", cut_off.split(">")[-1])

    @override_settings(USE_THOUSAND_SEPARATOR=True)
    def test_a_resync_links_to_its_transaction_and_ids_stay_ungrouped(self) -> None:
        SyncRunFactory(
            id=7654321,
            kind=SyncRun.Kind.TRANSACTION,
            steve_transaction_id=1234567,
            status=SyncRun.Status.FAILED,
            error="SteVe refused.",
        )
        self.client.force_login(self.staff)
        response = self.client.get(LIST_URL)
        self.assertContains(
            response,
            'Single transaction <a id="sync-run-7654321-transaction" '
            'class="table__link mono" href="/admin/sessions/1234567/">#1234567</a>',
            html=True,
        )
        # Ids are not amounts: a locale's grouping never applies to them.
        self.assertContains(response, "#7654321", count=2)
        self.assertNotContains(response, "7,654,321")

    @override_settings(TIME_ZONE="Europe/Berlin")
    def test_it_shows_start_times_in_the_operator_zone(self) -> None:
        SyncRunFactory(started_at=datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
        self.client.force_login(self.staff)

        response = self.client.get(LIST_URL)

        self.assertContains(response, "Jan 15, 13:00:00")
        self.assertContains(response, "times are in Europe/Berlin")

    def test_it_shows_an_empty_state(self) -> None:
        self.client.force_login(self.staff)
        response = self.client.get(LIST_URL)
        self.assertContains(response, "No sync has run yet")
        self.assertContains(response, "Run sync now")

    def test_it_runs_a_fixed_number_of_queries(self) -> None:
        SyncRunFactory.create_batch(20)
        self.client.force_login(self.staff)
        # Session, user, 2 permission reads (the Django admin link), runs: the
        # same for 20 runs as for 50.
        with self.assertNumQueries(5):
            response = self.client.get(LIST_URL)
        self.assertContains(response, "Showing all 20 runs.")

    def test_its_live_re_read_is_not_the_page_back_and_forward_show(self) -> None:
        # The re-read asks the same address with HX-Request: without Vary, the
        # browser's Back showed that bare fragment as the page.
        self.client.force_login(self.staff)
        response = self.client.get(LIST_URL, headers={"HX-Request": "true"})
        self.assertIn("HX-Request", response.headers["Vary"])

    def test_it_caps_the_table_at_the_latest_50_runs(self) -> None:
        runs = SyncRunFactory.create_batch(51)
        self.client.force_login(self.staff)

        response = self.client.get(LIST_URL)

        self.assertContains(response, "Showing the latest 50 runs. Older runs are in")
        # Django admin's sync runs are linked for who may open them.
        self.assertContains(
            response,
            "Older runs are in Django admin, for accounts with the permission "
            "“Can view sync run”;",
        )
        self.staff.user_permissions.add(Permission.objects.get(codename="view_syncrun"))
        self.assertContains(self.client.get(LIST_URL), 'id="sync-runs-admin-link"')
        # The daily prune deletes the runs that changed nothing.
        self.assertContains(
            response, "runs that changed nothing are deleted after 30 days."
        )
        self.assertNotContains(response, f">#{runs[0].pk}<")

    def test_it_only_reads_on_get(self) -> None:
        SyncRunFactory.create_batch(3)
        self.client.force_login(self.staff)
        with CaptureQueriesContext(connection) as queries:
            self.client.get(LIST_URL)
        statements = [query["sql"].lstrip().split()[0].upper() for query in queries]
        self.assertEqual(set(statements), {"SELECT"})

    def test_it_answers_htmx_with_the_table_partial(self) -> None:
        run = SyncRunFactory()
        self.client.force_login(self.staff)

        response = self.client.get(LIST_URL, headers={"HX-Request": "true"})

        self.assertContains(response, f">#{run.pk}<")
        self.assertContains(response, 'id="sync-runs"')
        self.assertNotContains(response, "<html")


class SyncRunFilterTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.failed = SyncRunFactory(
            status=SyncRun.Status.FAILED, error="SteVe refused."
        )
        cls.resync = SyncRunFactory(
            kind=SyncRun.Kind.TRANSACTION, steve_transaction_id=7
        )
        cls.plain = SyncRunFactory()

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def shown(self, **query: str) -> list[int]:
        response = self.client.get(LIST_URL, query)
        return [run.pk for run in response.context["runs"]]

    def test_it_shows_the_runs_of_one_kind_or_status(self) -> None:
        self.assertEqual(self.shown(status="failed"), [self.failed.pk])
        self.assertEqual(self.shown(kind="transaction"), [self.resync.pk])
        self.assertEqual(
            self.shown(kind="transactions", status="succeeded"), [self.plain.pk]
        )

    def test_no_match_says_so_and_offers_every_run(self) -> None:
        response = self.client.get(LIST_URL, {"kind": "chargers", "status": "failed"})
        self.assertContains(response, "No run matches these filters")
        self.assertContains(response, f'href="{LIST_URL}">Show all runs</a>', count=2)

    def test_no_match_names_what_was_filtered(self) -> None:
        for query, said in (
            (
                {"kind": "chargers", "status": "failed"},
                "No sync run of kind “Charger probe” has status “Failed”.",
            ),
            ({"kind": "backfill"}, "There is no sync run of kind “Backfill”."),
            ({"status": "partial"}, "No sync run has status “Partial”."),
        ):
            with self.subTest(query=query):
                self.assertContains(self.client.get(LIST_URL, query), said)

    def test_the_count_reads_right_for_one_run(self) -> None:
        for query, said in (
            ({"status": "failed"}, "Showing the only matching run."),
            ({"kind": "transactions"}, "Showing all 2 matching runs."),
            ({}, "Showing all 3 runs."),
        ):
            with self.subTest(query=query):
                self.assertContains(self.client.get(LIST_URL, query), said)

    def test_unknown_values_fall_back_to_every_run(self) -> None:
        response = self.client.get(LIST_URL, {"kind": "bogus", "status": "nope"})
        self.assertEqual(len(response.context["runs"]), 3)
        self.assertContains(response, '<option value="" selected>All kinds</option>')
        self.assertContains(response, '<option value="" selected>All statuses</option>')
        self.assertNotContains(response, "Show all runs")
        self.assertContains(
            response, "Kind “bogus” is not a kind of sync run; showing all."
        )
        self.assertContains(
            response, "Status “nope” is not a status of a sync run; showing all."
        )

    def test_a_run_that_failed_as_a_whole_has_no_error_count(self) -> None:
        # Its sentence is under its row; "0" in Errors would read "no errors".
        self.failed.errors_count = 0
        self.failed.save()
        response = self.client.get(LIST_URL, {"status": "failed"})
        self.assertContains(
            response,
            '<span aria-hidden="true">—</span><span class="visually-hidden">'
            "the run failed</span>",
        )

    def test_the_list_re_reads_itself_with_its_filters(self) -> None:
        filtered = self.client.get(LIST_URL, {"status": "failed"})
        self.assertContains(
            filtered,
            f'hx-get="{LIST_URL}?status=failed" hx-trigger="sse:sync-runs-updated"',
        )
        self.assertContains(
            self.client.get(LIST_URL),
            f'hx-get="{LIST_URL}" hx-trigger="sse:sync-runs-updated"',
        )
        fragment = self.client.get(
            LIST_URL, {"status": "failed"}, headers={"HX-Request": "true"}
        )
        self.assertEqual([run.pk for run in fragment.context["runs"]], [self.failed.pk])
        self.assertNotContains(fragment, "<html")


class SyncRunCreateTests(ConsoleTestCase):
    def setUp(self) -> None:
        super().setUp()
        take_queued_tasks()

    def test_it_queues_one_console_run(self) -> None:
        response = self.client.post(CREATE_URL, follow=True)

        self.assertRedirects(response, LIST_URL)
        self.assertContains(response, "Sync run queued")
        # The page drops the sentence once the table's next update shows the run.
        self.assertContains(response, 'data-until="sync-runs-updated"')
        self.assertEqual(
            take_queued_tasks(), [("sync.tasks.sync_run_transactions", "('manual',)")]
        )

    def test_it_returns_to_the_list_as_it_was_filtered(self) -> None:
        page = self.client.get(LIST_URL, {"kind": "backfill", "status": "failed"})
        self.assertContains(page, '<input type="hidden" name="kind" value="backfill">')
        for filters, back, where in (
            ({"kind": "transactions"}, "?kind=transactions", "below"),
            ({"kind": "backfill", "status": "failed"},
             "?kind=backfill&status=failed", "among all runs"),
            ({"kind": "bogus"}, "", "below"),
        ):  # fmt: skip
            with self.subTest(**filters):
                response = self.client.post(CREATE_URL, filters, follow=True)
                self.assertRedirects(response, f"{LIST_URL}{back}")
                self.assertContains(response, f"Sync run queued; it appears {where}")
                # A list that will not show the run keeps the sentence: the next
                # event would otherwise take it away with nothing in its place.
                until = 'data-until="sync-runs-updated"'
                if where == "below":
                    self.assertContains(response, until)
                else:
                    self.assertNotContains(response, until)

    def test_it_refuses_while_a_transactions_run_is_running(self) -> None:
        SyncRunFactory(status=SyncRun.Status.RUNNING, finished_at=None)
        # The run holds the transactions lock, on its worker's connection.
        with psycopg.connect(current_database_url(), autocommit=True) as worker:
            worker.execute("SELECT pg_advisory_lock(%s)", [TRANSACTIONS_LOCK])
            response = self.client.post(CREATE_URL, follow=True)

        self.assertEqual(take_queued_tasks(), [])
        self.assertContains(response, "A sync run is already in progress.")

    def test_a_run_a_dead_worker_left_running_does_not_block_it(self) -> None:
        # Its row says running until the next run marks it interrupted: that run
        # must be able to start, with beat stopped too.
        SyncRunFactory(status=SyncRun.Status.RUNNING, finished_at=None)
        self.client.post(CREATE_URL)
        self.assertEqual(len(take_queued_tasks()), 1)

    def test_a_running_charger_probe_does_not_block_it(self) -> None:
        SyncRunFactory(
            kind=SyncRun.Kind.CHARGERS, status=SyncRun.Status.RUNNING, finished_at=None
        )
        self.client.post(CREATE_URL)
        self.assertEqual(len(take_queued_tasks()), 1)

    def test_it_needs_post(self) -> None:
        # Opened as a page, it leads to the page with the button.
        response = self.client.get(CREATE_URL)
        self.assertRedirects(response, reverse("sessions_app:sync-run-list"))
        self.assertEqual(take_queued_tasks(), [])

    def test_it_refuses_customers(self) -> None:
        self.client.force_login(UserFactory())
        response = self.client.post(CREATE_URL)
        self.assertRedirects(
            response, f"{LOGIN_URL}?next={CREATE_URL}", fetch_redirect_response=False
        )
        self.assertEqual(take_queued_tasks(), [])
