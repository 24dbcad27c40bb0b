"""Server-Timing: the server's own time on a response, for the load test."""

import requests
from django.test import SimpleTestCase, TransactionTestCase

from polaris.browser import live_server
from polaris.timing import server_ms
from sync.tests.factories import StaffFactory


class ServerTimingHeaderTests(TransactionTestCase):
    def test_uvicorn_reports_the_time_of_each_page_when_turned_on(self) -> None:
        self.client.force_login(StaffFactory())
        cookies = {"sessionid": self.client.cookies["sessionid"].value}
        with live_server(SERVER_TIMING="true") as server:
            response = requests.get(
                f"{server.url}/admin/sessions/", cookies=cookies, timeout=10
            )
            login = requests.get(f"{server.url}/accounts/login/", timeout=10)
        self.assertEqual(response.status_code, 200)
        for answered in (response, login):
            duration = server_ms(answered.headers.get("Server-Timing"))
            self.assertIsNotNone(duration)
            self.assertGreater(duration, 0)
            self.assertLess(duration, answered.elapsed.total_seconds() * 1000)

    def test_it_is_off_by_default(self) -> None:
        with live_server() as server:
            response = requests.get(f"{server.url}/accounts/login/", timeout=10)
        self.assertEqual(response.status_code, 200)
        self.assertNotIn("Server-Timing", response.headers)


class ServerMsTests(SimpleTestCase):
    def test_it_reads_the_app_metric(self) -> None:
        self.assertEqual(server_ms("app;dur=12.50"), 12.5)
        self.assertEqual(server_ms("db;dur=3, app;desc=x;dur=7"), 7.0)

    def test_it_ignores_missing_or_malformed_values(self) -> None:
        for header in (None, "", "db;dur=3", "app", "app;dur=", "app;dur=fast"):
            with self.subTest(header=header):
                self.assertIsNone(server_ms(header))
