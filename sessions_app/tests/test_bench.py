"""bench --quick: the command runs end to end and writes the documented JSON."""

import json
import tempfile
from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command
from django.test import TransactionTestCase

from sessions_app.models import ApiToken
from sync.tests.factories import TransactionSyncStateFactory, UserMappingFactory

CASE_FIELDS = {
    "name",
    "p50_ms",
    "p95_ms",
    "baseline_p95_ms",
    "ratio",
    "target_p95_ms",
    "meets_target",
}


class BenchCommandTests(TransactionTestCase):
    def test_it_writes_the_json_shape(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder) / "bench.json"
            stdout = StringIO()
            call_command(
                "bench", "--quick", "--pause=1", f"--output={output}", stdout=stdout
            )
            document = json.loads(output.read_text())
        self.assertEqual(set(document), {"scale", "cases"})
        self.assertEqual(document["scale"]["pause_ms"], 1.0)
        self.assertGreater(document["scale"]["transaction_sync_state"], 0)
        names = [case["name"] for case in document["cases"]]
        self.assertIn("sessions: unfiltered", names)
        self.assertIn("stat strip", names)
        self.assertTrue(any(name.startswith("sync run") for name in names))
        self.assertTrue(any(name.startswith("SSE") for name in names))
        for case in document["cases"]:
            self.assertEqual(set(case), CASE_FIELDS)
            self.assertGreater(case["p95_ms"], 0)
        unfiltered = document["cases"][names.index("sessions: unfiltered")]
        self.assertIsNotNone(unfiltered["baseline_p95_ms"])
        self.assertIsNotNone(unfiltered["ratio"])
        self.assertIn("sessions: unfiltered", stdout.getvalue())
        # The API case's token does not outlive the run.
        self.assertFalse(ApiToken.objects.filter(revoked_at__isnull=True).exists())
        self.assertTrue(ApiToken.objects.exists())

    def test_a_database_too_small_to_measure_is_refused(self) -> None:
        UserMappingFactory(steve_ocpp_id_tag="TAG-0001")
        TransactionSyncStateFactory.create_batch(20, ocpp_id_tag="TAG-0001")
        with self.assertRaisesMessage(CommandError, "fewer than ten pages of sessions"):
            call_command(
                "bench", "--only=console", "--output=unused.json", stdout=StringIO()
            )
        self.assertFalse(ApiToken.objects.filter(revoked_at__isnull=True).exists())

    def test_a_database_whose_sessions_no_customer_owns_is_refused(self) -> None:
        TransactionSyncStateFactory.create_batch(3, ocpp_id_tag="TAG-UNMAPPED")
        with self.assertRaisesMessage(CommandError, "no customer dashboard to measure"):
            call_command(
                "bench", "--only=console", "--output=unused.json", stdout=StringIO()
            )
        self.assertFalse(ApiToken.objects.exists())

    def test_quick_does_not_seed_over_sessions_a_real_sync_wrote(self) -> None:
        TransactionSyncStateFactory(charge_box_id="CB-01")
        # bench has no --reset: the way out is seed_scale's, named as a command.
        with self.assertRaisesMessage(
            CommandError,
            "replace its charging data with `manage.py seed_scale --reset`",
        ):
            call_command(
                "bench",
                "--quick",
                "--only=console",
                "--output=unused.json",
                stdout=StringIO(),
            )

    def test_a_pause_out_of_range_is_refused_before_anything_runs(self) -> None:
        for value in ("-5", "soon", "20000"):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    CommandError, "expected milliseconds from 0 to 10000"
                ),
            ):
                call_command("bench", f"--pause={value}", "--output=unused.json")

    def test_an_output_it_could_not_write_is_refused_before_anything_runs(
        self,
    ) -> None:
        with tempfile.TemporaryDirectory() as folder:
            refused = {
                folder: "is a folder; name a file in it",
                f"{folder}/missing/bench.json": "there is no folder",
                # Root passes a permission check here; opening it fails.
                "/proc/bench.json": "cannot write '/proc/bench.json'",
            }
            for output, message in refused.items():
                with (
                    self.subTest(output=output),
                    self.assertRaisesMessage(CommandError, message),
                ):
                    call_command("bench", "--quick", f"--output={output}")
