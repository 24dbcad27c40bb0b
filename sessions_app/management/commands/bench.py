"""Measure the console, portal, API, sync and live updates at the database's scale.

`manage.py seed_scale` fills the database first; `bench --output bench.json` then
prints a table and writes the JSON the performance issue defines. `--quick` seeds a
few thousand rows into an empty database and runs a short version (CI proves the
command works with it).
"""

import gc
import time
from argparse import ArgumentTypeError
from dataclasses import replace
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from bench import cases
from bench.report import Case, table, writable_file, write_json
from polaris.commands import DatabaseCommand
from sync.arguments import number_between
from sync.models import TransactionSyncState
from sync.services.seeding import seed_scale

QUICK_MIN_TRANSACTIONS = 1000
QUICK_SEED_TRANSACTIONS = 3000
GROUPS = ("console", "sync", "sse")


def _groups(value: str) -> list[str]:
    """Parse one `--only` value: a case group, or several joined by commas."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not names:
        raise ArgumentTypeError(
            f"unknown case group {value!r}; choose from {', '.join(GROUPS)}"
        )
    return names


class Command(DatabaseCommand):
    interrupted_consequence_text = "no results were written to --output."
    help = (
        "Benchmark server time of the console, dashboard, API, a sync run and SSE "
        "fan-out against a stock Django admin baseline; print a table, write JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            required=True,
            type=writable_file,
            help="Where to write the JSON.",
        )
        parser.add_argument(
            "--quick",
            action="store_true",
            help="Small scale: seed a few thousand rows if the database is nearly "
            "empty, 50 SSE clients, 30 active transactions in the sync run.",
        )
        parser.add_argument(
            "--skip",
            action="append",
            default=[],
            choices=["sync", "sse"],
            help="Leave out a slow case (repeatable).",
        )
        parser.add_argument(
            "--pause",
            type=number_between(0, 10_000, what="milliseconds"),
            default=0.0,
            metavar="MS",
            help="Idle time before each timed request of the console, dashboard "
            "and API cases (default 0: back to back, CPU caches hot). 200 is "
            "about what each web process sees under the load test.",
        )
        parser.add_argument(
            "--only",
            action="append",
            default=[],
            type=_groups,
            metavar="GROUP",
            help=f"Run only these case groups ({', '.join(GROUPS)}); repeatable or "
            "comma-separated. --skip still applies.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = replace(
            cases.QUICK if options["quick"] else cases.FULL,
            pause_ms=options["pause"],
        )
        only = {name for names in options["only"] for name in names}
        run = set(only or GROUPS) - set(options["skip"])
        began = time.monotonic()
        # Only the console cases read the seeded data; sync and SSE bring their own.
        if (
            options["quick"]
            and "console" in run
            and TransactionSyncState.objects.count() < QUICK_MIN_TRANSACTIONS
        ):
            self._say(f"Seeding {QUICK_SEED_TRANSACTIONS} transactions for --quick…")
            try:
                seed_scale(
                    transactions=QUICK_SEED_TRANSACTIONS, events_per_transaction=10
                )
            except ValueError as error:
                raise CommandError(str(error)) from None
        scale = cases.scale()
        scale["cpu_reference_ms"] = cases.cpu_reference_ms()
        self._say(f"Scale: {scale}")
        fixture = None
        if "console" in run or "sse" in run:
            try:
                fixture = cases.prepare(timezone.now())
            except cases.NotEnoughData as error:
                raise CommandError(str(error)) from None
        try:
            results = self._measure(run, settings, fixture, scale)
        finally:
            if fixture is not None:
                cases.release(fixture)
        scale["requests_per_case"] = settings.requests
        scale["pause_ms"] = settings.pause_ms
        scale["quick"] = bool(options["quick"])
        scale["seconds"] = round(time.monotonic() - began, 1)
        self.stdout.write(table(results))
        write_json(options["output"], scale, results)
        missed = [case.name for case in results if case.meets_target is False]
        summary = f"Wrote {options['output']}"
        if missed:
            self.stdout.write(self.style.WARNING(f"{summary}; missed: {missed}"))
        else:
            self.stdout.write(self.style.SUCCESS(f"{summary}; every target met."))

    def _measure(
        self,
        run: set[str],
        settings: cases.Settings,
        fixture: cases.Fixture | None,
        scale: dict[str, Any],
    ) -> list[Case]:
        # As polaris/asgi.py does in the server once the app is loaded: the
        # collector no longer rescans what lives as long as the process.
        gc.freeze()
        results: list[Case] = []
        if "console" in run:
            self._say("Console, dashboard and API cases…")
            assert fixture is not None
            results.extend(cases.console_cases(fixture, settings))
        if "sync" in run:
            self._say(f"Sync run with {settings.sync_active} active transactions…")
            results.append(cases.sync_case(settings))
        if "sse" in run:
            self._say(f"SSE with {settings.sse_clients} clients…")
            assert fixture is not None
            sse, extra = cases.sse_case(fixture, settings)
            results.append(sse)
            scale.update(extra)
        return results

    def _say(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)
            self.stdout.flush()

    verbosity = 1

    def execute(self, *args: Any, **options: Any) -> Any:
        self.verbosity = options.get("verbosity", 1)
        return super().execute(*args, **options)
