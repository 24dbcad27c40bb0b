"""Two sync runs never overlap: the second one skips instead of writing twice."""

from datetime import timedelta
from io import StringIO

import psycopg
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from polaris.testing import current_database_url
from sync import services
from sync.client import SteveClient
from sync.locks import TRANSACTIONS_LOCK
from sync.models import SyncRun
from sync.tests.factories import ChargerFactory, SyncRunFactory

UNREACHABLE = SteveClient(
    base_url="http://127.0.0.1:9/steve", username="u", password="p", retry_delays=()
)


class SyncLockTests(TestCase):
    def setUp(self) -> None:
        # Another process (a second worker or beat) holding the run lock.
        self.other = psycopg.connect(current_database_url(), autocommit=True)
        self.other.execute("SELECT pg_advisory_lock(%s)", [TRANSACTIONS_LOCK])

    def tearDown(self) -> None:
        self.other.close()

    def test_it_skips_a_run_while_another_one_runs(self) -> None:
        with self.assertRaises(services.SyncBusy):
            services.sync_run_transactions(trigger="beat", client=UNREACHABLE)
        self.assertFalse(SyncRun.objects.exists())

    def test_the_command_says_so_without_a_traceback(self) -> None:
        with self.assertRaisesMessage(CommandError, "Another sync run is in progress"):
            call_command("sync", "transactions", stdout=StringIO())

    def test_it_runs_again_once_the_other_run_released_the_lock(self) -> None:
        self.other.execute("SELECT pg_advisory_unlock(%s)", [TRANSACTIONS_LOCK])
        run = services.sync_run_transactions(trigger="beat", client=UNREACHABLE)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            "SteVe cannot be reached at http://127.0.0.1:9/steve: the connection was "
            "refused, so nothing listens there. Check that SteVe is running and that "
            "STEVE_URL's host and port are its address.",
        )


