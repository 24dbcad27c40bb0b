"""loadtest: a small run end to end against the test database (no timing asserts)."""

import json
import tempfile
from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command
from django.test import SimpleTestCase, TestCase, TransactionTestCase

from bench.load import minute_medians
from sync.models import SyncRun, TransactionSyncState
from sync.services.demo import demo_lock
from sync.services.seeding import seed_scale

KIND_FIELDS = {
    "name",
    "requests",
    "errors",
    "p50_ms",
    "p95_ms",
    "server_p50_ms",
    "server_p95_ms",
    "bench_case",
    "bench_p95_ms",
    "limit_ms",
    "within_limit",
}


class LoadtestCommandTests(TransactionTestCase):
    def test_it_runs_without_errors_and_leaves_the_history_as_it_was(self) -> None:
        seed_scale(transactions=400, events_per_transaction=4)
        before = _history()
        with tempfile.TemporaryDirectory() as folder:
            bench = Path(folder) / "bench.json"
            bench.write_text(
                json.dumps(
                    {
                        "scale": {"pause_ms": 200.0},
                        "cases": [{"name": "sessions: unfiltered", "p95_ms": 1000.0}],
                    }
                )
            )
            output = Path(folder) / "load.json"
            stdout = StringIO()
            call_command(
                "loadtest",
                "--users=10",
                "--duration=10",
                "--sync-interval=2",
                "--think",
                "0.5",
                "2",
                f"--bench={bench}",
                f"--output={output}",
                stdout=stdout,
            )
            document = json.loads(output.read_text())

        self.assertEqual(document["errors"], 0, document["error_samples"])
        self.assertGreater(document["requests"], 0)
        for kind in document["kinds"]:
            self.assertEqual(set(kind), KIND_FIELDS)
        kinds = {kind["name"]: kind for kind in document["kinds"]}
        unfiltered = kinds["sessions: unfiltered"]
        self.assertEqual(unfiltered["bench_p95_ms"], 1000.0)
        self.assertEqual(unfiltered["limit_ms"], 2000.0)
        # The pages reported their own time, which cannot exceed what the client saw.
        self.assertIsNotNone(unfiltered["server_p95_ms"])
        self.assertLessEqual(unfiltered["server_p50_ms"], unfiltered["p50_ms"])
        self.assertIs(unfiltered["within_limit"], True)
        self.assertGreater(kinds["SSE: connect"]["requests"], 0)
        self.assertGreater(document["sync"]["runs"], 0)
        self.assertGreater(document["sse"]["holders"], 0)

        # While streams were open the database had connections to spare: streams
        # hold none, so the count stays near the handful of requests in flight.
        database = document["database"]
        self.assertFalse(database["exhausted"])
        self.assertIsNotNone(database["max_connections_seen_while_streams_open"])
        self.assertLess(
            database["max_connections_seen_while_streams_open"],
            database["max_connections"] // 4,
        )
        self.assertIn("sessions: unfiltered", stdout.getvalue())
        # A 10-second run is all in its first minute.
        [first_minute] = document["server_p50_by_minute_ms"]
        self.assertGreater(first_minute, 0)
        self.assertIn("server p50 by minute", stdout.getvalue())
        pages = (
            sum(k["requests"] for k in document["kinds"])
            - kinds["SSE: connect"]["requests"]
        )
        workers = document["options"]["web_workers"]
        self.assertEqual(
            document["page_interval_per_worker_ms"],
            round(workers * document["seconds"] * 1000 / pages),
        )
        self.assertIn("the bench paused 200 ms before each request", stdout.getvalue())
        self.assertEqual(_history(), before)


class LoadtestBenchFileTests(TestCase):
    def test_a_json_that_is_not_a_bench_output_is_refused_before_the_load(
        self,
    ) -> None:
        documents = [
            {"cases": [{"p95_ms": 12.5}]},  # a KeyError before
            {"cases": 5},  # a TypeError before
            {"kinds": []},  # a load test's own JSON: ran unchecked before
        ]
        for document in documents:
            with (
                self.subTest(document=document),
                tempfile.TemporaryDirectory() as folder,
            ):
                path = Path(folder) / "bench.json"
                path.write_text(json.dumps(document))
                with self.assertRaisesMessage(
                    CommandError,
                    f"{path} is not a bench result: it holds no bench cases with a "
                    "p95; give the JSON that `manage.py bench --output` wrote.",
                ):
                    call_command(
                        "loadtest", "--bench", str(path), "--users=1", "--duration=1"
                    )

    def test_a_missing_file_or_one_that_is_not_json_is_said_in_a_sentence(
        self,
    ) -> None:
        wanted = "give the JSON that `manage.py bench --output` wrote."
        with tempfile.TemporaryDirectory() as folder:
            missing = Path(folder) / "nothing.json"
            garbled = Path(folder) / "garbled.json"
            garbled.write_text('{"cases":\n  [oops]}')
            for path, message in (
                (missing, f"There is no file at {missing}: {wanted}"),
                (garbled, f"{garbled} is not JSON (line 2, column 4): {wanted}"),
            ):
                with (
                    self.subTest(path=path.name),
                    self.assertRaisesMessage(CommandError, message),
                ):
                    call_command(
                        "loadtest", "--bench", str(path), "--users=1", "--duration=1"
                    )


class MinuteMediansTests(SimpleTestCase):
    def test_each_minute_in_order_with_none_for_a_minute_without_pages(self) -> None:
        by_minute = {0: [10.0, 30.0, 20.0], 2: [5.0]}
        self.assertEqual(minute_medians(by_minute), [20.0, None, 5.0])
        self.assertEqual(minute_medians({}), [])


def _history() -> dict[str, object]:
    """What the load test's sync runs must not leave changed."""
    return {
        "transactions": TransactionSyncState.objects.count(),
        "open": list(
            TransactionSyncState.objects.filter(is_finalized=False)
            .order_by("id")
            .values_list("id", "updated_at", "kwh_delivered")
        ),
        "runs": SyncRun.objects.count(),
    }


class LoadtestBesideADemoTests(TransactionTestCase):
    def test_a_database_a_demo_holds_is_refused(self) -> None:
        # Its syncs would write into the demo's tables, and its restore undo them.
        with (
            demo_lock(port=8123),
            self.assertRaisesMessage(
                CommandError,
                "A demo (http://127.0.0.1:8123/) is running on this database",
            ),
        ):
            call_command("loadtest", "--users=1", "--duration=1", stdout=StringIO())
        self.assertFalse(SyncRun.objects.exists())
