"""The base of the ops commands that read or write the database."""

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import psycopg
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import OperationalError

from polaris.database import database_error_reason

# Long enough for a database across a network, short enough to say so soon.
DATABASE_PROBE_TIMEOUT_S = 5


@contextmanager
def service_logs_for(verbosity: int) -> Iterator[None]:
    """Show the log lines the services write as far as `verbosity` asks.

    A command says what happened in its own sentences; the INFO lines the same
    services write in a worker (each retry, each run's counts) would only repeat
    them, so they show from -v 2. Warnings show at the default -v 1 (Redis down: no
    live updates were sent, which no sentence of the command's says), not at -v 0,
    which is for errors and the result only.
    """
    if verbosity >= 2:
        yield
        return
    logging.disable(logging.INFO if verbosity == 1 else logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def read_input_file(path: Path, *, wanted: str = "") -> bytes:
    """The bytes of the file a command was given, or a CommandError in a sentence
    (a missing file ends with `wanted`: what to give instead)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        hint = f": {wanted}" if wanted else ""
        raise CommandError(f"There is no file at {path}{hint}.") from None
    except OSError as error:
        raise CommandError(
            f"{path} cannot be read ({error.strerror or error})."
        ) from None


class DatabaseCommand(BaseCommand):
    """Refuses to start, with a sentence saying what to do, on a database it cannot
    reach or one that is not migrated yet: otherwise the first query would end the
    command in a traceback, part way through its work."""

    requires_migrations_checks = True
    # What being unable to reach the database means for this command, said after
    # the sentence that it is unavailable.
    database_unavailable_consequence = "Nothing was changed."
    # What Ctrl-C means for this command (see `interrupted_consequence`).
    interrupted_consequence_text = (
        "what it had saved before stays; what it was saving was rolled back."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        # Ctrl-C: a line saying what was left done, not a KeyboardInterrupt
        # traceback; an open transaction has been rolled back on the way out.
        # SIGTERM (cron, systemd, `timeout`) and SIGHUP (a closed terminal) end the
        # command the same way, instead of silently.
        signal.signal(signal.SIGINT, _interrupt)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop)
        try:
            super().run_from_argv(argv)
        except Stopped as stopped:
            self.end_progress_line()
            exit_interrupted(self.interrupted_consequence(), signum=stopped.signum)
        except KeyboardInterrupt:
            self.end_progress_line()
            exit_interrupted(self.interrupted_consequence())
        except BrokenPipeError:
            # The reader went away (`sync status | head`): nothing more to say, and
            # nobody to say it to. Python would print a traceback flushing stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)

    def interrupted_consequence(self) -> str:
        """What stopping this command part way means, after "Interrupted: "."""
        return self.interrupted_consequence_text

    def end_progress_line(self) -> None:
        """End a line of progress the command left open when it was stopped, so
        that "Interrupted: …" starts a line of its own."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        with service_logs_for(options.get("verbosity", 1)):
            try:
                return super().execute(*args, **options)
            except ValidationError as error:
                # Services refuse bad input with ValidationError; a command says why.
                raise CommandError(validation_sentence(error)) from None

    def check_migrations(self) -> None:
        self.check_database_reachable()
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

    def check_database_reachable(self) -> None:
        """One plain connection, outside the pool: a refused connection, a wrong
        password or a missing database is named at once. The pool would retry for
        its whole timeout and then report only that it timed out."""
        params = connections[DEFAULT_DB_ALIAS].get_connection_params()
        try:
            psycopg.connect(**params, connect_timeout=DATABASE_PROBE_TIMEOUT_S).close()
        except psycopg.OperationalError as error:
            raise self.database_unavailable(error) from None

    def database_unavailable(self, error: Exception) -> CommandError:
        settings = connections[DEFAULT_DB_ALIAS].settings_dict
        where = ":".join(filter(None, [settings["HOST"], str(settings["PORT"] or "")]))
        reason = database_error_reason(error)
        return CommandError(
            f"The database is unavailable at {where or 'the local socket'} ({reason})."
            f" {self.database_unavailable_consequence} Is PostgreSQL running, and is "
            "DATABASE_URL right?"
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


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the command was, as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _quiet_the_pool()
    raise KeyboardInterrupt


def _stop(signum: int, frame: FrameType | None) -> None:
    _quiet_the_pool()
    raise Stopped(signum)


def _quiet_the_pool() -> None:
    """A stop in the middle of a query hands its connection back to the pool
    still busy, and the pool warns as it discards it: two lines of noise before
    the one that says what was left done. Until then its warnings are the
    command's to show."""
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def exit_interrupted(consequence: str, signum: int = signal.SIGINT) -> NoReturn:
    """End the process after Ctrl-C (or `signum`) with one line and the shell's
    status for it (128 + the signal's number)."""
    sys.stderr.write(f"Interrupted: {consequence}\n")
    sys.stderr.flush()
    sys.exit(128 + signum)
