"""Django's migrate, with the ops commands' start: a database it cannot reach is
named at once, in a sentence, instead of after the pool's timeout in a traceback."""

from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrateCommand

from polaris.commands import DatabaseCommand


class Command(DatabaseCommand, DjangoMigrateCommand):
    # It is what the other commands' migrations check asks for.
    requires_migrations_checks = False
    interrupted_consequence_text = (
        "the migrations applied before stay; the one being applied was rolled "
        "back. Run migrate again to finish."
    )

    in_progress = False

    def handle(self, *args: Any, **options: Any) -> None:
        self.check_database_reachable()
        super().handle(*args, **options)

    def migration_progress_callback(
        self, action: str, migration: Any = None, fake: bool = False
    ) -> None:
        super().migration_progress_callback(action, migration, fake)
        # "Applying sync.0017_…..." waits on its line for " OK".
        self.in_progress = self.verbosity >= 1 and action.endswith("_start")

    def end_progress_line(self) -> None:
        if self.in_progress:
            self.stdout.write("")
