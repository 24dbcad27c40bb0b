"""Redis/Valkey and PostgreSQL restarting under open pages and sync runs.

Each test starts its own servers on free ports in temporary folders (never the
shared ones the session uses: other tests run beside these), a uvicorn child
pointed at them, and real sync runs as `manage.py sync transactions` children, as
a Celery worker would run them.
"""

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import requests
from django.test import TransactionTestCase
from playwright.sync_api import Browser, Page, expect

from polaris import live
from polaris.browser import (
    LIVE_CHANNEL_PREFIX,
    chromium,
    live_server,
    sign_in,
    wait_for_live_stream,
)
from polaris.testing import (
    PostgresCluster,
    SseReader,
    ValkeyServer,
    child_environment,
    run_python,
    wait_until,
)
from sessions_app.templatetags.console import clock_time
from sync import services
from sync.models import SyncRun, TransactionSyncState
from sync.standin.testing import StandinProcess
from sync.tests.factories import StaffFactory

pytestmark = pytest.mark.browser

PASSWORD = "driver"
# Long enough for a reconnect with backoff, a browser retry and a page re-read.
RECOVERY_TIMEOUT_MS = 20_000


def command_env(**env: str) -> dict[str, str]:
    return child_environment(
        DJANGO_SETTINGS_MODULE="polaris.settings_test",
        LIVE_CHANNEL_PREFIX=LIVE_CHANNEL_PREFIX,
        **env,
    )


