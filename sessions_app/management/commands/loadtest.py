"""Many simulated people browse the console and the portal while the sync runs.

The issue's load acceptance point: 200 users for 10 minutes with a sync every 10 s,
no errors, p95 within twice the benchmark's, no database connection exhaustion.
`loadtest --bench bench.json --output load.json` prints a table per page kind and
exits non-zero on errors or exhaustion. The work is in bench/load/.
"""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from bench.load import LoadOptions, read_bench, run_load, table
from bench.report import cell, writable_file
from polaris.commands import DatabaseCommand, read_input_file
from sync.arguments import MAX_FLEET_SIZE, AscendingPair, int_between, number_between
from sync.services import demo

# One loopback machine: each simulated person is a coroutine with its own HTTP
# session and state, and each web worker a process with its database pool.
MAX_USERS = 10_000
MAX_WEB_WORKERS = 64


class Command(DatabaseCommand):
    interrupted_consequence_text = (
        "the load stopped without a report; what its sync runs wrote was deleted "
        "and the open sessions restored, as at the end of a full run."
    )
    help = (
        "Load test on loopback: uvicorn, a Celery worker syncing from the SteVe "
        "stand-in, and simulated staff and drivers (some holding SSE streams); "
        "print a table per page kind, write JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = LoadOptions()
        parser.add_argument(
            "--users",
            type=int_between(1, MAX_USERS, what="a number of people"),
            default=defaults.users,
            help="Simulated people (default %(default)s).",
        )
        parser.add_argument(
            "--duration",
            type=number_between(1, what="seconds"),
            default=defaults.duration,
            help="Seconds of load (default %(default)s).",
        )
        parser.add_argument(
            "--sync-interval",
            type=number_between(1, what="seconds"),
            default=defaults.sync_interval,
            help="Seconds between two transaction syncs (default %(default)s).",
        )
        parser.add_argument(
            "--web-workers",
            type=int_between(1, MAX_WEB_WORKERS, what="a number of processes"),
            default=defaults.web_workers,
            help="uvicorn worker processes (default: two per core).",
        )
        parser.add_argument(
            "--fleet-size",
            type=int_between(1, MAX_FLEET_SIZE, what="a number of charge boxes"),
            default=defaults.fleet_size,
            help="Charge boxes of the stand-in's live fleet (default %(default)s).",
        )
        parser.add_argument(
            "--think",
            type=number_between(0, what="seconds"),
            nargs=2,
            action=AscendingPair,
            metavar=("MIN", "MAX"),
            default=[defaults.think_min, defaults.think_max],
            help="Seconds a person waits between two requests, uniformly between MIN "
            f"and MAX (default {defaults.think_min:g} {defaults.think_max:g}).",
        )
        parser.add_argument(
            "--sse-share",
            type=number_between(0, 1, what="a share"),
            default=defaults.sse_share,
            help="Share of each kind of person holding an SSE stream open (default "
            "%(default)s).",
        )
        parser.add_argument(
            "--bench",
            type=Path,
            help="JSON of `manage.py bench --output`: compare each p95 with twice "
            "the benchmark's. Run that bench with --pause 200, the spacing at which "
            "each web process gets its pages here (printed at the end).",
        )
        parser.add_argument(
            "--output", type=writable_file, help="Where to write the JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        think_min, think_max = options["think"]
        bench = None
        bench_pause_ms = None
        if options["bench"]:
            path = options["bench"]
            wanted = "give the JSON that `manage.py bench --output` wrote"
            try:
                document = json.loads(read_input_file(path, wanted=wanted))
            except ValueError as error:
                # A JSONDecodeError, or bytes that are not UTF-8.
                where = (
                    f" (line {error.lineno}, column {error.colno})"
                    if isinstance(error, json.JSONDecodeError)
                    else ""
                )
                raise CommandError(f"{path} is not JSON{where}: {wanted}.") from None
            try:
                bench = read_bench(document)
                bench_pause_ms = float(document.get("scale", {}).get("pause_ms", 0.0))
            except (ValueError, AttributeError, TypeError) as error:
                raise CommandError(f"{path} is not a bench result: {error}.") from None
        load = LoadOptions(
            users=options["users"],
            duration=options["duration"],
            sync_interval=options["sync_interval"],
            web_workers=options["web_workers"],
            fleet_size=options["fleet_size"],
            think_min=think_min,
            think_max=think_max,
            sse_share=options["sse_share"],
        )
        verbosity = options["verbosity"]

        def say(message: str) -> None:
            if verbosity >= 1:
                self.stdout.write(message)
                self.stdout.flush()

        try:
            with demo.demo_lock(port=None):
                result = run_load(load, say, bench)
        except demo.DemoRunning as running:
            holder = (
                "Another load test"
                if running.by_load_test
                else f"A demo{f' ({running.where})' if running.where else ''}"
            )
            raise CommandError(
                f"{holder} is running on this database: a load test would sync "
                "into the same tables and restore them at its end. Stop it first, "
                "or give the load test another DATABASE_URL."
            ) from None
        self.stdout.write(table(result.kinds))
        database = result.database
        self.stdout.write(
            f"{result.requests} requests in {result.seconds:g} s "
            f"({result.requests / max(result.seconds, 1):.1f}/s); "
            f"DB connections max {database['max_connections_seen']} of "
            f"{database['max_connections']} (idle {database['idle_connections']}); "
            f"SSE: {result.sse['holders']} streams, "
            f"{result.sse['events_received']} events; sync: {result.sync['runs']} "
            f"runs {result.sync['by_status']}, p50 {result.sync['p50_s']} s"
        )
        self.stdout.write(
            "server p50 by minute, all pages (ms): "
            + " ".join(cell(ms) for ms in result.server_p50_by_minute_ms)
        )
        if bench_pause_ms is not None:
            self.stdout.write(
                f"each web process got a page every "
                f"{cell(result.page_interval_per_worker_ms)} ms; the bench paused "
                f"{bench_pause_ms:g} ms before each request (bench --pause)"
            )
        for sample in result.error_samples:
            self.stdout.write(self.style.ERROR(sample))
        if options["output"]:
            options["output"].write_text(json.dumps(result.as_json(), indent=2) + "\n")
            say(f"Wrote {options['output']}")
        problems = []
        if result.errors:
            problems.append(f"{result.errors} errors")
        if result.exhausted:
            problems.append("database connections exhausted")
        slow = [k.name for k in result.kinds if k.within_limit is False]
        if problems:
            raise CommandError("; ".join(problems))
        if slow:
            self.stdout.write(
                self.style.WARNING(f"server p95 above twice the bench: {slow}")
            )
        else:
            self.stdout.write(self.style.SUCCESS("No errors, connections to spare."))
