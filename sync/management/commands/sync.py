"""Run the SteVe sync by hand: the same services the Celery beat runs on a schedule.

manage.py sync transactions [--dry-run]   one incremental run now, in this process
manage.py sync backfill --since 2026-01-01 [--dry-run]
manage.py sync chargers                   probe the chargers (TriggerMessage)
manage.py sync status [--limit 15] [--max-age SECONDS]
                                          recent runs as a table; exit status 1
                                          when the newest finished run failed, or
                                          the newest of a kind beat schedules, or
                                          (with --max-age) none has finished lately
"""

import argparse
import re
import textwrap
from argparse import ArgumentParser, ArgumentTypeError
from datetime import date
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser
from django.db import OperationalError
from django.utils import timezone

from polaris.commands import DatabaseCommand
from sync import services
from sync.arguments import int_between
from sync.client import require_steve_settings
from sync.models import Charger, SyncRun

# About a day of beat runs at the default interval.
MAX_STATUS_LIMIT = 10_000
# SteVe keeps times in MySQL TIMESTAMP columns, which start at the Unix epoch. An
# earlier day cannot match, and near year 1 it is not even a datetime in UTC.
EARLIEST_SINCE = date(1970, 1, 1)


def _iso_date(value: str) -> date:
    try:
        # Only the form the help names: fromisoformat alone also takes 20260131
        # and 2026-W05-6, which nobody means by a day.
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(
            f"{value!r} is not a date; use YYYY-MM-DD, e.g. 2026-01-31."
        ) from None
    if day < EARLIEST_SINCE:
        raise ArgumentTypeError(
            f"{value} is before {EARLIEST_SINCE}, the earliest time SteVe stores; "
            "use the day the gap began."
        )
    if day > timezone.localdate():
        raise ArgumentTypeError(
            f"{value} is in the future; no transaction has started since then."
        )
    return day


# Charge boxes named as silent after a probe; more are counted.
SILENT_SHOWN = 10
# Characters of a run's error shown in the status table.
ERROR_COLUMN = 60


