"""The SteVe client's sentences for a SteVe it cannot use, over real HTTP."""

import json
import os
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from unittest import mock
from zoneinfo import ZoneInfo

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import SimpleTestCase, TestCase, override_settings

from polaris.testing import free_port
from sync import services
from sync.client import SteveClient, SteveError, format_timestamp
from sync.models import SyncRun
from sync.tests.standin_case import StandinTestMixin


class OldSteveTests(StandinTestMixin, TestCase):
    """SteVe before 3.12 lists transactions but has no /transactions/{pk} and no
    PATCH …/stop (CONTRACT §0): that is not a wrong STEVE_URL."""

    def test_a_sync_against_steve_3_11_says_it_needs_3_12(self) -> None:
        self.standin.set_fault("steve_3_11", count=-1)
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            f"SteVe at {self.steve.base_url} answers its transaction list but not "
            "GET /transactions/{pk} (HTTP 404), which Polaris uses for meter values: "
            "Polaris needs SteVe 3.12 or newer. Upgrade SteVe.",
        )

    def test_a_manual_stop_against_steve_3_11_says_it_needs_3_12(self) -> None:
        pk = self.standin.scenario("zombie")[0]
        self.standin.set_fault("steve_3_11", count=-1)
        with self.assertRaises(SteveError) as raised:
            self.steve.stop_transaction(pk)
        self.assertEqual(raised.exception.status, 404)
        self.assertIn(
            "not PATCH /transactions/{pk}/stop (HTTP 404), which Polaris uses to stop "
            "a transaction: Polaris needs SteVe 3.12 or newer.",
            raised.exception.operator_message,
        )

    def test_a_stop_refused_as_a_method_says_it_needs_3_12(self) -> None:
        pk = self.standin.scenario("zombie")[0]
        self.standin.set_fault("error", status=405, path_contains="/stop")
        with self.assertRaises(SteveError) as raised:
            self.steve.stop_transaction(pk)
        self.assertIn(
            "not PATCH /transactions/{pk}/stop (HTTP 405)",
            raised.exception.operator_message,
        )
        self.assertEqual(
            raised.exception.message,
            "SteVe is older than 3.12, the version Polaris needs.",
        )

    def test_a_refused_request_is_named_in_the_failed_runs_sentence(self) -> None:
        self.standin.set_fault("error", status=400, path_contains="/transactions")
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertRegex(
            run.error, r"^SteVe refused GET /api/v1/transactions \(HTTP 400\): \S"
        )

    def test_no_steve_api_at_all_is_still_a_wrong_url(self) -> None:
        # The list answers the same bare 404, so it is not SteVe's version.
        wrong = self.client_at_a_wrong_context_path()
        with self.assertRaises(SteveError) as raised:
            wrong.transaction_details(1)
        self.assertEqual(
            raised.exception.operator_message,
            f"There is no SteVe API at {wrong.base_url} (HTTP 404): check STEVE_URL, "
            "context path included (e.g. /steve).",
        )


