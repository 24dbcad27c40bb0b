"""Run the whole product on one machine with one command.

With nothing configured it uses the embedded PostgreSQL and Valkey, migrates, loads
deterministic demo data, and starts the SteVe stand-in with a small live fleet, a
Celery worker, exactly one Celery beat and uvicorn (ASGI, which the live updates
need). Ctrl-C or SIGTERM stops every child process and the embedded servers.
"""

import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.template.defaultfilters import pluralize

from polaris import embedded
from polaris.commands import service_logs_for
from polaris.database import database_error_reason
from polaris.handlers import uvicorn_command
from sync import services
from sync.arguments import int_between
from sync.client import SteveClient, SteveError
from sync.models import SyncRun
from sync.services import demo
from sync.standin.server import add_fleet_size_argument

STANDIN_USERNAME = "polaris"
STANDIN_PASSWORD = "polaris"
# The stand-in's process name, in its log file's name and in what the demo says.
STANDIN = "stand-in"
# settings.py's HTTPS defaults, off for the demo's children unless set.
PLAIN_HTTP = {
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_COOKIES": "false",
    "SECURE_HSTS_SECONDS": "0",
    "SECURE_HSTS_PRELOAD": "false",
}
# Polaris's own processes: one that dies while the demo serves is started again
# (a worker killed by the out-of-memory killer, say), unless it keeps dying.
RESTARTED = ("worker", "beat", "web")
RESTARTS_ALLOWED = 3
RESTART_WINDOW_S = 60


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In a child, before it runs: have Linux send it SIGTERM when the demo dies,
    even of SIGKILL, which no handler of ours sees; otherwise the worker, beat,
    web server and stand-in would live on without it and hold its port."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = "Run Polaris Express locally: database, stand-in, worker, beat and web."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int_between(1, 65535, what="a port"),
            default=8000,
            help="Web port (default 8000).",
        )
        parser.add_argument(
            "--standin-port",
            type=int_between(1, 65535, what="a port"),
            default=8180,
            help="SteVe stand-in port (default 8180; a free one if it is taken).",
        )
        add_fleet_size_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        if not _port_is_free(port):
            raise CommandError(_port_in_use(port))
        try:
            # The children's logs and the beat's schedule go there.
            embedded.data_dir()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        try:
            with demo.demo_lock(port=port):
                self._run(port, options)
        except demo.DemoRunning as running:
            if running.by_load_test:
                raise CommandError(
                    "A load test is running on this database; start the demo once "
                    "it has finished, or give the demo another DATABASE_URL."
                ) from None
            where = f" ({running.where})" if running.where else ""
            raise CommandError(
                f"Another demo is already running on this database{where}. Stop it "
                "with Ctrl-C in its terminal first: two demos would sync two "
                "stand-in fleets into the same tables."
            ) from None
        except psycopg.OperationalError as error:
            raise CommandError(
                f"The database is unavailable ({database_error_reason(error)}). Is "
                "PostgreSQL running, and is DATABASE_URL right?"
            ) from None

    def _run(self, port: int, options: dict[str, Any]) -> None:
        self.port = port
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarted_at: dict[str, list[float]] = {}
        self.stopped_by: int | None = None
        # SIGHUP: the terminal closed, or the SSH session dropped.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            self._prepare_database()
            self._stop_if_asked()
            standin_port = options["standin_port"]
            # The web port is free until uvicorn takes it, after the stand-in.
            if standin_port == port or not _port_is_free(standin_port):
                asked, standin_port = standin_port, _free_port()
                self.stdout.write(
                    f"Port {asked} is taken; the SteVe stand-in listens on "
                    f"{standin_port} instead."
                )
            env = self._child_environment(standin_port)
            self._start_standin(env, standin_port, options["fleet_size"])
            with service_logs_for(options["verbosity"]):
                self._first_sync(env)
            self._start("worker", self._celery("worker", "--concurrency", "2"), env)
            self._start(
                "beat", self._celery("beat", "--schedule", self._beat_file()), env
            )
            self._start("web", uvicorn_command(port, access_log=False), env)
            self._wait_until_serving(port)
            self._print_welcome(port, env["STEVE_URL"])
            self._supervise()
        except KeyboardInterrupt:
            pass
        finally:
            # A second Ctrl-C must not cut the shutdown short (and skip the
            # SIGKILL of a child that ignores SIGTERM).
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            started = bool(self.children)
            self._stop_children()
            # Before the embedded PostgreSQL stops: a pooled connection it cut
            # would be reported as rolled back.
            connections.close_all()
            embedded.leave_servers()
            if started:
                self.stdout.write("Polaris demo stopped.")
            elif self.stopped_by is not None:
                # Refused before its first child (a database with history), it
                # never ran: its refusal is the last word. Stopped then, it says so.
                self.stdout.write("Polaris demo stopped before it started.")
        if self.stopped_by is not None:
            # The shell's status for the signal, as every command stopped so.
            sys.exit(128 + self.stopped_by)

    # Set-up

    def _prepare_database(self) -> None:
        self.stdout.write("Preparing the database…")
        # Asked before migrating: a DATABASE_URL naming a real database (a shell
        # of production's) is refused as it is, not migrated first.
        if not settings.LOCAL_MODE and (sessions := demo.synced_session_count()):
            self._refuse_history(f"{sessions:,} synced sessions")
        call_command("migrate", interactive=False, verbosity=0)
        self._clear_standin_history()
        demo.demo_accounts_create()
        demo.demo_billing_create()

    def _clear_standin_history(self) -> None:
        """The stand-in starts as a new SteVe whose transaction ids would meet the
        stored ones: the sync would take its transactions for the stored ones."""
        history = demo.demo_history()
        if not history:
            return
        if not settings.LOCAL_MODE:
            self._refuse_history(_counted(history))
        cleared = demo.demo_history_clear()
        self.stdout.write(
            "The stand-in is a new SteVe on every start, so the last demo's charging "
            f"history is cleared: {_counted(cleared)}. Accounts, mappings, rates and "
            "plans stay."
        )

    def _refuse_history(self, held: str) -> NoReturn:
        """Refuse a database given by DATABASE_URL that holds charging history:
        the demo clears only its own embedded one."""
        raise CommandError(
            f"This database already holds {held}. The demo's SteVe stand-in starts "
            "afresh, and its transactions would overwrite them: run the demo on an "
            "empty database, or unset DATABASE_URL to use the embedded one."
        )

    def _child_environment(self, standin_port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=settings.DATABASE_URL,
            REDIS_URL=settings.REDIS_URL,
            SECRET_KEY=str(settings.SECRET_KEY),
            ALLOWED_HOSTS=",".join(
                settings.ALLOWED_HOSTS or ["127.0.0.1", "localhost"]
            ),
            STEVE_URL=f"http://127.0.0.1:{standin_port}/steve",
            STEVE_USERNAME=STANDIN_USERNAME,
            STEVE_PASSWORD=STANDIN_PASSWORD,
            PYTHONUNBUFFERED="1",
        )
        # The demo serves plain http on 127.0.0.1. A database given by
        # DATABASE_URL and a public name in ALLOWED_HOSTS turn the production
        # HTTPS defaults on, which would send every request to an https nobody
        # serves; what the person set themselves stands.
        for name, plain_http in PLAIN_HTTP.items():
            env.setdefault(name, plain_http)
        return env

    def _start_standin(self, env: dict[str, str], port: int, fleet_size: int) -> None:
        self._start(
            STANDIN,
            [
                sys.executable,
                "-m",
                "sync.standin",
                "--port",
                str(port),
                "--fleet-size",
                str(fleet_size),
                "--seed",
                "1",
            ],
            env,
        )
        health = env["STEVE_URL"].removesuffix("/steve") + "/_standin/health"
        self._wait_for(lambda: _answers(health, timeout=1), "the SteVe stand-in")

    def _first_sync(self, env: dict[str, str]) -> None:
        """Sync once before the web starts, so the first page already has data."""
        client = SteveClient(
            base_url=env["STEVE_URL"],
            username=env["STEVE_USERNAME"],
            password=env["STEVE_PASSWORD"],
        )
        try:
            run = services.sync_run_transactions(
                trigger=SyncRun.Trigger.COMMAND, client=client
            )
            services.sync_run_chargers(trigger=SyncRun.Trigger.COMMAND, client=client)
        except (services.SyncBusy, SteveError):
            return  # the beat catches up within SYNC_INTERVAL_SECONDS
        finally:
            client.close()
        demo.demo_chargers_name()
        self.stdout.write(
            f"First sync: {run.created_count} sessions, {run.events_count} events."
        )

    def _celery(self, *arguments: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "polaris",
            *arguments,
            "-l",
            "info",
        ]

    def _beat_file(self) -> str:
        return str(embedded.data_dir() / "celerybeat-schedule")

    # Processes

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.stdout.write(f"Starting {name}…")
        self._stop_if_asked()
        log_path = embedded.data_dir() / f"demo-{name}.log"
        if name not in self.commands and log_path.exists():
            # Each demo starts its logs afresh, keeping the last demo's beside
            # them: appended to run after run, they grew by megabytes a day.
            log_path.replace(log_path.with_name(f"{log_path.name}.1"))
        self.commands[name] = (command, env)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=settings.BASE_DIR,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.children.append((name, process))

    def _wait_for(
        self, ready: Callable[[], bool], what: str, timeout: float = 30
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._stop_if_asked()
            self._check_children()
            if ready():
                return
            time.sleep(0.2)
        raise CommandError(f"{what} did not start within {timeout:g} s.")

    def _wait_until_serving(self, port: int) -> None:
        url = f"http://127.0.0.1:{port}/accounts/login/"
        self._wait_for(lambda: _answers(url, timeout=2), "The web server")

    def _check_children(self, *, serving: bool = False) -> None:
        for name, process in list(self.children):
            if process.poll() is None:
                continue
            log = embedded.data_dir() / f"demo-{name}.log"
            if serving and name == STANDIN:
                # Polaris without SteVe is a case it handles, not a reason to stop
                # serving: the demo goes on as a deployment would.
                self.children.remove((name, process))
                self.stderr.write(
                    f"The SteVe stand-in stopped (exit code {process.returncode}; its "
                    f"log is {log}). Polaris keeps running as with SteVe down: sync "
                    "runs fail and the pages say so. Restart the demo to bring the "
                    "stand-in back."
                )
                continue
            if serving and name in RESTARTED and self._may_restart(name):
                self.children.remove((name, process))
                self.stderr.write(
                    f"The {name} process exited with code {process.returncode} "
                    f"(its log is {log}); starting it again."
                )
                self._start(name, *self.commands[name])
                continue
            if name == "web" and not serving and not _port_is_free(self.port):
                # Taken since the demo checked it, while the database was readied.
                raise CommandError(_port_in_use(self.port))
            raise CommandError(
                f"The {name} process exited with code {process.returncode}; "
                f"its log is {log}."
            )

    def _may_restart(self, name: str) -> bool:
        """Whether `name` has been started again fewer than RESTARTS_ALLOWED times
        within RESTART_WINDOW_S: one that keeps dying ends the demo instead."""
        now = time.monotonic()
        recent = [
            at for at in self.restarted_at.get(name, []) if now - at < RESTART_WINDOW_S
        ]
        if len(recent) >= RESTARTS_ALLOWED:
            return False
        self.restarted_at[name] = [*recent, now]
        return True

    def _supervise(self) -> None:
        while True:
            self._stop_if_asked()
            self._check_children(serving=True)
            time.sleep(1)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopped_by = signum
        raise KeyboardInterrupt

    def _stop_if_asked(self) -> None:
        """Stop now if a signal came. Its KeyboardInterrupt is lost when it lands
        in a finalizer or a weakref callback (Python prints "Exception ignored"
        and goes on), so each step of the start checks the flag as well."""
        if self.stopped_by is not None:
            raise KeyboardInterrupt

    def _stop_children(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in reversed(self.children):
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _print_welcome(self, port: int, steve_url: str) -> None:
        base = f"http://127.0.0.1:{port}"
        lines = [
            "",
            self.style.SUCCESS("Polaris Express is running."),
            f"  Admin console    {base}/admin/sessions/   "
            f"(login {demo.STAFF_USERNAME} / {demo.STAFF_PASSWORD})",
            f"  Customer portal  {base}/   "
            f"(login driver1@example.com / {demo.DRIVER_PASSWORD}; driver2, driver3)",
            f"  Django admin     {base}/django-admin/",
            f"  SteVe stand-in   {steve_url}/api/v1/transactions "
            f"(Basic {STANDIN_USERNAME} / {STANDIN_PASSWORD})",
            f"  Logs             {embedded.data_dir()}/demo-*.log",
            # Commands in another terminal default to a stand-in on 8180: without
            # this one's URL they would sync another fleet, or fail, into this
            # demo's database.
            f"  Sync by hand     STEVE_URL={steve_url} "
            f"STEVE_USERNAME={STANDIN_USERNAME} STEVE_PASSWORD={STANDIN_PASSWORD} "
            f"{sys.executable} manage.py sync transactions",
            f"Syncing every {settings.SYNC_INTERVAL_SECONDS} s. Press Ctrl-C to stop.",
            "",
        ]
        self.stdout.write("\n".join(lines))


def _port_in_use(port: int) -> str:
    return (
        f"Port {port} is already in use, perhaps by a demo already running "
        f"(http://127.0.0.1:{port}/): stop that one with Ctrl-C in its "
        "terminal, or choose another port with --port."
    )


def _answers(url: str, timeout: float) -> bool:
    """True once `url` answers 200 OK. (The SteVe client is the only code that
    speaks to SteVe; these are health checks of our own processes.)"""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        # Refused, reset, timed out, or an error status (HTTPError is an OSError).
        return False


def _counted(history: demo.StandinHistory) -> str:
    """'3 sessions, 1 API session, 0 reservations'."""
    return ", ".join(
        f"{number:,} {noun}{pluralize(number)}"
        for number, noun in [
            (history.sessions, "session"),
            (history.api_sessions, "API session"),
            (history.reservations, "reservation"),
        ]
    )