class Command(DatabaseCommand):
    help = "Sync transactions and chargers from SteVe, or show recent sync runs."
    action = "status"
    dry_run = False
    lost_database_midway = False

    @property
    def database_unavailable_consequence(self) -> str:  # type: ignore[override]
        if self.action == "status" or self.dry_run:
            return "Nothing was changed."
        if self.action == "chargers":
            return (
                "No probe could be recorded; the next one after the database is "
                "back asks every charger again."
            )
        if self.lost_database_midway:
            return (
                "If its sync run had begun, it keeps the batches it saved and shows "
                "as running until the next run marks it interrupted; SteVe keeps "
                "every transaction, so the next run after the database is back "
                "catches up."
            )
        return (
            "No sync run could be recorded; SteVe keeps every transaction, so the "
            "next run after the database is back catches up."
        )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action",
            required=True,
            metavar="{transactions,backfill,chargers,status}",
        )

        def subcommand(name: str, about: str) -> CommandParser:
            # `about` in `sync --help`'s list, and atop `sync NAME --help` too.
            parser: CommandParser = actions.add_parser(
                name, help=about, description=about
            )
            return parser

        transactions = subcommand(
            "transactions", "Run one incremental transactions sync now."
        )
        self._add_dry_run(transactions)
        backfill = subcommand(
            "backfill", "Re-read every transaction started since a date."
        )
        backfill.add_argument(
            "--since",
            type=_iso_date,
            required=True,
            help="First start date to re-read, YYYY-MM-DD (operator's time zone).",
        )
        self._add_dry_run(backfill)
        chargers = subcommand("chargers", "Probe every known charger now.")
        status = subcommand(
            "status",
            "Show the most recent sync runs; exit status 1 when the newest "
            "finished run failed, or the newest transactions run, charger probe "
            "or scheduled reconcile did, or with --max-age when no transactions "
            "run is under way and none has finished that recently.",
        )
        for action in (transactions, backfill, chargers, status):
            # Also after the action (`sync transactions -v 2`); when left out there,
            # the value given before it, or Django's default, stands.
            action.add_argument(
                "-v",
                "--verbosity",
                type=int,
                choices=[0, 1, 2, 3],
                default=argparse.SUPPRESS,
                help="0 only errors and the result, 2 also the worker's log lines.",
            )
        status.add_argument(
            "--limit",
            type=int_between(1, MAX_STATUS_LIMIT, what="a number of runs"),
            default=15,
            help=f"How many runs to show, 1 to {MAX_STATUS_LIMIT:,} (default 15).",
        )
        status.add_argument(
            "--max-age",
            type=int_between(1, what="a number of seconds"),
            metavar="SECONDS",
            help="Also exit with status 1 when no transactions run is under way and "
            "the newest finished more than SECONDS ago: beat, the workers or Redis "
            "have stopped (a few sync intervals, e.g. 60 at the default 10 s).",
        )

    @staticmethod
    def _add_dry_run(parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Read SteVe and report what would change, without writing anything.",
        )

    def execute(self, *args: Any, **options: Any) -> str | None:
        # Known before the database is checked, which may refuse to go on.
        self.action, self.dry_run = options["action"], options.get("dry_run", False)
        return super().execute(*args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        action = self.action
        if action == "status":
            self._status(options["limit"], options["max_age"])
            return
        try:
            # A command run by hand without SteVe's settings is refused before it
            # records a failed run that would say "Sync failing" to every page.
            require_steve_settings()
        except ImproperlyConfigured as error:
            raise CommandError(f"{error} Nothing was run.") from None
        if options["verbosity"] >= 1:
            # Said before SteVe is asked: a charger probe waits for the stations'
            # answers (up to STEVE_OPERATION_TIMEOUT), a large backfill longer.
            self.stdout.write(
                "Probing the chargers through SteVe…"
                if action == "chargers"
                else f"Syncing {action} from SteVe…"
            )
            self.stdout.flush()
        try:
            run = self._run(action, options)
        except services.SyncBusy:
            raise CommandError(
                "Another sync run is in progress; try again when it has finished "
                "(see `manage.py sync status`)."
            ) from None
        except OperationalError as error:
            # Reachable at the start (check_migrations): lost since.
            self.lost_database_midway = True
            raise self.database_unavailable(error) from None
        self._report(run, dry_run=options.get("dry_run", False))

    def interrupted_consequence(self) -> str:
        action = self.action
        if action == "status" or self.dry_run:
            return "nothing was changed."
        if action == "chargers":
            return (
                "no check-in of this probe was saved, and it shows as running until "
                "the next probe marks it interrupted."
            )
        return (
            "the batches this run had saved stay, the one it was writing was rolled "
            "back, and it shows as running until the next run marks it interrupted; "
            "SteVe keeps every transaction, so the next run catches up."
        )

    def _run(self, action: str, options: dict[str, Any]) -> SyncRun:
        trigger = SyncRun.Trigger.COMMAND
        progress = self._progress if options["verbosity"] >= 1 else None
        if action == "transactions":
            return services.sync_run_transactions(
                trigger=trigger, dry_run=options["dry_run"], progress=progress
            )
        if action == "backfill":
            return services.sync_run_backfill(
                since=options["since"],
                trigger=trigger,
                dry_run=options["dry_run"],
                progress=progress,
            )
        return services.sync_run_chargers(trigger=trigger)

    def _progress(self, message: str) -> None:
        self.stdout.write(f"  {message}")
        self.stdout.flush()

    def _report(self, run: SyncRun, *, dry_run: bool) -> None:
        if run.kind == SyncRun.Kind.CHARGERS and not run.fetched_count:
            # Chargers are learned from the transactions the sync reads.
            summary = (
                "no charger is known yet, so none was probed; "
                "`manage.py sync transactions` finds them"
            )
        elif run.kind == SyncRun.Kind.CHARGERS:
            summary = (
                f"{run.updated_count:,} of {run.fetched_count:,} charge boxes answered"
                + _silent_boxes(run)
            )
        else:
            verb = "would be" if dry_run else "were"
            summary = (
                f"{run.fetched_count:,} transactions read; {run.created_count:,} new "
                f"and {run.updated_count:,} changed sessions {verb} saved with "
                f"{run.events_count:,} events"
            )
        prefix = "Dry run: " if dry_run else f"Run #{run.pk} {run.status}: "
        if run.status == SyncRun.Status.FAILED:
            raise CommandError(f"{prefix}{run.error}")
        # A probe that no charge box answered ran, but says something is wrong:
        # SteVe hears from no station.
        unheard = run.kind == SyncRun.Kind.CHARGERS and not run.updated_count
        style = (
            self.style.SUCCESS
            if run.status == SyncRun.Status.SUCCEEDED and not unheard
            else self.style.WARNING
        )
        self.stdout.write(style(f"{prefix}{summary}."))
        if run.error:
            self.stdout.write(self.style.WARNING(run.error))

    def _status(self, limit: int, max_age: int | None) -> None:
        runs = list(SyncRun.objects.newest_first()[:limit])
        if not runs:
            self.stdout.write(
                "No sync has run yet. Start one with `manage.py sync transactions`."
            )
            if max_age is not None:
                raise CommandError("No transactions sync has finished yet.")
            return
        rows = [
            (
                f"#{run.pk}",
                # A resync names its transaction, as the Sync runs page does.
                f"{run.kind} #{run.steve_transaction_id}"
                if run.steve_transaction_id
                else run.kind,
                run.trigger,
                timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S"),
                _seconds(run),
                run.status,
                str(run.fetched_count),
                str(run.created_count),
                str(run.updated_count),
                str(run.events_count),
                textwrap.shorten(run.error, ERROR_COLUMN, placeholder="…"),
            )
            for run in runs
        ]
        header = (
            "run", "kind", "trigger", "started", "took", "status",
            "fetched", "new", "changed", "events", "error",
        )  # fmt: skip
        widths = [
            max(len(row[i]) for row in [header, *rows]) for i in range(len(header))
        ]
        for row in [header, *rows]:
            line = "  ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            )
            self.stdout.write(line.rstrip())
        failures = _newest_failures()
        if failures:
            # Exit status 1, so monitoring that runs this command can alert; the
            # sentence in full says what to do next.
            raise CommandError(
                "\n".join(
                    f"Run #{run.pk}, {what}, failed: {run.error}"
                    for what, run in failures
                )
            )
        latest = runs[0]
        if latest.error and len(latest.error) > ERROR_COLUMN:
            self.stdout.write(f"\nRun #{latest.pk}: {latest.error}")
        if max_age is not None:
            _check_recent(max_age)


def _newest_failures() -> list[tuple[str, SyncRun]]:
    """The newest finished run, and the newest of each run beat schedules
    (transactions, the charger probe, the reconcile: a backfill beat started),
    that failed; each with what it is the newest of. A probe or a reconcile
    failing at every try is not hidden by the syncs that finish after it."""
    runs = SyncRun.objects
    newest = [
        ("the newest that has finished", runs.finished().newest_first().first()),
        (
            "the newest transactions run",
            runs.finished_of(SyncRun.Kind.TRANSACTIONS).first(),
        ),
        ("the newest charger probe", runs.finished_of(SyncRun.Kind.CHARGERS).first()),
        (
            "the newest scheduled reconcile",
            runs.finished_of(SyncRun.Kind.BACKFILL)
            .filter(trigger=SyncRun.Trigger.BEAT)
            .first(),
        ),
    ]
    failures: dict[int, tuple[str, SyncRun]] = {}
    for what, run in newest:
        if run is not None and run.status == SyncRun.Status.FAILED:
            failures.setdefault(run.pk, (what, run))
    return list(failures.values())


def _check_recent(max_age: int) -> None:
    """Raise CommandError when no transactions run finished within `max_age`
    seconds and no run that writes transactions is under way (a backfill holds
    off the syncs while it runs): nothing fails while beat, the workers or Redis
    are down, so only the runs' age tells. A run that a dead worker or command
    left `running` is not under way."""
    if services.transactions_sync_under_way():
        return
    runs = SyncRun.objects.filter(kind=SyncRun.Kind.TRANSACTIONS)
    newest = runs.finished().order_by("-finished_at", "-id").first()
    if newest is None or newest.finished_at is None:
        raise CommandError("No transactions sync has finished yet.")
    age = (timezone.now() - newest.finished_at).total_seconds()
    if age > max_age:
        raise CommandError(
            f"The newest transactions run, #{newest.pk}, finished {age:,.0f} s ago "
            f"(more than --max-age {max_age}): check that Celery beat and a worker "
            "are running and that Redis answers."
        )


def _silent_boxes(run: SyncRun) -> str:
    """The charge boxes a probe heard nothing from, to go and look at."""
    if run.updated_count >= run.fetched_count:
        return ""
    silent = sorted(
        set(
            Charger.objects.silent_since(run.started_at).values_list(
                "charge_box_id", flat=True
            )
        )
    )
    if not silent:
        return ""
    more = len(silent) - SILENT_SHOWN
    return f"; silent: {', '.join(silent[:SILENT_SHOWN])}" + (
        f" and {more} more" if more > 0 else ""
    )


def _seconds(run: SyncRun) -> str:
    if run.is_interrupted:
        return "cut off"
    duration = run.duration
    return "running" if duration is None else f"{duration.total_seconds():.1f}s"
