"""Every error under `/api/v1/` is JSON in the API's envelope, whoever made it."""

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.test import RequestFactory, SimpleTestCase

from sessions_app.api.middleware import ApiJsonErrorsMiddleware
from sessions_app.models import ApiSession
from sessions_app.tests.test_api_sessions import ApiTestCase
from sessions_app.tests.test_charging import REMOTE_START


class ApiErrorEnvelopeTests(ApiTestCase):
    def assert_json_error(self, response: HttpResponse, status: int, text: str) -> None:
        self.assertEqual(response["Content-Type"], "application/json; charset=utf-8")
        self.assert_error(response, status, text)

    def test_a_body_over_the_upload_limit_is_413(self) -> None:
        padding = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        response = self.call(
            "POST", "/sessions", body={"chargestation": "CP-001", "padding": padding}
        )
        self.assert_json_error(response, 413, "larger than")
        self.assertFalse(ApiSession.objects.exists())
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_method_a_path_does_not_take_is_405_with_allow(self) -> None:
        for method, path, allowed in (
            ("DELETE", "/sessions/1", {"GET", "HEAD"}),
            ("GET", "/sessions/1/stop", {"POST"}),
            ("PUT", "/sessions", {"GET", "HEAD", "POST"}),
        ):
            with self.subTest(method=method, path=path):
                response = self.call(method, path)
                self.assert_json_error(response, 405, f"{method} is not allowed")
                self.assertEqual(set(response["Allow"].split(", ")), allowed)
                self.assertIn(f"use {response['Allow']}.", response.json()["message"])

    def test_an_unknown_path_is_404(self) -> None:
        for path in ("/nothing", "/sessions/1/start", "/"):
            with self.subTest(path=path):
                response = self.call("GET", path)
                self.assert_json_error(response, 404, "There is no API endpoint")

    def test_a_trailing_slash_is_404_naming_the_path_without_it(self) -> None:
        response = self.call("GET", "/sessions/")
        self.assert_json_error(response, 404, "use /api/v1/sessions.")
        response = self.call("POST", "/sessions/1/stop/")
        self.assert_json_error(response, 404, "use /api/v1/sessions/1/stop.")

    def test_pages_outside_the_api_keep_their_html_errors(self) -> None:
        response = self.client.get("/no-such-page")
        self.assertEqual(response.status_code, 404)
        self.assertTrue(response["Content-Type"].startswith("text/html"))


class ApiJsonErrorsMiddlewareTests(SimpleTestCase):
    def answer(self, path: str, response: HttpResponse) -> HttpResponse:
        def get_response(request: HttpRequest) -> HttpResponse:
            return response

        middleware = ApiJsonErrorsMiddleware(get_response)
        answered = middleware(RequestFactory().get(path))
        assert isinstance(answered, HttpResponse)
        return answered

    def test_a_server_error_page_becomes_json_and_keeps_its_headers(self) -> None:
        page = HttpResponseServerError("<h1>Server Error (500)</h1>")
        page["X-Frame-Options"] = "DENY"
        page["Content-Length"] = str(len(page.content))
        response = self.answer("/api/v1/sessions", page)
        self.assertEqual(response.status_code, 500)
        self.assertEqual(response["Content-Type"], "application/json; charset=utf-8")
        self.assertEqual(response["Content-Length"], str(len(response.content)))
        self.assertEqual(response["X-Frame-Options"], "DENY")
        body = json.loads(response.content)
        self.assertEqual(body["ok"], False)
        self.assertIn("went wrong on our side", body["message"])

    def test_json_answers_and_other_paths_are_left_alone(self) -> None:
        api_error = HttpResponse(
            b'{"ok": false, "message": "No such session."}',
            status=404,
            content_type="application/json",
        )
        self.assertIs(self.answer("/api/v1/sessions/9", api_error), api_error)
        page = HttpResponse(b"<h1>Not found</h1>", status=404)
        self.assertEqual(self.answer("/admin/nothing", page).content, page.content)
