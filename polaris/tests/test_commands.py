"""Ops commands on a database they cannot use yet: a sentence, not a traceback."""

import signal
import subprocess
import sys
import time
import uuid
from io import StringIO
from pathlib import Path

import psycopg
from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase

from polaris.testing import (
    BASE_DIR,
    child_environment,
    current_database_url,
    free_port,
    run_python,
)
from sync.management.commands.migrate import Command as MigrateCommand
from sync.tests.factories import SyncRunFactory

DATABASE_COMMANDS = [
    ["sync", "status"],
    ["sync", "transactions"],
    ["seed_scale", "--transactions", "10"],
    ["create_api_token", "someone"],
    ["import_user_mappings", "mappings.csv"],
    ["prune_sync_runs"],
    ["bench", "--quick", "--output", "bench.json"],
]


FINALIZER_CATCHES_THE_SIGNAL = """
import os, signal, sys
import manage
import polaris.startup

class SignalledWhileFinalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)

setup = polaris.startup.setup_or_exit

def setup_after_a_finalizer(**options):
    SignalledWhileFinalized()
    setup(**options)

polaris.startup.setup_or_exit = setup_after_a_finalizer
sys.argv = ["manage.py", "sync", "status"]
manage.main()
print("ran on", file=sys.stderr)
"""


def manage(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return run_python(["manage.py", *args], env=child_environment(**env))


def wait_until_it_catches(pid: int, signum: int) -> None:
    """Until process `pid` has a handler for `signum` (Linux's SigCgt mask): a
    signal sent sooner would find Python itself still starting."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        if caught & (1 << (signum - 1)):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} never caught signal {signum}")


class DatabaseCommandTests(TransactionTestCase):
    def test_an_unmigrated_database_is_refused_with_what_to_run(self) -> None:
        name = f"polaris_unmigrated_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        self.addCleanup(self._drop_database, name)
        empty = current_database_url().replace(
            f"/{connection.settings_dict['NAME']}", f"/{name}", 1
        )

        for args in DATABASE_COMMANDS:
            with self.subTest(command=" ".join(args)):
                result = manage(args, DATABASE_URL=empty)
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("The database is missing", result.stderr)
                self.assertIn("run `manage.py migrate` first.", result.stderr)
                self.assertNotIn("Traceback", result.stderr)
        # Refusing created nothing.
        with psycopg.connect(empty) as database:
            tables = database.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        self.assertEqual(tables, (0,))

    def test_an_unreachable_database_is_named(self) -> None:
        port = free_port()
        result = manage(
            ["sync", "transactions"],
            DATABASE_URL=f"postgres://polaris@127.0.0.1:{port}/polaris",
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(
            f"The database is unavailable at 127.0.0.1:{port} (Connection refused).",
            result.stderr,
        )
        self.assertIn(
            "the next run after the database is back catches up.", result.stderr
        )
        self.assertIn(
            "Is PostgreSQL running, and is DATABASE_URL right?", result.stderr
        )
        self.assertNotIn("Traceback", result.stderr)

    def test_migrate_names_an_unreachable_database_at_once(self) -> None:
        # Every other command's sentence sends people to migrate; it must not end
        # in the pool's timeout and a traceback.
        port = free_port()
        result = manage(
            ["migrate"], DATABASE_URL=f"postgres://polaris@127.0.0.1:{port}/polaris"
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(
            f"The database is unavailable at 127.0.0.1:{port} (Connection refused). "
            "Nothing was changed.",
            result.stderr,
        )
        self.assertNotIn("Traceback", result.stderr)

    def test_a_signal_while_starting_ends_it_with_one_line(self) -> None:
        # Importing Django and setting up take a second or two, in which cron's
        # SIGTERM or a closed terminal's SIGHUP used to end it without a word.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with self.subTest(signal=signum.name):
                starting = subprocess.Popen(
                    [sys.executable, "manage.py", "sync", "status"],
                    cwd=BASE_DIR,
                    env=child_environment(),
                    stderr=subprocess.PIPE,
                    text=True,
                )
                # Python catches SIGINT from its first moment; manage.py sets
                # its three handlers at once, SIGHUP's last.
                wait_until_it_catches(starting.pid, signal.SIGHUP)
                starting.send_signal(signum)
                _, errors = starting.communicate(timeout=60)
                self.assertEqual(starting.returncode, 128 + signum, errors)
                self.assertEqual(
                    errors,
                    "Interrupted: Polaris was still starting; nothing was changed.\n",
                )

    def test_a_signal_handled_inside_a_finalizer_still_ends_the_start(self) -> None:
        # Python reports and ignores an exception raised in a __del__; a signal
        # can land there at any moment of importing, and the command ran on.
        result = run_python(["-c", FINALIZER_CATCHES_THE_SIGNAL])
        self.assertEqual(result.returncode, 128 + signal.SIGTERM, result.stderr)
        self.assertTrue(
            result.stderr.startswith(
                "Interrupted: Polaris was still starting; nothing was changed.\n"
            ),
            result.stderr,
        )
        self.assertNotIn("ran on", result.stderr)

    def test_a_missing_database_is_named_at_once(self) -> None:
        # The server answers: its reason is the message, not a pool's timeout.
        missing = current_database_url().replace(
            f"/{connection.settings_dict['NAME']}", "/polaris_no_such_database", 1
        )
        result = manage(["sync", "status"], DATABASE_URL=missing)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(
            '(database "polaris_no_such_database" does not exist). Nothing was '
            "changed.",
            result.stderr,
        )
        self.assertNotIn("WARNING", result.stderr)

    def test_a_reader_that_goes_away_ends_the_command_quietly(self) -> None:
        # `manage.py sync status --limit 1000 | head -1`: no BrokenPipeError
        # traceback once head has what it wants.
        # More rows than a pipe holds (64 KiB), so the command is still writing
        # when its reader goes away.
        SyncRunFactory.create_batch(1000)
        status = subprocess.Popen(
            [sys.executable, "manage.py", "sync", "status", "--limit", "1000"],
            cwd=BASE_DIR,
            env=child_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert status.stdout is not None and status.stderr is not None
        self.assertTrue(status.stdout.readline().startswith("run "))
        status.stdout.close()
        errors = status.stderr.read()
        status.wait(timeout=30)
        self.assertEqual(status.returncode, 128 + signal.SIGPIPE, errors)
        self.assertEqual(errors, "")

    @staticmethod
    def _drop_database(name: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class MigrateProgressLineTests(SimpleTestCase):
    def test_a_stop_mid_migration_ends_its_progress_line_first(self) -> None:
        # "Applying …..." waits on its line for " OK": "Interrupted: …" (stderr)
        # would otherwise follow it on the same line of the terminal.
        out = StringIO()
        command = MigrateCommand(stdout=out)
        command.verbosity = 1
        command.migration_progress_callback("apply_start", "sync.0017_meter_dip")
        command.end_progress_line()
        self.assertEqual(out.getvalue(), "  Applying sync.0017_meter_dip...\n")
        command.migration_progress_callback("apply_success", "sync.0017_meter_dip")
        command.end_progress_line()
        self.assertEqual(out.getvalue(), "  Applying sync.0017_meter_dip...\n OK\n")
