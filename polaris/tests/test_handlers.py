"""The ASGI handler uvicorn runs."""

import warnings
from inspect import iscoroutinefunction

from django.test import TransactionTestCase

from bench.asgi import AsgiClient
from polaris.asgi import application
from polaris.handlers import SyncStackASGIHandler
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