class UnreachableSteveTests(StandinTestMixin, SimpleTestCase):
    """A connection that fails says which way, and the log keeps the cause."""

    def client_for(self, base_url: str, timeout: float = 2) -> SteveClient:
        client = SteveClient(
            base_url=base_url,
            username="u",
            password="p",
            timeout=timeout,
            retry_delays=(),
        )
        self.addCleanup(client.close)
        return client

    def failure(self, client: SteveClient) -> tuple[SteveError, str]:
        with (
            self.assertLogs("sync.client", "INFO") as logs,
            self.assertRaises(SteveError) as raised,
        ):
            client.list_transactions(type="ACTIVE")
        return raised.exception, "\n".join(logs.output)

    def test_a_refused_connection(self) -> None:
        base_url = f"http://127.0.0.1:{free_port()}/steve"
        error, log = self.failure(self.client_for(base_url))
        self.assertEqual(error.message, "SteVe cannot be reached (connection refused).")
        self.assertEqual(
            error.operator_message,
            f"SteVe cannot be reached at {base_url}: the connection was refused, so "
            "nothing listens there. Check that SteVe is running and that STEVE_URL's "
            "host and port are its address.",
        )
        self.assertIn("Connection refused", log)

    def test_a_connection_that_times_out(self) -> None:
        # A listener whose backlog is full: the kernel drops further connections'
        # SYNs, as a firewall does.
        listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.addCleanup(listener.close)
        queued = socket.create_connection(listener.getsockname())
        self.addCleanup(queued.close)
        base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/steve"
        error, log = self.failure(self.client_for(base_url, timeout=0.5))
        self.assertEqual(
            error.message, "SteVe cannot be reached (connecting timed out)."
        )
        self.assertEqual(
            error.operator_message,
            f"SteVe cannot be reached at {base_url}: connecting timed out after 0.5 "
            "s. Check that STEVE_URL's host and port are SteVe's and that no "
            "firewall drops the traffic.",
        )
        self.assertIn("ConnectTimeout", log)

    def test_a_host_name_that_does_not_resolve(self) -> None:
        # glibc refuses a label that starts with a hyphen without asking DNS, so
        # the test stays off the network.
        error, log = self.failure(self.client_for("http://-steve.invalid:8180/steve"))
        self.assertEqual(
            error.operator_message,
            "SteVe cannot be reached at http://-steve.invalid:8180/steve: its host "
            "name -steve.invalid does not resolve (DNS). Check STEVE_URL's host name "
            "and this machine's DNS.",
        )
        self.assertIn("NameResolutionError", log)

    def test_https_to_a_port_that_speaks_plain_http(self) -> None:
        base_url = self.standin.base_url.replace("http://", "https://", 1)
        error, log = self.failure(self.client_for(base_url))
        self.assertEqual(
            error.message, "SteVe cannot be reached (TLS handshake failed)."
        )
        self.assertEqual(
            error.operator_message,
            f"SteVe cannot be reached at {base_url}: the TLS handshake failed (wrong "
            "version number). Check that STEVE_URL says https only where SteVe, or a "
            "proxy before it, serves TLS on that port.",
        )
        self.assertTrue(error.permanent)
        self.assertIn("WRONG_VERSION_NUMBER", log)

    def test_a_proxy_that_fails(self) -> None:
        proxy = {"HTTP_PROXY": f"http://127.0.0.1:{free_port()}"}
        unproxied = ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy")
        with mock.patch.dict(os.environ, proxy):
            for name in unproxied:
                os.environ.pop(name, None)
            error, log = self.failure(self.client_for(self.standin.base_url))
        self.assertEqual(error.message, "SteVe cannot be reached (the proxy failed).")
        self.assertIn("the proxy in between failed", error.operator_message)
        self.assertIn("Unable to connect to proxy", log)


class SteveFailureSentenceTests(StandinTestMixin, SimpleTestCase):
    """A 429 or 5xx names what answered: SteVe's own error, or a proxy's page."""

    def failure(self, status: int) -> SteveError:
        self.standin.clear_faults()
        self.standin.set_fault("error", status=status, count=-1)
        self.addCleanup(self.standin.clear_faults)
        client = SteveClient(
            base_url=self.standin.base_url,
            username=self.standin.username,
            password=self.standin.password,
            retry_delays=(),
        )
        self.addCleanup(client.close)
        with (
            self.assertLogs("sync.client", "INFO"),
            self.assertRaises(SteveError) as raised,
        ):
            client.list_transactions(type="ACTIVE")
        self.assertFalse(raised.exception.permanent)
        return raised.exception

    def test_steves_own_error_is_quoted(self) -> None:
        error = self.failure(500)
        self.assertIn(
            "failed with HTTP 500 (Simulated Internal Server Error",
            error.operator_message,
        )
        self.assertIn("its own log says why", error.operator_message)

    def test_a_proxys_page_is_not_blamed_on_steve(self) -> None:
        for status in (502, 503):
            with self.subTest(status=status):
                error = self.failure(status)
                self.assertIn(
                    f"answered HTTP {status} without SteVe's error body: a proxy",
                    error.operator_message,
                )

    def test_a_retry_waits_as_long_as_retry_after_asks(self) -> None:
        # The stand-in's rate limit answers 429 with Retry-After: 1, once.
        self.standin.clear_faults()
        self.standin.set_fault("error", status=429)
        client = SteveClient(
            base_url=self.standin.base_url,
            username=self.standin.username,
            password=self.standin.password,
            retry_delays=(0.01,),
        )
        self.addCleanup(client.close)
        began = time.monotonic()
        with self.assertLogs("sync.client", "INFO"):
            client.list_transactions(type="ACTIVE")
        # Not a speed claim: the retry came no sooner than the proxy asked.
        self.assertGreaterEqual(time.monotonic() - began, 1.0)

    def test_too_many_requests_says_so(self) -> None:
        error = self.failure(429)
        self.assertIn("HTTP 429, too many requests", error.operator_message)
        self.assertNotIn("its own log", error.operator_message)


