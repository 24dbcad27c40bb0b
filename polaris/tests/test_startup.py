"""A malformed setting stops every entry point at start with one sentence naming the
variable: manage.py, the Celery worker and beat, the ASGI and WSGI apps."""

import os
import subprocess
import tempfile
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, TestCase

from polaris.env import application_name, env_url
from polaris.startup import redis_refuses_the_settings
from polaris.testing import child_environment, run_python

ENTRY_POINTS = {
    "manage.py": ["manage.py", "sync", "status"],
    "celery worker": ["-m", "celery", "-A", "polaris", "worker", "--pool=solo"],
    # A schedule that cannot be opened: beat deletes a file it cannot read as one
    # (it once replaced /dev/null with an empty file).
    "celery beat": [
        "-m",
        "celery",
        "-A",
        "polaris",
        "beat",
        "--schedule=/nonexistent/s",
    ],
    "asgi": ["-c", "import polaris.asgi"],
    "wsgi": ["-c", "import polaris.wsgi"],
}


def start(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return run_python(args, env=child_environment(**env))


class StartupTests(TestCase):
    """A TestCase, though it writes nothing: the children that start use the
    test database (`child_environment`), which only a database test creates and
    migrates. Run alone, a SimpleTestCase sent them to an empty database."""

    def assert_refused(
        self, result: subprocess.CompletedProcess[str], sentence: str
    ) -> None:
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stderr.strip(), f"Polaris cannot start: {sentence}")

    def test_every_entry_point_names_the_variable_without_a_traceback(self) -> None:
        for name, args in ENTRY_POINTS.items():
            with self.subTest(entry_point=name):
                self.assert_refused(
                    start(args, DEBUG="maybe"),
                    "DEBUG must be true or false (1/0, yes/no, on/off), not 'maybe'.",
                )

    def test_the_web_apps_need_allowed_hosts_outside_local_mode(self) -> None:
        # The children use this test process's DATABASE_URL: not local mode.
        for name in ["asgi", "wsgi"]:
            with self.subTest(entry_point=name):
                self.assert_refused(
                    start(ENTRY_POINTS[name], ALLOWED_HOSTS="", DEBUG="false"),
                    "ALLOWED_HOSTS must list the host names this server answers "
                    "to, comma-separated (e.g. polaris.example.com).",
                )
        # Commands and Celery answer no requests: they start without it.
        status = start(ENTRY_POINTS["manage.py"], ALLOWED_HOSTS="", DEBUG="false")
        self.assertEqual(status.returncode, 0, status.stderr)

    def test_the_web_apps_need_a_billing_backend_that_imports(self) -> None:
        for name in ["asgi", "wsgi"]:
            with self.subTest(entry_point=name):
                result = start(
                    ENTRY_POINTS[name], BILLING_BACKEND="portal.billing.Missing"
                )
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertRegex(
                    result.stderr.strip(),
                    r"^Polaris cannot start: BILLING_BACKEND must be the dotted "
                    r"path of a billing backend class, such as "
                    r"portal\.billing\.LocalBillingBackend, not "
                    r"'portal\.billing\.Missing' \(.*Missing.*\)\.$",
                )
        not_a_backend = start(ENTRY_POINTS["asgi"], BILLING_BACKEND="os.path.join")
        self.assert_refused(
            not_a_backend,
            "BILLING_BACKEND must be the dotted path of a billing backend class, "
            "such as portal.billing.LocalBillingBackend, not 'os.path.join' (it is "
            "not a class with an account_for method).",
        )
        status = start(
            ENTRY_POINTS["manage.py"], BILLING_BACKEND="portal.billing.Missing"
        )
        self.assertEqual(status.returncode, 0, status.stderr)

    def test_a_redis_database_number_redis_lacks_is_refused_at_start(self) -> None:
        # Accepted before: sign-in throttling and live updates then failed on
        # every request, and the worker retried a hundred times.
        url = urlunsplit(urlsplit(settings.REDIS_URL)._replace(path="/999"))
        for name in ["asgi", "celery worker"]:
            with self.subTest(entry_point=name):
                result = start(ENTRY_POINTS[name], REDIS_URL=url)
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("Polaris cannot start: Redis at ", result.stderr)
                self.assertIn(
                    "check REDIS_URL's database number and password.", result.stderr
                )

    def test_only_a_refusal_of_redis_url_itself_stops_a_start(self) -> None:
        # A busy, loading or failing-over Redis may answer soon: no exit.
        for error, refused in (
            (redis.ResponseError("DB index is out of range"), True),
            (redis.AuthenticationError("invalid password"), True),
            (redis.exceptions.NoPermissionError("NOPERM"), True),
            (redis.exceptions.BusyLoadingError("LOADING"), False),
            (redis.ResponseError("BUSY Redis is busy running a script"), False),
            (redis.ResponseError("MASTERDOWN Link with MASTER is down"), False),
            (redis.ConnectionError("Connection refused"), False),
        ):
            with self.subTest(error=error):
                self.assertEqual(redis_refuses_the_settings(error), refused)

    def test_each_process_names_its_database_connections(self) -> None:
        # pg_stat_activity then says which process holds a connection.
        shell = start(
            [
                "manage.py",
                "shell",
                "-c",
                "from django.db import connection\n"
                "with connection.cursor() as cursor:\n"
                "    cursor.execute('SELECT application_name FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid()')\n"
                "    print(cursor.fetchone()[0])",
            ]
        )
        self.assertEqual(shell.returncode, 0, shell.stderr)
        self.assertEqual(shell.stdout.strip().splitlines()[-1], "polaris shell")
        for argv, name in (
            (["/venv/lib/celery/__main__.py", "-A", "polaris", "worker"], "worker"),
            (["/venv/bin/celery", "-A", "polaris", "beat", "-s", "x"], "beat"),
            (["/venv/lib/uvicorn/__main__.py", "polaris.asgi:application"], "web"),
            (["-c"], "python"),
        ):
            with self.subTest(argv=argv):
                self.assertEqual(application_name(argv), f"polaris {name}")

    def test_values_that_failed_later_are_refused_at_start(self) -> None:
        cases = {
            # A traceback from dj_database_url / redis-py / requests before.
            # Their passwords are not printed: such errors end up in logs.
            "DATABASE_URL": (
                "postgres://polaris:S3cret@127.0.0.1:abc/polaris",
                "DATABASE_URL must name its port as a number from 1 to 65535, "
                "not 'postgres://polaris:***@127.0.0.1:abc/polaris'.",
            ),
            "REDIS_URL": (
                "redis://:S3cret@127.0.0.1:6379/cache",
                "REDIS_URL must end with a database number such as /0, not "
                "'redis://:***@127.0.0.1:6379/cache'.",
            ),
            "STEVE_URL": (
                "http://127.0.0.1:99999/steve",
                "STEVE_URL must name its port as a number from 1 to 65535, not "
                "'http://127.0.0.1:99999/steve'.",
            ),
            # Taken before, and then shown to staff in every failed sync's error.
            "STEVE_URL with credentials": (
                "http://polaris:S3cret@127.0.0.1:8180/steve",
                "STEVE_URL must not hold a user name or password, not "
                "'http://polaris:***@127.0.0.1:8180/steve': set STEVE_USERNAME and "
                "STEVE_PASSWORD instead.",
            ),
            # An OverflowError in the first SteVe call or pooled connection before.
            "STEVE_TIMEOUT": (
                "inf",
                "STEVE_TIMEOUT must be a number greater than 0, not inf.",
            ),
            # Accepted before, and then gave up on stations SteVe still waited for.
            "STEVE_OPERATION_TIMEOUT": (
                "20",
                "STEVE_OPERATION_TIMEOUT must be a number greater than 30, not 20.",
            ),
            "DATABASE_POOL_TIMEOUT": (
                "1e300",
                "DATABASE_POOL_TIMEOUT must be at most 3600, not 1e300.",
            ),
            # Every sync run failed, or overflowed, on its timedelta before.
            "SYNC_STUCK_AFTER_HOURS": (
                "99999999999",
                "SYNC_STUCK_AFTER_HOURS must be at most 8760, not 99999999999.",
            ),
            "SYNC_MANUAL_STOP_GRACE_HOURS": (
                "99999999999",
                "SYNC_MANUAL_STOP_GRACE_HOURS must be at most 8760, not 99999999999.",
            ),
            # Accepted before, and then never fired.
            "CELERY_TASK_SOFT_TIME_LIMIT": (
                "300",
                "CELERY_TASK_SOFT_TIME_LIMIT (300) must be below "
                "CELERY_TASK_TIME_LIMIT (150).",
            ),
            # Accepted before: a header name with a space never matches.
            "SECURE_PROXY_SSL_HEADER": (
                "X Forwarded Proto",
                "SECURE_PROXY_SSL_HEADER must be a header name such as "
                "X-Forwarded-Proto, not 'X Forwarded Proto'.",
            ),
            # Only a system check (not run by uvicorn or Celery) said so before.
            "CSRF_TRUSTED_ORIGINS": (
                "polaris.example.com",
                "CSRF_TRUSTED_ORIGINS must list origins with their scheme, such as "
                "https://polaris.example.com, not 'polaris.example.com'.",
            ),
            # Accepted before, and then every request was a 400.
            "ALLOWED_HOSTS": (
                "https://polaris.example.com",
                "ALLOWED_HOSTS must list host names, such as polaris.example.com, "
                "without a scheme or path: not 'https://polaris.example.com'.",
            ),
        }
        for case, (value, sentence) in cases.items():
            variable = case.split()[0]
            with self.subTest(case=case):
                self.assert_refused(
                    start(ENTRY_POINTS["manage.py"], **{variable: value}), sentence
                )

    def test_a_password_in_the_query_is_not_printed_either(self) -> None:
        url = "postgres://db.example:54x32/polaris?sslmode=require&Password=S3cret"
        with (
            mock.patch.dict(os.environ, {"DATABASE_URL": url}),
            self.assertRaisesMessage(
                ImproperlyConfigured,
                "not 'postgres://db.example:54x32/polaris?sslmode=require&"
                "Password=***'.",
            ),
        ):
            env_url("DATABASE_URL", schemes=("postgres",))

    def test_a_database_url_it_cannot_read_or_without_a_database_is_refused(
        self,
    ) -> None:
        # A traceback from Django or urllib before: said in a sentence now.
        for url, sentence in (
            (
                "postgres://polaris@127.0.0.1:5432/",
                "DATABASE_URL must name its database after the host, as in "
                "postgres://user@host:5432/polaris, not "
                "'postgres://polaris@127.0.0.1:5432/'.",
            ),
            (
                "postgres://polaris:S3cret@[::1/polaris",
                "DATABASE_URL must be a URL whose host is a name or an address (an "
                "IPv6 one in brackets, such as [::1]), not "
                "'postgres://polaris:***@[::1/polaris'.",
            ),
        ):
            with (
                self.subTest(url=url),
                mock.patch.dict(os.environ, {"DATABASE_URL": url}),
                self.assertRaisesMessage(ImproperlyConfigured, sentence),
            ):
                env_url("DATABASE_URL", schemes=("postgres",))

    def test_a_database_url_through_the_local_socket_is_taken(self) -> None:
        # libpq's own form: no host is the server's socket on this machine.
        for url in ("postgres:///polaris", "postgres://?host=/run/pg&dbname=polaris"):
            with (
                self.subTest(url=url),
                mock.patch.dict(os.environ, {"DATABASE_URL": url}),
            ):
                self.assertEqual(env_url("DATABASE_URL", schemes=("postgres",)), url)

    def test_an_unusable_data_folder_is_named(self) -> None:
        with tempfile.NamedTemporaryFile() as not_a_folder:
            folder = Path(not_a_folder.name) / "data"
            result = start(
                ENTRY_POINTS["manage.py"], DATABASE_URL="", POLARIS_DATA_DIR=str(folder)
            )
        self.assert_refused(
            result,
            f"The data folder {folder} cannot be used (Not a directory): set "
            "POLARIS_DATA_DIR to a folder this user can write.",
        )


