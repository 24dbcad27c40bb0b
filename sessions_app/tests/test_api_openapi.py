"""The OpenAPI document says what the API answers: it is a valid OpenAPI document,
each operation lists the statuses it can answer (each one reached here by a request,
and no other), and the answers' headers are documented."""

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone
from openapi_spec_validator import validate

from sessions_app.models import ApiSession
from sessions_app.tests.test_api_sessions import ApiTestCase

CSRF_SECRET = "a" * 32  # what the portal's page would carry in its cookie


class OpenApiDocumentTests(ApiTestCase):
    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = self.client.get("/api/v1/openapi.json").json()
        return document

    def operations(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (method.upper(), path): operation
            for path, item in self.document()["paths"].items()
            for method, operation in item.items()
        }

    def test_it_is_a_valid_openapi_document(self) -> None:
        validate(self.document())

    def test_reads_list_no_status_only_a_write_answers(self) -> None:
        for (method, path), operation in self.operations().items():
            if method == "GET":
                with self.subTest(path=path):
                    listed = {int(status) for status in operation["responses"]}
                    self.assertFalse(listed & {400, 403, 409, 413, 502}, listed)

    def test_every_401_documents_its_challenge(self) -> None:
        challenge = self.client.get("/api/v1/sessions")["WWW-Authenticate"]
        for (method, path), operation in self.operations().items():
            with self.subTest(method=method, path=path):
                header = operation["responses"]["401"]["headers"]["WWW-Authenticate"]
                self.assertTrue(header["required"])
                self.assertEqual(header["schema"]["enum"], [challenge])

    def test_a_create_documents_location_and_idempotent_replayed(self) -> None:
        created = self.operations()[("POST", "/api/v1/sessions")]["responses"]["201"]
        headers = created["headers"]
        self.assertTrue(headers["Location"]["required"])
        self.assertFalse(headers["Idempotent-Replayed"]["required"])
        key = {"Idempotency-Key": "order-1"}
        first = self.start(headers=key)
        session_id = self.result(first, 201)["_id"]
        self.assertEqual(first["Location"], f"/api/v1/sessions/{session_id}")
        self.assertNotIn("Idempotent-Replayed", first)
        replayed = headers["Idempotent-Replayed"]["schema"]["enum"]
        self.assertEqual([self.start(headers=key)["Idempotent-Replayed"]], replayed)

    def test_405_is_documented_once_with_allow_and_answered_on_every_path(
        self,
    ) -> None:
        document = self.document()
        method_not_allowed = document["components"]["responses"]["MethodNotAllowed"]
        self.assertTrue(method_not_allowed["headers"]["Allow"]["required"])
        self.assertIn("MethodNotAllowed", document["info"]["description"])
        for path, item in document["paths"].items():
            documented = {method.upper() for method in item}
            if "GET" in documented:
                documented.add("HEAD")  # the description says so
            refused = "PUT" if "POST" in documented else "POST"
            with self.subTest(path=path):
                concrete = path.removeprefix("/api/v1").replace("{session_id}", "1")
                response = self.call(refused, concrete)
                self.assert_error(response, 405, f"{refused} is not allowed")
                self.assertEqual(set(response["Allow"].split(", ")), documented)


