"""The base of the ops commands that read or write the database."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import OperationalError


class DatabaseCommand(BaseCommand):
    """Refuses to start, with a sentence saying what to do, on a database it cannot
    reach or one that is not migrated yet: otherwise the first query would end the
    command in a traceback, part way through its work."""

    requires_migrations_checks = True
    # What being unable to reach the database means for this command, said after
    # the sentence that it is unavailable.
    database_unavailable_consequence = "Nothing was changed."

    def check_migrations(self) -> None:
        try:
            executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except OperationalError as error:
            raise self.database_unavailable(error) from None
        if plan:
            apps = ", ".join(sorted({migration.app_label for migration, _ in plan}))
            raise CommandError(
                f"The database is missing {len(plan)} migration(s) ({apps}): run "
                "`manage.py migrate` first."
            )

    def database_unavailable(self, error: OperationalError) -> CommandError:
        settings = connections[DEFAULT_DB_ALIAS].settings_dict
        where = ":".join(filter(None, [settings["HOST"], str(settings["PORT"] or "")]))
        reason = str(error).strip().splitlines()[0]
        return CommandError(
            f"The database is unavailable at {where or 'the local socket'} ({reason})."
            f" {self.database_unavailable_consequence} Is PostgreSQL running, and is "
            "DATABASE_URL right?"
        )
