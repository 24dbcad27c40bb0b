"""`manage.py demo`, README's command that runs the product, end to end.

It starts as on a new machine: no DATABASE_URL or REDIS_URL, an empty data folder,
so it brings up its own embedded PostgreSQL and Valkey beside the test suite's.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import psutil
import requests
from django.conf import settings
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from polaris.testing import child_environment, run_python
from portal.models import Reservation
from portal.tests.factories import ReservationFactory
from sync.management.commands.demo import Command
from sync.models import TransactionSyncState
from sync.services.demo import demo_lock
from sync.tests.factories import TransactionSyncStateFactory

READY_LINE = "Press Ctrl-C to stop."
# Embedded PostgreSQL's initdb, migrations and the first sync, on a busy CI machine.
START_TIMEOUT_S = 240
SYNC_INTERVAL_S = 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _signed_in(base: str, username: str, password: str) -> requests.Session:
    browser = requests.Session()
    login = browser.get(f"{base}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert token, login.text
    browser.post(
        f"{base}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": token.group(1),
        },
        timeout=10,
    ).raise_for_status()
    return browser


def embedded_environment(data: str, **overrides: str) -> dict[str, str]:
    """This environment for a demo of its own: embedded servers in `data`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        POLARIS_DATA_DIR=data, DJANGO_SETTINGS_MODULE="polaris.settings", **overrides
    )
    return env


