"""The base of the ops commands that read or write the database."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import OperationalError


class DatabaseCommand(BaseCommand):
    """Refuses to start, with a sentence saying what to do, on a database it cannot
    reach or one that is not migrated yet: otherwise the first query would end the
    command in a traceback, part way through its work."""

    requires_migrations_checks = True
    # What an unreachable database means for this command's work, if anything.
    unreachable_note = ""

    def execute(self, *args: Any, **options: Any) -> str | None:
        # Services refuse bad input with ValidationError; a command says why.
        try:
            return super().execute(*args, **options)
        except ValidationError as error:
            raise CommandError(validation_sentence(error)) from None

    def check_migrations(self) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except OperationalError as error:
            settings = connection.settings_dict
            where = ":".join(filter(None, [settings["HOST"], str(settings["PORT"])]))
            raise CommandError(
                f"Cannot reach PostgreSQL at {where or 'its socket'} ({error}). "
                f"Is it running, and is DATABASE_URL right?{self.unreachable_note}"
            ) from None
        if plan:
            apps = ", ".join(sorted({migration.app_label for migration, _ in plan}))
            raise CommandError(
                f"The database is missing {len(plan)} migration(s) ({apps}): run "
                "`manage.py migrate` first."
            )


def validation_sentence(error: ValidationError) -> str:
    """The messages of `error`, each field's prefixed with its name."""
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    return " ".join(
        message if field == "__all__" else f"{field.replace('_', ' ')}: {message}"
        for field, messages in error.message_dict.items()
        for message in messages
    )
