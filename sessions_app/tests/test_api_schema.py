"""Schemathesis against the real app: no 5xx, and every answer fits the OpenAPI
document (status codes, content types, headers and bodies).

The app runs in this process through Django's own WSGI handler (schemathesis' WSGI
transport): the same middleware, URLconf and views as under uvicorn, but inside the
test's transaction, so the personas and tokens of `setUpTestData` exist and nothing
needs committing. A uvicorn subprocess would add nothing the API uses (it has no
streaming) and would need a TransactionTestCase. POSTs that pass validation reach
the SteVe stand-in over real HTTP.

Examples are bounded (MAX_EXAMPLES per operation and mode) and derandomized, so the
run is fast and repeatable.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sessions_app.tests.test_api_sessions import ApiTestCase

MAX_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@contextmanager
def keep_test_connection() -> Iterator[None]:
    """Django's handler closes "old" connections around each request, which inside
    a TestCase would abort the test's transaction; Django's test client disconnects
    the same receivers."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@override_settings(ALLOWED_HOSTS=["localhost", "testserver"])
class OpenApiSchemathesisTests(ApiTestCase):
    def test_the_document_is_served(self) -> None:
        document = self.client.get("/api/v1/openapi.json").json()
        self.assertEqual(
            set(document["paths"]),
            {
                "/api/v1/sessions",
                "/api/v1/sessions/{session_id}",
                "/api/v1/sessions/{session_id}/stop",
                "/api/v1/chargers",
            },
        )
        docs = self.client.get("/api/v1/docs")
        # Swagger UI in the product's frame: a language, a way back, a landmark.
        self.assertContains(docs, '<html lang="en">')
        self.assertContains(docs, '<a class="api-docs__brand" href="/">')
        self.assertContains(docs, '<main id="swagger-ui"></main>')
        # No operation lists 405 (a method it does not take), so the document says
        # how every path answers one.
        self.assertIn("answers 405", document["info"]["description"])

    def test_the_document_describes_the_energy_report(self) -> None:
        schemas = self.client.get("/api/v1/openapi.json").json()["components"][
            "schemas"
        ]
        report = schemas["EnergyReportOut"]
        self.assertEqual(
            set(report["properties"]),
            {"timestamp", "current", "power", "energy_meter", "state_of_charge"},
        )
        # Only the timestamp is always there; a measurand is left out, never null.
        self.assertEqual(report["required"], ["timestamp"])
        for name in ("current", "power", "energy_meter", "state_of_charge"):
            self.assertNotIn("null", str(report["properties"][name]), name)
        self.assertEqual(schemas["ValueUnit"]["properties"]["value"]["type"], "number")
        soc = schemas["StateOfChargeOut"]["properties"]["value"]
        self.assertEqual(soc["type"], "integer")
        self.assertEqual(schemas["CostLineOut"]["properties"]["tax"]["type"], "integer")

    def test_what_the_document_says_is_what_the_api_takes(self) -> None:
        document = self.client.get("/api/v1/openapi.json").json()
        schemas = document["components"]["schemas"]
        for envelope in ("SessionEnvelope", "SessionPageEnvelope", "ErrorEnvelope"):
            self.assertIn("ok", schemas[envelope]["required"], envelope)
        connector = schemas["SessionCreateIn"]["properties"]["connector"]["oneOf"][1]
        pattern = re.compile(connector["pattern"])
        for taken in ("1", "01", "2147483647"):
            self.assertTrue(pattern.fullmatch(taken), taken)
        for refused in ("0", "2147483648", "9999999999"):
            self.assertFalse(pattern.fullmatch(refused), refused)
        parameters = document["paths"]["/api/v1/sessions"]["get"]["parameters"]
        bounds = {p["name"]: p.get("description", "") for p in parameters}
        self.assertIn("createdAt", bounds["from"])
        self.assertIn("createdAt", bounds["to"])

    def test_started_sessions_fit_the_schema(self) -> None:
        # CP-001 reports no state of charge, CP-002 does.
        self.standin.station_stop(42)
        ids = [
            self.result(self.start(box=box), 201)["_id"] for box in ("CP-001", "CP-002")
        ]
        self.standin.tick()
        self.sync()
        self.standin.tick(120)
        for session_id in ids:
            self.advance_id(session_id)
        reports = [self.get(session_id)["energy_report"] for session_id in ids]
        self.assertEqual(
            ["state_of_charge" in report for report in reports], [False, True]
        )
        auth = {"Authorization": f"Bearer {self.staff_token}"}
        with keep_test_connection():
            schema = schemathesis.openapi.from_wsgi(
                "/api/v1/openapi.json", get_wsgi_application()
            )
            detail = schema["/api/v1/sessions/{session_id}"]["GET"]
            for session_id in ids:
                case = detail.Case(path_parameters={"session_id": session_id})
                case.call_and_validate(headers=auth, checks=CHECKS)
            listing = schema["/api/v1/sessions"]["GET"]
            listing.Case().call_and_validate(headers=auth, checks=CHECKS)

    def test_no_5xx_and_every_answer_fits_the_schema(self) -> None:
        # One real session, so that generated ids sometimes hit an existing one.
        self.result(self.start(), 201)
        auth = {"Authorization": f"Bearer {self.staff_token}"}
        with keep_test_connection():
            schema = schemathesis.openapi.from_wsgi(
                "/api/v1/openapi.json", get_wsgi_application()
            )
            operations = [result.ok() for result in schema.get_all_operations()]
            self.assertEqual(len(operations), 5)
            for operation in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    with self.subTest(operation=operation.label, mode=mode.value):
                        self.run_cases(operation, mode, auth)

    def run_cases(
        self,
        operation: schemathesis.APIOperation,
        mode: GenerationMode,
        auth: dict[str, str],
    ) -> None:
        checks = [*CHECKS]
        if mode is GenerationMode.NEGATIVE:
            checks.append(negative_data_rejection)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=auth, checks=checks)

        check()