class DemoCommandTests(SimpleTestCase):
    def test_it_serves_both_sites_syncs_on_its_beat_stops_everything_and_restarts(
        self,
    ) -> None:
        with tempfile.TemporaryDirectory() as data:
            first = self._run_demo(data, self._check_the_running_product)
            # Started again in the same folder, as after a Ctrl-C: its stand-in is
            # a new SteVe numbering transactions from 1, so the last demo's history
            # goes instead of being overwritten by transactions that share its ids.
            # This time its terminal closes (SIGHUP): it stops everything as well.
            # This time SteVe goes away while it runs, and the product goes on.
            second = self._run_demo(
                data, self._check_it_outlives_its_stand_in, stop_with=signal.SIGHUP
            )
            # Each demo's child logs start afresh; the last demo's are kept.
            for child in ("web", "worker", "beat", "stand-in"):
                log = Path(data) / f"demo-{child}.log"
                self.assertTrue(log.with_name(f"{log.name}.1").stat().st_size)
                self.assertTrue(log.stat().st_size)
        synced = re.compile(r"First sync: (\d+) sessions")
        self.assertNotIn("history is cleared", first)
        # Its own sentence says what the first sync did; the service's INFO line
        # would repeat it.
        self.assertNotIn(" INFO ", first)
        self.assertIn("the last demo's charging history is cleared", second)
        self.assertEqual(synced.search(second)[1], synced.search(first)[1])

    def _run_demo(
        self,
        data: str,
        check: Callable[[str], object],
        stop_with: signal.Signals = signal.SIGINT,
    ) -> str:
        """Run the demo in the data folder `data` until `check` of its web address
        is done, stop it with `stop_with` (Ctrl-C), and return what it printed."""
        web_port, standin_port = _free_port(), _free_port()
        log_path = Path(data) / "demo-output.txt"
        self.standin_port, self.log_path = standin_port, log_path
        env = embedded_environment(data, SYNC_INTERVAL_SECONDS=str(SYNC_INTERVAL_S))
        with log_path.open("w") as log:
            demo = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "demo",
                    f"--port={web_port}",
                    f"--standin-port={standin_port}",
                    "--fleet-size=3",
                ],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.demo_pid = demo.pid
        try:
            self._wait_until_ready(demo, log_path)
            check(f"http://127.0.0.1:{web_port}")
        finally:
            demo.send_signal(stop_with)
            demo.wait(timeout=60)
        output = log_path.read_text()
        # The shell's status for the signal, as every command stopped so.
        self.assertEqual(demo.returncode, 128 + stop_with, output)
        self.assertIn("Polaris demo stopped.", output)
        # How to sync by hand beside it, with this demo's stand-in.
        self.assertIn(f"STEVE_URL=http://127.0.0.1:{standin_port}/steve ", output)
        self.assertFalse(_is_listening(web_port))
        self.assertFalse(_is_listening(standin_port))
        # The embedded PostgreSQL removes its pid file when it shuts down.
        self.assertFalse(list(Path(data).glob("**/postmaster.pid")))
        return output

    def _wait_until_ready(self, demo: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY_LINE not in log.read_text():
            if demo.poll() is not None or time.monotonic() > deadline:
                self.fail(f"The demo did not start:\n{log.read_text()}")
            time.sleep(0.5)

    def _check_the_table_has_rows(self, base: str) -> requests.Session:
        staff = _signed_in(base, "admin", "admin")
        sessions = staff.get(f"{base}/admin/sessions/", timeout=10)
        self.assertEqual(sessions.status_code, 200)
        # The first sync ran before the web started: the table has rows.
        self.assertRegex(sessions.text, r"[1-9][\d,]* sessions match current filters")
        return staff

    def _check_it_outlives_its_stand_in(self, base: str) -> None:
        staff = self._check_the_table_has_rows(base)
        (standin,) = [
            process
            for process in psutil.process_iter(["cmdline"])
            if "sync.standin" in (process.info["cmdline"] or [])
            and str(self.standin_port) in process.info["cmdline"]
        ]
        standin.kill()
        deadline = time.monotonic() + 30
        while "The SteVe stand-in stopped" not in self.log_path.read_text():
            if time.monotonic() > deadline:
                self.fail(f"The demo said nothing:\n{self.log_path.read_text()}")
            time.sleep(0.5)
        # Still serving, and saying what a deployment whose SteVe is down says.
        deadline = time.monotonic() + 6 * SYNC_INTERVAL_S
        while time.monotonic() < deadline:
            page = staff.get(f"{base}/admin/sessions/", timeout=10)
            self.assertEqual(page.status_code, 200)
            if "Sync failing" in page.text:
                return
            time.sleep(1)
        self.fail("No failed sync run was reported after the stand-in stopped.")

    def _check_the_running_product(self, base: str) -> None:
        staff = self._check_the_table_has_rows(base)

        driver = _signed_in(base, "driver1@example.com", "driver")
        dashboard = driver.get(f"{base}/", timeout=10)
        self.assertEqual(dashboard.status_code, 200)
        self.assertIn("driver1@example.com", dashboard.text)

        # A worker that dies (killed outright, as by the out-of-memory killer) is
        # started again: the scheduled runs go on.
        def scheduled_runs() -> int:
            runs = staff.get(f"{base}/admin/sync-runs/", timeout=10).text
            return len(re.findall(r'data-label="Trigger">Schedule<', runs))

        before = scheduled_runs()
        (worker,) = [
            child
            for child in psutil.Process(self.demo_pid).children()
            if "worker" in child.cmdline() and "celery" in child.cmdline()
        ]
        pool = worker.children()
        self.assertTrue(pool)
        worker.kill()
        deadline = time.monotonic() + 30
        while "starting it again" not in self.log_path.read_text():
            if time.monotonic() > deadline:
                self.fail(f"The demo said nothing:\n{self.log_path.read_text()}")
            time.sleep(0.5)
        self.assertIn(
            f"The worker process exited with code {-signal.SIGKILL}",
            self.log_path.read_text(),
        )
        # Its pool's processes end with it: none takes tasks beside the new
        # worker's.
        _, left = psutil.wait_procs(pool, timeout=10)
        self.assertEqual(left, [])

        # The beat has the (new) worker sync on its schedule.
        deadline = time.monotonic() + 6 * SYNC_INTERVAL_S
        while time.monotonic() < deadline:
            if scheduled_runs() > before:
                return
            time.sleep(1)
        self.fail("No scheduled sync run appeared on the Sync runs page.")


def run_demo(**env: str) -> subprocess.CompletedProcess[str]:
    return run_python(
        [
            "manage.py",
            "demo",
            f"--port={_free_port()}",
            f"--standin-port={_free_port()}",
        ],
        env=child_environment(**env),
    )


class DemoRefusalTests(TransactionTestCase):
    """A demo that cannot run says so before it starts anything."""

    def test_a_second_demo_on_the_same_database_is_refused(self) -> None:
        with demo_lock(port=8123):
            result = run_demo()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(),
            "CommandError: Another demo is already running on this database "
            "(http://127.0.0.1:8123/). Stop it with Ctrl-C in its terminal first: "
            "two demos would sync two stand-in fleets into the same tables.",
        )
        self.assertNotIn("Starting", result.stdout)

    def test_a_database_a_load_test_holds_is_refused(self) -> None:
        with demo_lock(port=None):
            result = run_demo()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(),
            "CommandError: A load test is running on this database; start the demo "
            "once it has finished, or give the demo another DATABASE_URL.",
        )

    def test_a_configured_database_with_synced_sessions_is_left_alone(self) -> None:
        TransactionSyncStateFactory.create_batch(2)
        # A migration it has not applied (a data migration, harmless to apply
        # twice): refused, the database is not migrated first either.
        unapplied = ("sessions_app", "0004_backfill_remote_start_returned_at")
        applied = MigrationRecorder(connection).migration_qs
        applied.filter(app=unapplied[0], name=unapplied[1]).delete()
        self.addCleanup(applied.get_or_create, app=unapplied[0], name=unapplied[1])
        result = run_demo()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(),
            "CommandError: This database already holds 2 synced sessions. The "
            "demo's SteVe stand-in starts afresh, and its transactions would "
            "overwrite them: run the demo on an empty database, or unset "
            "DATABASE_URL to use the embedded one.",
        )
        self.assertNotIn("Starting", result.stdout)
        # It never ran, so it does not say it stopped.
        self.assertNotIn("stopped", result.stdout)
        self.assertEqual(TransactionSyncState.objects.count(), 2)
        self.assertFalse(applied.filter(app=unapplied[0], name=unapplied[1]).exists())

    def test_a_configured_database_with_reservations_only_is_left_alone(
        self,
    ) -> None:
        # No synced session, but history the demo's own would clear.
        ReservationFactory()
        result = run_demo()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(),
            "CommandError: This database already holds 0 sessions, 0 API sessions, "
            "1 reservation. The demo's SteVe stand-in starts afresh, and its "
            "transactions would overwrite them: run the demo on an empty database, "
            "or unset DATABASE_URL to use the embedded one.",
        )
        self.assertEqual(Reservation.objects.count(), 1)

    def test_an_unusable_data_folder_is_refused_before_anything_starts(
        self,
    ) -> None:
        with tempfile.NamedTemporaryFile() as not_a_folder:
            folder = Path(not_a_folder.name) / "data"
            result = run_demo(POLARIS_DATA_DIR=str(folder))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(),
            f"CommandError: The data folder {folder} cannot be used (Not a "
            "directory): set POLARIS_DATA_DIR to a folder this user can write.",
        )
        self.assertEqual(result.stdout, "")

    def test_a_port_in_use_is_refused_with_what_may_hold_it(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_python(
                ["manage.py", "demo", f"--port={port}"], env=child_environment()
            )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(),
            f"CommandError: Port {port} is already in use, perhaps by a demo already "
            f"running (http://127.0.0.1:{port}/): stop that one with Ctrl-C in its "
            "terminal, or choose another port with --port.",
        )