class DocumentedStatusesTests(ApiTestCase):
    """Each operation answers every status its document lists, and only those."""

    def listed(self, method: str, path: str) -> set[int]:
        document = self.client.get("/api/v1/openapi.json").json()
        responses = document["paths"][path][method.lower()]["responses"]
        return {int(status) for status in responses}

    def assert_reached(
        self, method: str, path: str, responses: list[HttpResponse]
    ) -> None:
        reached = {response.status_code for response in responses}
        self.assertEqual(reached, self.listed(method, path))

    def browser(self, *, csrf: bool) -> Client:
        client = Client(
            enforce_csrf_checks=True,
            headers={"X-CSRFToken": CSRF_SECRET} if csrf else {},
        )
        client.force_login(self.alice)
        if csrf:
            client.cookies["csrftoken"] = CSRF_SECRET
        return client

    def too_large_form(self, client: Client, path: str) -> HttpResponse:
        # The CSRF check of a browser session's write reads a form body.
        body = "a=" + "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return client.post(
            path, data=body, content_type="application/x-www-form-urlencoded"
        )

    def too_many_parameters(
        self, method: str, path: str, body: Any = None
    ) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        many = "&".join(f"p{n}=1" for n in range(limit + 1))
        response = self.call(method, f"{path}?{many}", body=body)
        self.assert_error(response, 422, "more than 1000 query parameters")
        return response

    def started(self) -> str:
        session_id: str = self.result(self.start(), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        return session_id

    def test_the_list(self) -> None:
        self.assert_reached(
            "GET",
            "/api/v1/sessions",
            [
                self.call("GET", "/sessions"),
                # A read checks no CSRF token.
                self.browser(csrf=False).get("/api/v1/sessions"),
                self.client.get("/api/v1/sessions"),
                self.call("GET", "/sessions?user=1"),
                self.too_many_parameters("GET", "/sessions"),
            ],
        )

    def test_the_charger_list(self) -> None:
        self.assert_reached(
            "GET",
            "/api/v1/chargers",
            [
                self.call("GET", "/chargers"),
                self.browser(csrf=False).get("/api/v1/chargers"),
                self.client.get("/api/v1/chargers"),
                self.call("GET", "/chargers?cursor=zzz"),
                self.too_many_parameters("GET", "/chargers"),
            ],
        )

    def test_the_detail(self) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        path = f"/sessions/{session_id}"
        self.assert_reached(
            "GET",
            "/api/v1/sessions/{session_id}",
            [
                self.call("GET", path),
                self.browser(csrf=False).get(f"/api/v1{path}"),
                self.client.get(f"/api/v1{path}"),
                self.call("GET", path, self.bob_token),
                self.call("GET", f"{path}?expand=1"),
                self.too_many_parameters("GET", path),
            ],
        )

    def test_the_create(self) -> None:
        body = {"chargestation": "CP-002", "connector": 1}
        responses = [
            self.start(),
            self.client.post(
                "/api/v1/sessions",
                data="{not json",
                content_type="application/json",
                headers={"Authorization": f"Bearer {self.alice_token}"},
            ),
            self.client.post("/api/v1/sessions"),
            self.client.post(
                "/api/v1/sessions",
                data=json.dumps(body),
                content_type="text/plain",
                headers={"Authorization": f"Bearer {self.alice_token}"},
            ),
            self.browser(csrf=False).post(
                "/api/v1/sessions", data=body, content_type="application/json"
            ),
            self.start(box="CP-999"),
            self.start(self.bob_token),  # CP-001 is alice's now
            self.call(
                "POST",
                "/sessions",
                body={**body, "padding": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
            ),
            self.start(box="CP-002", connector=0),
            self.too_many_parameters("POST", "/sessions", body),
        ]
        self.standin.set_fault("error", status=503, path_contains="operations")
        responses.append(self.start(box="CP-002"))
        self.assert_reached("POST", "/api/v1/sessions", responses)

    def test_the_stop(self) -> None:
        session_id = self.started()
        self.standin.station_stop(42)  # frees CP-002
        later = timezone.now() + timedelta(hours=1)
        target = {"energy_start_time": later.isoformat()}
        scheduled = self.start(self.bob_token, box="CP-002", target=target)
        waiting = self.result(scheduled, 201)["_id"]
        stop = f"/sessions/{session_id}/stop"
        # Stopping a session that has not started cancels it (again when retried).
        self.result(self.call("POST", f"/sessions/{waiting}/stop", self.bob_token))
        responses = [
            self.call("POST", f"/sessions/{waiting}/stop"),  # bob's
            self.client.post(f"/api/v1{stop}"),
            self.browser(csrf=False).post(f"/api/v1{stop}"),
            self.too_large_form(self.browser(csrf=True), f"/api/v1{stop}"),
            self.call("POST", f"/sessions/{waiting}/stop", self.bob_token),
            # Staff without the permission to stop another user's session.
            self.call("POST", stop, self.staff_token),
            self.call("POST", f"{stop}?force=1"),
            self.too_many_parameters("POST", stop),
        ]
        self.standin.set_fault("error", status=503, path_contains="RemoteStop")
        responses.append(self.call("POST", stop))
        # A session the station ended (the stop above was never sent) cannot be
        # stopped: 409.
        self.standin.clear_faults()
        ended = ApiSession.objects.get(pk=session_id)
        self.standin.station_stop(self.steve_transaction(ended)["id"])
        self.sync()
        self.advance(ended)
        responses.append(self.call("POST", stop))
        self.assert_reached("POST", "/api/v1/sessions/{session_id}/stop", responses)