class SyncCommandLogLinesTests(TestCase):
    """What `manage.py sync` shows of the log lines the client and the services
    write, by -v, when SteVe cannot be reached."""

    def sync_with_nothing_listening(self, verbosity: str) -> None:
        # Credentials of its own: only local mode (no DATABASE_URL) has defaults.
        nothing_listening = override_settings(
            STEVE_URL=f"http://127.0.0.1:{free_port()}/steve",
            STEVE_USERNAME="polaris",
            STEVE_PASSWORD="polaris",
        )
        with nothing_listening, self.assertRaises(CommandError):
            call_command("sync", "transactions", "-v", verbosity, stdout=StringIO())

    def test_minus_v_0_shows_errors_and_the_result_only(self) -> None:
        with self.assertNoLogs("sync", "WARNING"):
            self.sync_with_nothing_listening("0")

    def test_the_default_shows_the_warnings_and_not_the_info_lines(self) -> None:
        with self.assertLogs("sync", "INFO") as logs:
            self.sync_with_nothing_listening("1")
        self.assertEqual({record.levelname for record in logs.records}, {"WARNING"})

    def test_minus_v_2_shows_the_info_lines_too(self) -> None:
        with self.assertLogs("sync", "INFO") as logs:
            self.sync_with_nothing_listening("2")
        self.assertIn("INFO", {record.levelname for record in logs.records})


class SteveErrorTests(SimpleTestCase):
    def test_a_sentence_added_is_read_wherever_the_error_is(self) -> None:
        # The logs print str(error); runs and commands read its messages.
        error = SteveError(
            "SteVe did not answer within 10 s.",
            permanent=False,
            operator_message="SteVe did not answer within 10 s (STEVE_TIMEOUT).",
        )
        error.add_sentence("Tried 3 times in 42 s.")
        self.assertEqual(
            error.message, "SteVe did not answer within 10 s. Tried 3 times in 42 s."
        )
        self.assertEqual(str(error), error.message)
        self.assertEqual(
            error.operator_message,
            "SteVe did not answer within 10 s (STEVE_TIMEOUT). Tried 3 times in 42 s.",
        )


class FormatTimestampTests(SimpleTestCase):
    def test_a_time_in_another_zone_is_sent_as_the_same_moment_in_utc(self) -> None:
        # SteVe reads every timestamp as UTC: Berlin's midnight, labelled Z
        # unconverted, would ask for an hour later than meant.
        berlin_midnight = datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
        self.assertEqual(format_timestamp(berlin_midnight), "2025-12-31T23:00:00.000Z")


class ForeignJsonTests(SimpleTestCase):
    """A gateway answering 200 with JSON that is not SteVe's (an error object, a
    list of strings) is a response Polaris could not understand, not a crash."""

    def answering(self, body: bytes) -> SteveClient:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        client = SteveClient(
            base_url=f"http://127.0.0.1:{server.server_port}/steve",
            username="u",
            password="p",
            retry_delays=(),
        )
        self.addCleanup(client.close)
        return client

    def test_json_that_is_not_steves_is_not_understood(self) -> None:
        for body in (b'{"a": 1}', b'["a", "b"]', b"[1, 2]"):
            with self.subTest(body=body):
                client = self.answering(body)
                with (
                    self.assertLogs("sync.client", "WARNING"),
                    self.assertRaises(SteveError) as raised,
                ):
                    client.list_transactions(type="ACTIVE")
                self.assertEqual(
                    raised.exception.message,
                    "SteVe sent a response Polaris could not understand.",
                )

    def test_a_listing_that_ignored_the_pk_filter_is_refused(self) -> None:
        # A cache that drops query strings answers every probe by pk with the
        # same transactions: taken as found, a probe by pk would never end.
        client = self.answering(json.dumps([FOREIGN_TRANSACTION]).encode())
        self.assertEqual(
            [t.id for t in client.list_transactions(transaction_pks=[1042])], [1042]
        )
        with self.assertRaises(SteveError) as raised:
            client.list_transactions(transaction_pks=range(1, 201))
        self.assertIn("dropped the transactionPk filter", raised.exception.message)


# CONTRACT.md's example of a listed transaction.
FOREIGN_TRANSACTION = {
    "chargeBoxId": "CB-01",
    "chargeBoxPk": 3,
    "connectorId": 1,
    "id": 1042,
    "ocppIdTag": "04A1B2C3",
    "ocppTagPk": 17,
    "startTimestamp": "2024-08-25T14:30:00.000Z",
    "startValue": "152300",
    "stopEventActor": "station",
    "stopReason": "EVDisconnected",
    "stopTimestamp": "2024-08-25T16:02:11.000Z",
    "stopValue": "171845",
    "userId": 5,
}