# Credentials of their own: only local mode (no DATABASE_URL) has defaults, and
# a run without them fails before it reaches the SteVe these tests expect.
@override_settings(STEVE_USERNAME="polaris", STEVE_PASSWORD="polaris")
class SyncCommandInputTests(TestCase):
    def test_a_bad_backfill_date_is_explained(self) -> None:
        # Python would read the last two as days; nobody types them meaning one.
        for value in ("21/11/2026", "20261121", "2026-W47-6"):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    CommandError, f"'{value}' is not a date; use YYYY-MM-DD"
                ),
            ):
                call_command("sync", "backfill", "--since", value, stderr=StringIO())

    def test_a_backfill_date_in_the_future_is_refused(self) -> None:
        with self.assertRaisesMessage(CommandError, "2099-01-01 is in the future"):
            call_command("sync", "backfill", "--since", "2099-01-01")
        self.assertFalse(SyncRun.objects.exists())

    def test_a_backfill_date_before_steves_timestamps_is_refused(self) -> None:
        # Year 1 in a zone east of UTC is before datetime.min in UTC (an
        # OverflowError traceback), and in UTC SteVe answered 400.
        for zone in ("UTC", "Europe/Berlin"):
            with (
                self.subTest(zone=zone),
                self.settings(TIME_ZONE=zone),
                self.assertRaisesMessage(
                    CommandError,
                    "0001-01-01 is before 1970-01-01, the earliest time SteVe "
                    "stores; use the day the gap began.",
                ),
            ):
                call_command("sync", "backfill", "--since", "0001-01-01")
        self.assertFalse(SyncRun.objects.exists())

    def test_status_without_runs_says_how_to_start_one(self) -> None:
        out = StringIO()
        call_command("sync", "status", stdout=out)
        self.assertIn("No sync has run yet.", out.getvalue())

    def test_verbosity_may_follow_the_action(self) -> None:
        SyncRunFactory()
        for args in (["-v", "0", "status"], ["status", "-v", "0"]):
            with self.subTest(args=args):
                out = StringIO()
                call_command("sync", *args, stdout=out)
                # The header's spacing follows the widest run id.
                self.assertRegex(out.getvalue(), r"^run +kind +trigger")

    def test_status_names_the_transaction_of_a_resync(self) -> None:
        SyncRunFactory(kind=SyncRun.Kind.TRANSACTION, steve_transaction_id=4242)
        SyncRunFactory(kind=SyncRun.Kind.TRANSACTIONS)
        out = StringIO()
        call_command("sync", "status", stdout=out)
        kinds = [line.split()[1:3] for line in out.getvalue().splitlines()[1:]]
        self.assertEqual(kinds, [["transactions", "beat"], ["transaction", "#4242"]])

    def test_status_shortens_errors_at_a_word_and_gives_the_newest_in_full(
        self,
    ) -> None:
        error = (
            "Transaction 4242 disappeared from SteVe mid-run. Transaction 4243 "
            "disappeared from SteVe mid-run."
        )
        SyncRunFactory(status=SyncRun.Status.PARTIAL, error=error)
        out = StringIO()
        call_command("sync", "status", stdout=out)
        table, full = out.getvalue().split("\n\n")
        self.assertTrue(table.endswith("disappeared from SteVe mid-run.…"), table)
        self.assertEqual(full.strip(), f"Run #{SyncRun.objects.get().pk}: {error}")

    def test_status_exits_with_1_when_the_newest_finished_run_failed(self) -> None:
        # Monitoring runs `sync status` and alerts on its exit status.
        error = (
            "SteVe cannot be reached at http://127.0.0.1:9/steve: the connection was "
            "refused, so nothing listens there."
        )
        failed = SyncRunFactory(status=SyncRun.Status.FAILED, error=error)
        # A run still going does not hide the failure before it.
        SyncRunFactory(status=SyncRun.Status.RUNNING, finished_at=None)
        out = StringIO()
        with self.assertRaisesMessage(
            CommandError,
            f"Run #{failed.pk}, the newest that has finished, failed: {error}",
        ):
            call_command("sync", "status", stdout=out)
        # The table comes first, as ever.
        rows = [line.split()[0] for line in out.getvalue().splitlines()]
        self.assertEqual(rows, ["run", f"#{failed.pk + 1}", f"#{failed.pk}"])

        SyncRunFactory()
        call_command("sync", "status", stdout=StringIO())

    def test_status_exits_with_1_while_the_newest_of_a_schedule_failed(self) -> None:
        # The hourly reconcile and the charger probe fail, and every 10 s a
        # transactions sync succeeds after them: monitoring must still hear.
        reconcile = SyncRunFactory(
            kind=SyncRun.Kind.BACKFILL,
            status=SyncRun.Status.FAILED,
            error="SteVe answered HTTP 500.",
        )
        probe = SyncRunFactory(
            kind=SyncRun.Kind.CHARGERS,
            trigger=SyncRun.Trigger.COMMAND,
            status=SyncRun.Status.FAILED,
            error="SteVe cannot be reached.",
        )
        SyncRunFactory()
        with self.assertRaisesMessage(
            CommandError,
            f"Run #{probe.pk}, the newest charger probe, failed: SteVe cannot be "
            f"reached.\nRun #{reconcile.pk}, the newest scheduled reconcile, failed: "
            "SteVe answered HTTP 500.",
        ):
            call_command("sync", "status", stdout=StringIO())
        # A backfill by hand that failed is told to whoever ran it: once a run
        # finished after it, it no longer fails the check.
        SyncRunFactory(
            kind=SyncRun.Kind.BACKFILL,
            trigger=SyncRun.Trigger.COMMAND,
            status=SyncRun.Status.FAILED,
        )
        SyncRunFactory(kind=SyncRun.Kind.CHARGERS)
        SyncRunFactory(kind=SyncRun.Kind.BACKFILL)
        call_command("sync", "status", stdout=StringIO())

    def test_status_with_max_age_exits_with_1_when_no_run_finished_lately(
        self,
    ) -> None:
        # Beat or the workers stopped: no run fails, the runs just stop coming.
        with self.assertRaisesMessage(
            CommandError, "No transactions sync has finished yet."
        ):
            call_command("sync", "status", "--max-age", "60", stdout=StringIO())
        old = SyncRunFactory(started_at=timezone.now() - timedelta(minutes=5))
        # A newer charger probe is not a transactions sync.
        SyncRunFactory(kind=SyncRun.Kind.CHARGERS)
        with self.assertRaisesRegex(
            CommandError,
            rf"^The newest transactions run, #{old.pk}, finished (29|30)\d s ago "
            r"\(more than --max-age 60\): check that Celery beat and a worker are "
            "running",
        ):
            call_command("sync", "status", "--max-age", "60", stdout=StringIO())
        call_command("sync", "status", "--max-age", "600", stdout=StringIO())
        # A run left `running` by a worker that died is not under way.
        SyncRunFactory(status=SyncRun.Status.RUNNING, finished_at=None)
        with self.assertRaisesMessage(CommandError, "more than --max-age 60"):
            call_command("sync", "status", "--max-age", "60", stdout=StringIO())
        # A long run under way (a sync or a backfill: whatever holds the lock)
        # is no alarm.
        with psycopg.connect(current_database_url(), autocommit=True) as worker:
            worker.execute("SELECT pg_advisory_lock(%s)", [TRANSACTIONS_LOCK])
            call_command("sync", "status", "--max-age", "60", stdout=StringIO())
        SyncRunFactory()
        call_command("sync", "status", "--max-age", "60", stdout=StringIO())

    def test_an_unreachable_steve_fails_the_run_with_a_sentence(self) -> None:
        unreachable = self.settings(
            STEVE_URL="http://127.0.0.1:9/steve", STEVE_TIMEOUT=1
        )
        expected = (
            "SteVe cannot be reached at http://127.0.0.1:9/steve: the connection was "
            "refused"
        )
        with unreachable, self.assertRaisesMessage(CommandError, expected):
            call_command("sync", "transactions", stdout=StringIO())
        run = SyncRun.objects.get()
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(run.trigger, SyncRun.Trigger.COMMAND)
        out = StringIO()
        with self.assertRaisesMessage(CommandError, expected):
            call_command("sync", "status", stdout=out)
        self.assertIn("failed", out.getvalue())

    def test_a_missing_steve_setting_fails_the_beats_runs_and_refuses_a_command(
        self,
    ) -> None:
        # A command typed in a shell without them is refused, recording nothing:
        # its failed run would tell every page that the sync is failing.
        for action in ("transactions", "chargers"):
            with (
                self.subTest(action=action),
                self.settings(STEVE_URL=""),
                self.assertRaisesMessage(
                    CommandError,
                    "STEVE_URL must be set to talk to SteVe. Nothing was run.",
                ),
            ):
                call_command("sync", action, stdout=StringIO())
        self.assertFalse(SyncRun.objects.exists())
        # What the beat runs (the task calls the same services) is recorded.
        with self.settings(STEVE_URL="", STEVE_PASSWORD=""):
            services.sync_run_transactions(trigger="beat")
            services.sync_run_chargers(trigger="beat")
        runs = SyncRun.objects.order_by("id")
        self.assertEqual(
            [(run.kind, run.trigger, run.status, run.error) for run in runs],
            [
                (
                    "transactions",
                    "beat",
                    "failed",
                    "STEVE_URL, STEVE_PASSWORD must be set to talk to SteVe.",
                ),
                (
                    "chargers",
                    "beat",
                    "failed",
                    "STEVE_URL, STEVE_PASSWORD must be set to talk to SteVe.",
                ),
            ],
        )
        self.assertTrue(all(run.finished_at for run in runs))

    def test_a_charger_probe_says_it_has_begun_before_waiting_for_steve(self) -> None:
        # SteVe holds a TriggerMessage until the stations answer (up to
        # STEVE_OPERATION_TIMEOUT, 35 s): a silent command looks hung meanwhile.
        ChargerFactory(charge_box_id="CP-1")
        out = StringIO()
        unreachable = self.settings(
            STEVE_URL="http://127.0.0.1:9/steve", STEVE_TIMEOUT=1
        )
        with unreachable, self.assertRaisesMessage(CommandError, "cannot be reached"):
            call_command("sync", "chargers", stdout=out)
        self.assertEqual(out.getvalue(), "Probing the chargers through SteVe…\n")
