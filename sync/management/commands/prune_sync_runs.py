"""Delete the sync runs that changed nothing, once older than a number of days.

Beat does this daily with SYNC_RUNS_RETENTION_DAYS: a run every 10 s adds 8,640 rows
a day, nearly all of which found nothing to change. This command runs the same
service by hand, for another age or to see first how many would go. Runs that
created or updated a session or synced events are never deleted.
"""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.template.defaultfilters import pluralize

from polaris.commands import DatabaseCommand
from sync.arguments import int_between
from sync.services import sync_runs_prune

MAX_DAYS = 3650


class Command(DatabaseCommand):
    help = (
        "Delete the sync runs that changed nothing (no session, no event) and "
        "started more than --days days ago."
    )
    interrupted_consequence_text = (
        "the runs deleted so far stay deleted; run it again to finish."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int_between(1, MAX_DAYS, what="a number of days"),
            default=settings.SYNC_RUNS_RETENTION_DAYS,
            help="Delete runs older than this many days, 1 to "
            f"{MAX_DAYS:,} (default SYNC_RUNS_RETENTION_DAYS, "
            f"{settings.SYNC_RUNS_RETENTION_DAYS}).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the runs that would be deleted, and delete nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days, dry_run = options["days"], options["dry_run"]

        def progress(deleted: int) -> None:
            # A first prune can take a while: it says how far it got.
            if options["verbosity"] >= 1:
                self.stdout.write(f"{deleted:,} deleted…")
                self.stdout.flush()

        count = sync_runs_prune(
            older_than=timedelta(days=days), dry_run=dry_run, progress=progress
        )
        verb = "would be" if dry_run else "were"
        self.stdout.write(
            self.style.SUCCESS(
                f"{count:,} sync run{pluralize(count)} older than {days} "
                f"day{pluralize(days)} that changed nothing {verb} deleted."
            )
        )
