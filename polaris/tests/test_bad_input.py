"""Hostile query strings and form bodies never give a 500.

Hypothesis throws arbitrary text (any Unicode, NUL, huge values, date-like junk) at
the Charging Sessions filters, the portal dashboard's `?period=`, the user-mapping
search and forms, the CSV import, the sign-in form and the portal's forms. Every
answer must be one the page documents (200, a redirect, 404/405 or the login
lock's 429); invalid filter values fall back as the seeds say (unknown status →
all, malformed date ignored with a note, tag cut to 100 characters).

Examples are bounded (40 per page, 300 for the pure parser; deadline=None) so the
file runs in about 25 s on one core.
"""

from datetime import timedelta
from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import QueryDict
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from sessions_app.forms import STATUS_CHOICES, TAG_MAX_LENGTH, parse_session_filters
from sync.tests.factories import (
    StaffFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)

# database=None: no .hypothesis/ folder in the checkout; every run is fresh.
PARSING = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXAMPLES = settings(PARSING, max_examples=40)
OK = {200, 302}

JUNK = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%",
    "%ff%fe",
    "🔌⚡",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "NaN",
    "-1",
    "1e309",
    "0001-01-01",
    "9999-12-31",
    "2024-02-30",
    "2024-13-01",
    "99999-01-01",
    "2024-01-01T25:00",
    "ACTIVE",
    " completed ",
    "null",
    "[]",
    "{}",
]
# Any text (NUL and control characters included), hostile classics, and huge values.
hostile_text = st.one_of(
    st.text(max_size=200),
    st.sampled_from(JUNK),
    st.dates().map(lambda day: day.isoformat()),
    st.builds(lambda s, n: (s or "x") * n, st.text(max_size=4), st.integers(1, 5000)),
)
filter_queries = st.dictionaries(
    st.sampled_from(["status", "from", "to", "tag", "cursor", "q", "period", "x"]),
    hostile_text,
    max_size=6,
)


def query_dict(values: dict[str, str]) -> QueryDict:
    query = QueryDict(mutable=True)
    for key, value in values.items():
        query[key] = value
    return query


class SessionFilterParsingTests(TestCase):
    @PARSING
    @given(filter_queries)
    def test_it_never_fails_and_falls_back(self, values: dict[str, str]) -> None:
        filters = parse_session_filters(query_dict(values))
        self.assertIn(filters.status, {value for value, _ in STATUS_CHOICES})
        self.assertLessEqual(len(filters.tag), TAG_MAX_LENGTH)
        self.assertEqual(filters.tag, filters.tag.strip())
        if values.get("from", "").strip() and filters.date_from is None:
            self.assertTrue(any(note.startswith("From") for note in filters.notes))
        # The links that keep the filters round-trip to the same filters.
        again = parse_session_filters(query_dict(filters.as_query()))
        self.assertEqual(
            (again.status, again.date_from, again.date_to, again.tag),
            (filters.status, filters.date_from, filters.date_to, filters.tag),
        )


class BadInputPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.alice = UserFactory(username="alice@example.com")
        cls.mapping = UserMappingFactory(user=cls.alice, steve_ocpp_id_tag="TAG-A")
        session_with_energy(kwh=Decimal("2.5"), ocpp_id_tag="TAG-A")
        session_with_energy(
            kwh=Decimal("1.0"),
            ocpp_id_tag="TAG-A",
            started_at=timezone.now() - timedelta(days=3),
        )

    def assert_no_error(self, response: object, allowed: set[int] = OK) -> None:
        status = response.status_code  # type: ignore[attr-defined]
        self.assertIn(status, allowed, response)

    @EXAMPLES
    @given(filter_queries, st.booleans())
    def test_the_sessions_page_takes_any_query(
        self, values: dict[str, str], htmx: bool
    ) -> None:
        self.client.force_login(self.staff)
        headers = {"HX-Request": "true"} if htmx else {}
        response = self.client.get("/admin/sessions/", values, headers=headers)
        self.assert_no_error(response, {200})

    @EXAMPLES
    @given(filter_queries)
    def test_the_csv_export_takes_any_query(self, values: dict[str, str]) -> None:
        self.client.force_login(self.staff)
        response = self.client.get("/admin/sessions/export.csv", values)
        self.assertEqual(response.status_code, 200)
        b"".join(response.streaming_content)

    def test_extreme_dates_in_far_time_zones_are_handled(self) -> None:
        self.client.force_login(self.staff)
        for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
            with self.subTest(zone=zone), override_settings(TIME_ZONE=zone):
                response = self.client.get(
                    "/admin/sessions/", {"from": "0001-01-01", "to": "9999-12-31"}
                )
                self.assertEqual(response.status_code, 200)

    def test_undecodable_query_bytes_are_handled(self) -> None:
        self.client.force_login(self.staff)
        for path in (
            "/admin/sessions/?status=%ff%fe&tag=%c3%28&from=%00",
            "/admin/user-mappings/?q=%ff%00",
        ):
            with self.subTest(path=path):
                self.assertEqual(self.client.get(path).status_code, 200)

    @EXAMPLES
    @given(hostile_text, st.booleans())
    def test_the_dashboard_takes_any_period(self, period: str, htmx: bool) -> None:
        self.client.force_login(self.alice)
        headers = {"HX-Request": "true"} if htmx else {}
        response = self.client.get("/", {"period": period}, headers=headers)
        self.assert_no_error(response, {200})

    @EXAMPLES
    @given(hostile_text)
    def test_the_user_mapping_search_takes_any_text(self, search: str) -> None:
        self.client.force_login(self.staff)
        response = self.client.get("/admin/user-mappings/", {"q": search})
        self.assert_no_error(response, {200})

    @EXAMPLES
    @given(
        st.fixed_dictionaries(
            {},
            optional={
                "steve_ocpp_id_tag": hostile_text,
                "customer_email": st.one_of(hostile_text, st.just("alice@example.com")),
                "label": hostile_text,
                "billing_customer_id": hostile_text,
                "is_active": hostile_text,
            },
        ),
        st.booleans(),
    )
    def test_the_user_mapping_forms_take_any_body(
        self, body: dict[str, str], edit: bool
    ) -> None:
        self.client.force_login(self.staff)
        path = (
            f"/admin/user-mappings/{self.mapping.pk}/"
            if edit
            else "/admin/user-mappings/new"
        )
        self.assert_no_error(self.client.post(path, body))

    @EXAMPLES
    @given(st.one_of(st.binary(max_size=2000), hostile_text.map(str.encode)))
    def test_the_mapping_import_takes_any_file(self, content: bytes) -> None:
        self.client.force_login(self.staff)
        upload = SimpleUploadedFile("mappings.csv", content, "text/csv")
        response = self.client.post("/admin/user-mappings/import", {"file": upload})
        self.assert_no_error(response, {302})

    @EXAMPLES
    @given(hostile_text, hostile_text)
    def test_the_sign_in_form_takes_any_body(
        self, username: str, password: str
    ) -> None:
        response = self.client.post(
            "/accounts/login/", {"username": username, "password": password}
        )
        self.assert_no_error(response, {200, 429})

    @EXAMPLES
    @given(
        st.sampled_from(["/switch", "/tokens/", "/admin/api-tokens/"]),
        st.dictionaries(st.sampled_from(["account", "name", "minutes"]), hostile_text),
    )
    def test_the_small_forms_take_any_body(
        self, path: str, body: dict[str, str]
    ) -> None:
        self.client.force_login(self.staff if path.startswith("/admin") else self.alice)
        self.assert_no_error(self.client.post(path, body))