def run_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py <args>` in a child process (the test settings, the given env)."""
    return run_python(["manage.py", *args], env=command_env(**env), timeout=90)


def sync_command(**env: str) -> subprocess.CompletedProcess[str]:
    """One `manage.py sync transactions` in a child process, as a worker runs it."""
    return run_command("sync", "transactions", **env)


def add_energy(standin: StandinProcess, pk: int, meter_wh: int) -> None:
    """The station reports a new meter reading for transaction `pk`."""
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    standin.add_meter_values(
        pk, [{"value": str(meter_wh), "valueTimestamp": at.replace("+00:00", "Z")}]
    )


def first_sse_chunk_with(response: requests.Response, text: bytes) -> bytes:
    """Read a raw SSE response until `text` appears (or fail after 20 s)."""
    return SseReader(response).read_until(text)


def publish_from_child(redis_url: str, event_type: str, data: str) -> None:
    """Publish one live event on the staff channel from another process."""
    code = (
        "from polaris import live; "
        f"live.publish(live.staff_channel(), {event_type!r}, {data!r})"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env=child_environment(
            DJANGO_SETTINGS_MODULE="polaris.settings_test",
            LIVE_CHANNEL_PREFIX=LIVE_CHANNEL_PREFIX,
            REDIS_URL=redis_url,
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )


class ValkeyRestartTests(TransactionTestCase):
    """Acceptance: "Redis/Valkey restarted while pages hold SSE streams: they
    reconnect and catch up"."""

    browser: Browser
    standin: StandinProcess

    @pytest.fixture(autouse=True)
    def _standin_and_browser(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with StandinProcess(fleet_size=4, seed=3) as standin, chromium() as browser:
            self.standin = standin
            self.browser = browser
            yield

    def open_page(self, base_url: str, path: str) -> Page:
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, base_url, "operator", PASSWORD)
        page.goto(f"{base_url}{path}")
        wait_for_live_stream(page)
        return page

    def test_it_reconnects_and_catches_up_when_valkey_restarts_empty(self) -> None:
        staff = StaffFactory(username="operator")
        with ExitStack() as stack:
            valkey = stack.enter_context(ValkeyServer())
            server = stack.enter_context(live_server(REDIS_URL=valkey.url))
            env = {"REDIS_URL": valkey.url, **self.standin.polaris_settings()}

            with self.standin.client() as steve:
                services.sync_run_transactions(trigger="command", client=steve)
            session = (
                TransactionSyncState.objects.active()
                .filter(is_suspected_stuck=False)
                .order_by("-started_at")
                .first()
            )
            assert session is not None
            meter_wh = session.meter_last_wh
            sessions = self.open_page(server.url, "/admin/sessions/")
            runs = self.open_page(server.url, "/admin/sync-runs/")
            self.client.force_login(staff)
            cookies = {"sessionid": self.client.cookies["sessionid"].value}
            banner = sessions.locator("#live-banner")
            row = sessions.locator(f"#session-{session.pk}")
            expect(banner).not_to_contain_text("1 session updated")
            expect(runs.locator("#sync-runs")).to_contain_text("#")

            # Valkey goes away; a sync run still saves what it read and succeeds.
            valkey.stop()
            add_energy(self.standin, session.steve_transaction_id,
                       meter_wh + 2500)  # fmt: skip
            during = sync_command(**env)
            self.assertEqual(during.returncode, 0, during.stderr)
            self.assertIn("Redis is unavailable", during.stderr)
            outage_run = SyncRun.objects.latest("pk")
            self.assertEqual(outage_run.status, SyncRun.Status.SUCCEEDED)
            self.assertEqual(outage_run.updated_count, 1)
            session.refresh_from_db()
            kwh = session.kwh_delivered

            # Valkey is back on the same port. The pages' streams reconnect, and
            # they catch up although the run's events never reached Redis: the run
            # is in the table, the banner counts its change.
            valkey.start()
            expect(runs.locator("#sync-runs")).to_contain_text(
                f"#{outage_run.pk}", timeout=RECOVERY_TIMEOUT_MS
            )
            expect(banner).to_contain_text(
                "1 session updated", timeout=RECOVERY_TIMEOUT_MS
            )

            # Live updates flow again: the next run reaches both pages as events.
            wait_for_live_stream(sessions)
            wait_for_live_stream(runs)
            add_energy(self.standin, session.steve_transaction_id,
                       meter_wh + 5000)  # fmt: skip
            after = sync_command(**env)
            self.assertEqual(after.returncode, 0, after.stderr)
            self.assertNotIn("Redis is unavailable", after.stderr)
            live_run = SyncRun.objects.latest("pk")
            expect(banner).to_contain_text(
                f"1 session updated at {clock_time(live_run.finished_at)}",
                timeout=RECOVERY_TIMEOUT_MS,
            )
            expect(row).to_contain_text(f"{kwh + Decimal('2.5'):.3f}")
            expect(runs.locator("#sync-runs")).to_contain_text(f"#{live_run.pk}")

            # A browser that reconnects with the id of an event Valkey forgot is
            # told to re-read (stream-reset), not left waiting for that id.
            channel = live.staff_channel()
            response = requests.get(
                f"{server.url}/admin/live/",
                cookies=cookies,
                headers={"Last-Event-ID": f"{channel}:1000"},
                stream=True,
                timeout=20,
            )
            with response:
                self.assertEqual(response.status_code, 200)
                reset = first_sse_chunk_with(response, b"stream-reset")
                self.assertIn(b"event: stream-reset", reset)


class ValkeyRestartStreamTests(TransactionTestCase):
    """The same restart seen by a raw SSE client, with Valkey keeping its data."""

    def test_it_ends_streams_after_a_restart_and_replays_what_they_missed(
        self,
    ) -> None:
        self.client.force_login(StaffFactory())
        cookies = {"sessionid": self.client.cookies["sessionid"].value}
        with (
            ValkeyServer(persistent=True) as valkey,
            live_server(REDIS_URL=valkey.url) as server,
        ):
            channel = live.staff_channel()
            url = f"{server.url}/admin/live/"
            with requests.get(url, cookies=cookies, stream=True, timeout=30) as first:
                stream = SseReader(first)
                stream.read_until(b"stream-open")
                publish_from_child(valkey.url, "ping", "before")
                stream.read_until(b"data: before")
                self.assertIn(f"id: {channel}:1".encode(), stream.seen)

                # The web process resubscribes after the restart and ends the
                # streams that were open meanwhile, so that browsers come back.
                valkey.restart()
                stream.read_to_end()
                self.assertTrue(stream.ended)
                self.assertIn(b"retry: ", stream.seen)

            # An event published before the browser is back is replayed from
            # storage (ids continue: Valkey kept the counter), later ones arrive
            # live.
            publish_from_child(valkey.url, "ping", "while away")
            headers = {"Last-Event-ID": f"{channel}:1"}
            with requests.get(
                url, cookies=cookies, headers=headers, stream=True, timeout=30
            ) as second:
                stream = SseReader(second)
                stream.read_until(b"data: while away")
                self.assertIn(f"id: {channel}:2".encode(), stream.seen)
                self.assertNotIn(b"stream-reset", stream.seen)
                publish_from_child(valkey.url, "ping", "after")
                stream.read_until(b"data: after")
                self.assertIn(f"id: {channel}:3".encode(), stream.seen)


class ValkeyDownStreamTests(TransactionTestCase):
    def test_open_streams_end_when_valkey_goes_away(self) -> None:
        # Their pages would otherwise say "Live" for the rest of the stream's
        # life while no event can come; ended, the browser reconnects and the
        # page says it is disconnected until Valkey is back.
        self.client.force_login(StaffFactory())
        cookies = {"sessionid": self.client.cookies["sessionid"].value}
        # Streams living an hour: one ended now was ended by the loss.
        with (
            ValkeyServer() as valkey,
            live_server(REDIS_URL=valkey.url, LIVE_STREAM_MAX_SECONDS="3600") as server,
        ):
            url = f"{server.url}/admin/live/"
            with requests.get(url, cookies=cookies, stream=True, timeout=30) as open_:
                stream = SseReader(open_)
                stream.read_until(b"stream-open")
                valkey.stop()
                reading = threading.Thread(target=stream.read_to_end, daemon=True)
                reading.start()
                wait_until(lambda: stream.ended, timeout=60, what="the stream ended")
                # Not back at once into an outage: every page would retry each
                # second while Redis is down.
                self.assertIn(
                    f"retry: {live.RETRY_WHILE_REDIS_DOWN_MS}\n".encode(), stream.seen
                )


class PostgresRestartTests(TransactionTestCase):
    """Acceptance: "Postgres restarted": pages answer again, open pages keep their
    live updates, a run cut off by the outage is marked failed, one that starts
    during it cannot, and the next run catches up with nothing lost or doubled."""

    def test_pages_answer_and_the_next_run_catches_up_after_a_restart(self) -> None:
        with ExitStack() as stack:
            standin = stack.enter_context(StandinProcess(fleet_size=4, seed=3))
            postgres = stack.enter_context(PostgresCluster())
            # While Postgres is down a pooled connection is waited for this long
            # before the request or run fails (10 s by default).
            env = {
                "DATABASE_URL": postgres.url,
                "DATABASE_POOL_TIMEOUT": "3",
                **standin.polaris_settings(),
            }
            for args in (
                ("migrate", "-v0"),
                ("createsuperuser", "--noinput", "--username", "operator",
                 "--email", "operator@example.com"),
            ):  # fmt: skip
                done = run_command(*args, DJANGO_SUPERUSER_PASSWORD=PASSWORD, **env)
                self.assertEqual(done.returncode, 0, done.stderr)
            first = sync_command(**env)
            self.assertEqual(first.returncode, 0, first.stderr)
            active_pk, meter_wh, kwh = self.query(
                postgres,
                'SELECT "steveTransactionId", "meterLastWh", "kwhDelivered" '
                'FROM transaction_sync_state WHERE NOT "isFinalized" '
                'ORDER BY "steveTransactionId" DESC LIMIT 1',
            )[0]

            server = stack.enter_context(
                live_server(DATABASE_URL=postgres.url, DATABASE_POOL_TIMEOUT="3")
            )
            browser = stack.enter_context(chromium())
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, server.url, "operator", PASSWORD)
            page.goto(f"{server.url}/admin/sync-runs/")
            wait_for_live_stream(page)
            cookies = {c["name"]: c["value"] for c in page.context.cookies()}

            # A run is reading SteVe (slowly) when Postgres goes away.
            add_energy(standin, active_pk, meter_wh + 2500)
            standin.set_fault("slow", count=-1, delay=3, path_contains="transactions/")
            cut_off = subprocess.Popen(
                [sys.executable, "manage.py", "sync", "transactions"],
                env=command_env(**env),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_until(
                    lambda: self.query(
                        postgres, "SELECT 1 FROM sync_runs WHERE status = 'running'"
                    )
                )
                postgres.stop()
                _, cut_off_said = cut_off.communicate(timeout=60)
                self.assertNotEqual(cut_off.returncode, 0)
            finally:
                if cut_off.poll() is None:
                    cut_off.kill()
                    cut_off.wait()
            standin.clear_faults()
            # Its own database, not SteVe's data, and said without a traceback.
            self.assertIn("The database is unavailable at", cut_off_said)
            self.assertIn("If its sync run had begun", cut_off_said)
            self.assertNotIn("Traceback", cut_off_said)
            self.assertNotIn("SteVe sent", cut_off_said)

            # While it is down a run cannot start, and pages say so (500)...
            during = sync_command(**env)
            self.assertNotEqual(during.returncode, 0)
            self.assertIn("The database is unavailable at", during.stderr)
            self.assertIn("No sync run could be recorded", during.stderr)
            self.assertNotIn("Traceback", during.stderr)
            down = requests.get(
                f"{server.url}/admin/sync-runs/", cookies=cookies, timeout=20
            )
            self.assertEqual(down.status_code, 500)

            # ...and once it is back, they answer again: no dead connections.
            postgres.start()
            up = requests.get(
                f"{server.url}/admin/sync-runs/", cookies=cookies, timeout=20
            )
            self.assertEqual(up.status_code, 200)
            stream = requests.get(
                f"{server.url}/admin/live/", cookies=cookies, stream=True, timeout=20
            )
            with stream:
                self.assertEqual(stream.status_code, 200)
                SseReader(stream).read_until(b"stream-open")

            # The next run marks the cut-off one failed and catches up; the page
            # that stayed open through the outage shows both, live.
            after = sync_command(**env)
            self.assertEqual(after.returncode, 0, after.stderr)
            runs = self.query(
                postgres, "SELECT id, status, error FROM sync_runs ORDER BY id"
            )
            self.assertEqual(len(runs), 3)  # the one during the outage never started
            (_, status, error), (catch_up_pk, catch_up_status, _) = runs[1], runs[2]
            self.assertEqual(status, "failed")
            self.assertIn("Interrupted", error)
            self.assertEqual(catch_up_status, "succeeded")
            table = page.locator("#sync-runs")
            expect(table).to_contain_text(
                f"#{catch_up_pk}", timeout=RECOVERY_TIMEOUT_MS
            )
            expect(table).to_contain_text(error)

            # Nothing lost: the reading sent during the outage is counted once;
            # nothing doubled: another run finds nothing left to do.
            self.assertEqual(
                self.query(
                    postgres,
                    'SELECT "kwhDelivered" FROM transaction_sync_state '
                    'WHERE "steveTransactionId" = %s',
                    [active_pk],
                )[0][0],
                kwh + Decimal("2.5"),
            )
            again = sync_command(**env)
            self.assertEqual(again.returncode, 0, again.stderr)
            self.assertIn(
                "0 new and 0 changed sessions were saved with 0 events", again.stdout
            )

    @staticmethod
    def query(
        postgres: PostgresCluster, sql: str, params: list[object] | None = None
    ) -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres.url) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
