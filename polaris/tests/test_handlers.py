"""The ASGI handler uvicorn runs."""

import warnings
from inspect import iscoroutinefunction

from django.test import TransactionTestCase

from bench.asgi import AsgiClient
from polaris.asgi import application
from polaris.handlers import SyncStackASGIHandler
from polaris.testing import UvicornServer, child_environment
from polaris.timing import ServerTimingMiddleware
from sync.tests.factories import StaffFactory


class SyncStackASGIHandlerTests(TransactionTestCase):
    def test_uvicorn_serves_the_synchronous_stack(self) -> None:
        handler = (
            application.app
            if isinstance(application, ServerTimingMiddleware)
            else application
        )
        self.assertIsInstance(handler, SyncStackASGIHandler)
        # The whole middleware stack is one synchronous callable: one hop to a
        # worker thread per request instead of two per middleware.
        self.assertFalse(iscoroutinefunction(handler._middleware_chain))

    def test_it_serves_signed_in_people_and_redirects_anonymous_ones(self) -> None:
        client = AsgiClient.signed_in(SyncStackASGIHandler(), StaffFactory())
        response = client.get("/admin/sessions/")
        self.assertEqual(response.status, 200)
        self.assertIn(b"Charging Sessions", response.body)
        self.assertEqual(
            AsgiClient(SyncStackASGIHandler()).get("/admin/sessions/").status, 302
        )

    def test_a_static_file_goes_out_without_being_read_whole_first(self) -> None:
        client = AsgiClient(SyncStackASGIHandler())
        with warnings.catch_warnings():
            # Django's warning when it reads a synchronous iterator whole first.
            warnings.simplefilter("error")
            response = client.get("/static/css/polaris.css")
        self.assertEqual(response.status, 200)
        self.assertIn(b".stack", response.body)


class UvicornAccessLogTests(TransactionTestCase):
    def test_no_access_log_is_kept_whatever_the_settings_say_of_uvicorn(self) -> None:
        # The demo and the load test turn the lines off: three open live pages
        # made 5 MB of them a day in the demo's web log.
        env = child_environment(DJANGO_SETTINGS_MODULE="polaris.settings_test")
        logs = {}
        for access_log in (True, False):
            with UvicornServer(env, access_log=access_log) as server:
                # Its readiness probe asked for the sign-in page.
                server.wait_for_log("Uvicorn running on")
            logs[access_log] = server.log()
        request = '"GET /accounts/login/ HTTP/1.1" 200'
        self.assertIn(request, logs[True])
        self.assertIn("INFO uvicorn.access", logs[True])  # in Polaris's format
        self.assertNotIn(request, logs[False])