SHOW_JIT = """
import django
from django.db import connection
django.setup()
with connection.cursor() as cursor:
    cursor.execute("SHOW jit")
    jit = cursor.fetchone()[0]
    cursor.execute("SHOW statement_timeout")
    print(jit, cursor.fetchone()[0])
"""


class DatabaseSessionTests(SimpleTestCase):
    def test_jit_is_off_and_options_in_the_url_are_kept(self) -> None:
        # The test process's own database, with a statement_timeout in the URL.
        url = child_environment()["DATABASE_URL"]
        joiner = "&" if "?" in url else "?"
        result = run_python(
            ["-c", SHOW_JIT],
            env=child_environment(
                DATABASE_URL=f"{url}{joiner}options=-c%20statement_timeout%3D7000"
            ),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split(), ["off", "7s"])


SHOW_LIVE_REDIS = """
import django
django.setup()
from django.conf import settings
print(settings.EVENTSTREAM_REDIS["db"], settings.LIVE_CHANNEL_PREFIX)
"""


class LiveRedisSettingsTests(SimpleTestCase):
    def test_live_events_use_redis_urls_database_and_name_it_in_their_channels(
        self,
    ) -> None:
        # Pub/sub ignores the database number: two environments on databases 4
        # and 5 of one Redis would otherwise see each other's live events.
        url = child_environment()["REDIS_URL"].rsplit("/", 1)[0]
        for env, shown in (
            ({"REDIS_URL": f"{url}/5", "LIVE_CHANNEL_PREFIX": ""}, ["5", "db5-"]),
            ({"REDIS_URL": f"{url}/5", "LIVE_CHANNEL_PREFIX": "eu-"}, ["5", "eu-"]),
        ):
            with self.subTest(**env):
                result = run_python(
                    ["-c", SHOW_LIVE_REDIS], env=child_environment(**env)
                )
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout.split(), shown)
