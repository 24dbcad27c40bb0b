"""HEAD wherever GET works (RFC 9110): the GET's status and headers, without the
body, through Django's test client and over the wire from uvicorn."""

import itertools
import socket

from django.contrib.auth import get_user_model
from django.test import Client, TransactionTestCase

from polaris.browser import live_server
from sessions_app.services import api_token_create
from sessions_app.tests.test_api_sessions import ApiTestCase


class HeadApiTests(ApiTestCase):
    def test_head_answers_every_get_with_its_status_and_headers(self) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        document = self.client.get("/api/v1/openapi.json").json()
        paths = [
            path.replace("{session_id}", session_id)
            for path, operations in document["paths"].items()
            if "get" in operations
        ]
        self.assertEqual(len(paths), 3)
        refused = [
            "/api/v1/sessions/999999",  # 404
            "/api/v1/sessions?limit=0",  # 422
        ]
        for path in [*paths, *refused, "/api/v1/openapi.json"]:
            for token in (self.alice_token, "pol_revoked"):
                with self.subTest(path=path, token=token):
                    auth = {"Authorization": f"Bearer {token}"}
                    get = self.client.get(path, headers=auth)
                    head = self.client.head(path, headers=auth)
                    self.assertEqual(head.status_code, get.status_code)
                    self.assertEqual(dict(head.headers), dict(get.headers))
                    self.assertEqual(head.content, b"")

    def test_other_methods_are_405_and_allow_names_head(self) -> None:
        for path, allowed in (
            ("/sessions", {"GET", "HEAD", "POST"}),
            ("/sessions/1", {"GET", "HEAD"}),
            ("/sessions/1/stop", {"POST"}),
            ("/chargers", {"GET", "HEAD"}),
        ):
            for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "GET"):
                if method in allowed:
                    continue
                with self.subTest(method=method, path=path):
                    response = self.call(method, path)
                    self.assertEqual(response.status_code, 405)
                    self.assertEqual(set(response["Allow"].split(", ")), allowed)

    def test_the_document_and_its_docs_page_answer_other_methods_405(self) -> None:
        # A browser's client checks CSRF, which answered 403 "Forbidden." before
        # the method was looked at.
        browser = Client(enforce_csrf_checks=True)
        for path in ("/api/v1/openapi.json", "/api/v1/docs"):
            for method, token in itertools.product(
                ("POST", "PUT", "DELETE"), (self.alice_token, None)
            ):
                with self.subTest(path=path, method=method, token=token):
                    auth = {"Authorization": f"Bearer {token}"} if token else {}
                    response = browser.generic(method, path, headers=auth)
                    self.assertEqual(response.status_code, 405)
                    self.assertEqual(response["Allow"], "GET, HEAD")
                    self.assertEqual(
                        response.json()["message"],
                        f"{method} is not allowed on {path}; use GET, HEAD.",
                    )
            self.assertEqual(browser.get(path).status_code, 200)


def exchange(port: int, request: str) -> tuple[bytes, bytes]:
    """The raw head and body of the answer to `request`, read to the connection's
    end: what a client that does not know HEAD has no body would take for it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


class HeadOverUvicornTests(TransactionTestCase):
    def test_uvicorn_sends_the_gets_content_length_and_no_body(self) -> None:
        user = get_user_model().objects.create_user("erin", "erin@example.com", "pw")
        token = api_token_create(user=user)[1]
        with live_server() as server:
            answers = {
                method: exchange(
                    server.port,
                    f"{method} /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n",
                )
                for method in ("GET", "HEAD")
            }
        get_headers, get_body = answers["GET"]
        head_headers, head_body = answers["HEAD"]
        content_length = f"content-length: {len(get_body)}".encode()
        for headers in (get_headers, head_headers):
            self.assertTrue(headers.startswith(b"HTTP/1.1 200 "), headers)
            self.assertIn(content_length, headers.lower())
        self.assertGreater(len(get_body), 0)
        self.assertEqual(head_body, b"")
