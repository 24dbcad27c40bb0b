"""Import user mappings (SteVe idTag to portal customer) from a CSV file.

The file's header is `steveOcppIdTag,email,label`. Missing customer accounts are
created with username = email and an unusable password (staff set one in Django
admin: Polaris sends no email). Re-importing the same file changes nothing. Bad
rows are reported with their line number and skipped; the good rows are still
imported, and the command ends with status 1 so that a script notices. A file that
is not UTF-8 is refused before any row is imported. Rows are saved 1,000 lines at a
time: Ctrl-C keeps the lines above the last "Line N of M…" and the file can simply
be imported again. `--dry-run` imports the file in one database transaction and rolls
it back, so it reports exactly what the import would do and saves nothing.
"""

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.template.defaultfilters import pluralize

from polaris.commands import DatabaseCommand, read_input_file
from sync.services.imports import user_mapping_import_bytes


class Command(DatabaseCommand):
    help = (
        "Import steveOcppIdTag,email,label rows as user mappings. An email with no "
        "account gets a new customer account, with no password until staff set one in "
        "Django admin. "
        "Bad lines are named and skipped, the rest imported, and the command then "
        "exits with status 1. Importing a file again changes only what differs. A "
        "row never moves an idTag mapped to another customer (it is skipped): edit "
        "that mapping in the console."
    )
    # The line above which every row is saved, once the import has begun saving.
    saved_before_line: int | None = None
    finished = False
    dry_run = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="Path of the CSV file to import.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what the import would create, update and skip, and save "
            "nothing (no mapping, account or audit entry).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        self.dry_run = options["dry_run"]
        data = read_input_file(path)
        verbose = options["verbosity"] >= 1

        def progress(line: int, total: int) -> None:
            self.saved_before_line = line
            if verbose:
                self.stdout.write(f"Line {line} of {total}…")
                self.stdout.flush()

        # The same service as the import, so the counts are the import's own; one
        # transaction rolled back at the end keeps all of it unsaved.
        with transaction.atomic() if self.dry_run else nullcontext():
            try:
                result = user_mapping_import_bytes(
                    actor=None, data=data, source="command", progress=progress
                )
            except ValidationError as error:
                raise CommandError(f"{path}: {' '.join(error.messages)}") from None
            if self.dry_run:
                transaction.set_rollback(True)
        self.finished = True
        if not result.rows:
            raise CommandError(
                f"{path} has no rows under its header "
                "(steveOcppIdTag,email,label), so nothing was imported."
            )
        skipped_as = "would be skipped" if self.dry_run else "skipped"
        for rejected in result.rejected:
            self.stderr.write(
                self.style.WARNING(
                    f"Line {rejected.line} {skipped_as}: {rejected.reason}"
                )
            )
        accounts = (
            f"{result.users_created:,} customer "
            f"account{pluralize(result.users_created)}"
        )
        summary = (
            f"Dry run, nothing was saved. The import would give {result.counts()}, "
            f"with {accounts} created."
            if self.dry_run
            else f"{result.counts()}; {accounts} created.{result.tag_notes()}"
        )
        style = self.style.WARNING if result.rejected else self.style.SUCCESS
        self.stdout.write(style(summary))
        if result.rejected:
            # Exit status 1, so a script or a scheduler notices the skipped rows.
            skipped = len(result.rejected)
            lines = f"{skipped} line{pluralize(skipped)}"
            if self.dry_run:
                raise CommandError(
                    f"{lines} would be skipped (see above); fix them before "
                    "importing the file."
                )
            raise CommandError(
                f"{lines} skipped (see above); the other rows were imported. Fix "
                "those lines and import the file again: rows already imported come "
                "out unchanged."
            )

    def interrupted_consequence(self) -> str:
        if self.dry_run:
            return "a dry run; nothing was imported."
        if self.finished:
            return "the import had finished; only its summary is missing."
        again = (
            "import the file again to finish (rows already imported come out "
            "unchanged)."
        )
        if self.saved_before_line is None:
            return f"no row was imported; {again}"
        return (
            f"the rows above line {self.saved_before_line} were imported and the "
            f"rest were not; {again}"
        )