class DemoInterruptedStartTests(SimpleTestCase):
    def start_demo(self, data: str, port: int) -> subprocess.Popen[str]:
        """A demo in the data folder `data`, once it prepares the database."""
        env = embedded_environment(data)
        demo = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "demo",
                f"--port={port}",
                f"--standin-port={_free_port()}",
                "--fleet-size=3",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert demo.stdout is not None
        self.assertEqual(demo.stdout.readline().strip(), "Preparing the database…")
        return demo

    def test_a_web_port_taken_while_it_starts_is_named(self) -> None:
        port = _free_port()
        with tempfile.TemporaryDirectory() as data:
            demo = self.start_demo(data, port)
            # Free when the demo checked it; taken before its web server starts.
            with socket.create_server(("127.0.0.1", port)):
                output = demo.communicate(timeout=START_TIMEOUT_S)[0]
        self.assertEqual(demo.returncode, 1, output)
        self.assertIn(f"CommandError: Port {port} is already in use", output)

    def test_ctrl_c_while_it_prepares_the_database_says_so_and_leaves_nothing(
        self,
    ) -> None:
        with tempfile.TemporaryDirectory() as data:
            demo = self.start_demo(data, _free_port())
            demo.send_signal(signal.SIGINT)
            output = demo.communicate(timeout=60)[0]
            self.assertEqual(demo.returncode, 130, output)
            self.assertEqual(
                output.strip().splitlines()[-1],
                "Polaris demo stopped before it started.",
            )
            # The embedded servers it started stopped with it.
            left = [
                process.info["cmdline"]
                for process in psutil.process_iter(["cmdline"])
                if data in " ".join(process.info["cmdline"] or [])
            ]
            self.assertEqual(left, [])


class DieWithParentTests(SimpleTestCase):
    def test_a_child_ends_when_the_demo_is_killed_outright(self) -> None:
        # SIGKILL runs no handler of the demo's; the kernel still ends its children,
        # so none is left holding the demo's ports.
        parent = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import subprocess, sys, time\n"
                "import django; django.setup()\n"
                "from sync.management.commands.demo import _die_with_parent\n"
                "child = subprocess.Popen([sys.executable, '-c', "
                "'import time; time.sleep(60)'], preexec_fn=_die_with_parent)\n"
                "print(child.pid, flush=True)\n"
                "time.sleep(60)\n",
            ],
            cwd=settings.BASE_DIR,
            env=child_environment(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _pid_running(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(_pid_running(child_pid))


def _pid_running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, reaped by init soon, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


class DemoChildEnvironmentTests(SimpleTestCase):
    @override_settings(ALLOWED_HOSTS=["127.0.0.1", "polaris.example.com"])
    def test_its_children_serve_plain_http_under_a_public_host_name(self) -> None:
        # A DATABASE_URL and a public name turn the HTTPS defaults on; the demo's
        # web server answers plain http on 127.0.0.1, and its readiness check
        # followed the redirect to an https nobody serves.
        with mock.patch.dict(os.environ, {"SECURE_HSTS_SECONDS": "60"}):
            env = Command()._child_environment(standin_port=8180)
        env["DJANGO_SETTINGS_MODULE"] = "polaris.settings"
        child = run_python(
            [
                "-c",
                "import django; django.setup(); from django.conf import settings as s;"
                " print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE,"
                " s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_PRELOAD)",
            ],
            env=env,
        )
        # What the person set stands.
        self.assertEqual(child.stdout.split(), ["False", "False", "60", "False"])
