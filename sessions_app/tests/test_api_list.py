"""`GET /api/v1/sessions`: who sees what, filters and cursor pagination."""

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from sessions_app.models import ApiSession
from sessions_app.tests.test_api_sessions import ApiTestCase

DAY = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class SessionListApiTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        # Finished sessions written directly: listing needs no station.
        cls.rows: list[ApiSession] = []
        for index in range(7):
            owner: AbstractBaseUser = cls.alice if index % 2 == 0 else cls.bob
            cls.rows.append(
                ApiSession.objects.create(
                    user=owner,
                    charge_box_id="CP-001" if index < 4 else "CP-002",
                    connector_id=1,
                    id_tag="TAG-0001",
                    status="ended" if index % 3 else "cancelled",
                    created_at=DAY + timedelta(hours=index),
                    updated_at=DAY + timedelta(hours=index),
                )
            )

    def items(self, query: str = "", token: str | None = None) -> dict[str, Any]:
        return self.result(self.call("GET", f"/sessions{query}", token))

    def ids(self, query: str = "", token: str | None = None) -> list[str]:
        return [item["_id"] for item in self.items(query, token)["items"]]

    def expected(self, rows: list[ApiSession]) -> list[str]:
        return [str(row.pk) for row in reversed(rows)]

    def test_customers_see_their_own_sessions_newest_first(self) -> None:
        self.assertEqual(self.ids(), self.expected(self.rows[0::2]))
        self.assertEqual(self.ids(token=self.bob_token), self.expected(self.rows[1::2]))

    def test_staff_see_every_session(self) -> None:
        self.assertEqual(self.ids(token=self.staff_token), self.expected(self.rows))

    def test_it_filters_by_status_chargestation_and_period(self) -> None:
        staff = self.staff_token
        cancelled = [row for row in self.rows if row.status == "cancelled"]
        self.assertEqual(self.ids("?status=cancelled", staff), self.expected(cancelled))
        self.assertEqual(
            self.ids("?chargestation=CP-002", staff), self.expected(self.rows[4:])
        )
        self.assertEqual(
            self.ids("?from=2026-03-01T10:00:00Z&to=2026-03-01T12:00:00Z", staff),
            self.expected(self.rows[1:4]),
        )

    def walk(self) -> list[str]:
        """Every session staff list, three a page, following the cursor."""
        seen: list[str] = []
        query = "?limit=3"
        while True:
            page = self.items(query, self.staff_token)
            seen += [item["_id"] for item in page["items"]]
            if page["next_cursor"] is None:
                return seen
            query = f"?limit=3&cursor={page['next_cursor']}"

    def test_the_cursor_walks_every_page_once(self) -> None:
        self.assertEqual(self.walk(), self.expected(self.rows))

    def test_the_cursor_walks_sessions_created_at_one_moment_once_each(self) -> None:
        # Ties across a page boundary are ordered by id.
        ApiSession.objects.update(created_at=DAY)
        self.assertEqual(self.walk(), self.expected(self.rows))

    def test_a_bad_cursor_or_bad_filters_are_422(self) -> None:
        for cursor in ("zzz", "!!"):
            response = self.call("GET", f"/sessions?cursor={cursor}")
            self.assert_error(response, 422, "cursor")
        self.assert_error(self.call("GET", "/sessions?status=done"), 422, "status")

    def test_a_cursor_with_an_offset_postgresql_refuses_is_read_in_utc(self) -> None:
        # Python reads offsets up to ±23:59, PostgreSQL only to ±15:59.
        moment = DAY + timedelta(hours=3)
        far_west = timezone(-timedelta(hours=23, minutes=59))
        text = f"{moment.astimezone(far_west).isoformat()}|{self.rows[3].pk}"
        cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        page = self.items(f"?cursor={cursor}", self.staff_token)
        self.assertEqual(
            [item["_id"] for item in page["items"]], self.expected(self.rows[:3])
        )
        out_of_range = base64.urlsafe_b64encode(
            f"9999-12-31T23:00:00-23:59|{self.rows[3].pk}".encode()
        ).decode()
        self.assert_error(
            self.call("GET", f"/sessions?cursor={out_of_range}"), 422, "cursor"
        )
        self.assert_error(self.call("GET", "/sessions?limit=0"), 422, "limit")

    def test_an_unknown_query_parameter_is_422_and_named(self) -> None:
        # Left unread, `user` would list every session as if it filtered them.
        self.assert_error(
            self.call("GET", "/sessions?user=3&limit=1"),
            422,
            "Unknown query parameter: user. This endpoint takes status, "
            "chargestation, from, to, cursor, limit.",
        )
        self.assert_error(
            self.call("GET", "/sessions?stauts=ended&page=2"),
            422,
            "Unknown query parameters: page, stauts.",
        )

    def test_a_repeated_query_parameter_is_422(self) -> None:
        self.assert_error(
            self.call("GET", "/sessions?status=ended&status=cancelled&limit=2"),
            422,
            "Query parameter given more than once: status. Give each once.",
        )

    def test_an_out_of_range_date_is_said_without_framework_words(self) -> None:
        self.assert_error(
            self.call("GET", "/sessions?from=0001-01-01T00:00:00%2B01:00"),
            422,
            "Invalid request: from: is out of range.",
        )

    def test_an_offset_whose_plus_the_url_turned_into_a_space_is_explained(
        self,
    ) -> None:
        self.assert_error(
            self.call("GET", "/sessions?from=2026-03-01T09:00:00+01:00"),
            422,
            "from: has a space where its offset's + should be: write + as %2B",
        )
        self.assertEqual(
            self.call("GET", "/sessions?from=2026-03-01T09:00:00%2B01:00").status_code,
            200,
        )

    def test_a_period_that_ends_before_it_starts_is_422(self) -> None:
        query = "/sessions?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z"
        self.assert_error(
            self.call("GET", query), 422, "to: must not be earlier than from"
        )
        same = "?from=2026-03-01T10:00:00Z&to=2026-03-01T10:00:00Z"
        self.assertEqual(self.ids(same, self.staff_token), [str(self.rows[1].pk)])

    def test_a_to_at_the_end_of_time_is_422(self) -> None:
        self.assert_error(
            self.call("GET", "/sessions?to=9999-12-31T23:59:59.999Z"),
            422,
            "to: is out of range: the latest is 9999-12-31T23:59:59.998Z.",
        )
        latest = "?to=9999-12-31T23:59:59.998Z"
        self.assertEqual(len(self.ids(latest, self.staff_token)), len(self.rows))

    def test_a_sessions_own_created_at_as_both_bounds_finds_it(self) -> None:
        # createdAt is shown to the millisecond and stored to the microsecond.
        row = self.rows[2]
        ApiSession.objects.filter(pk=row.pk).update(
            created_at=row.created_at.replace(microsecond=580163)
        )
        shown = self.get(str(row.pk), self.staff_token)["createdAt"]
        self.assertEqual(shown, "2026-03-01T11:00:00.580Z")
        self.assertEqual(
            self.ids(f"?from={shown}&to={shown}", self.staff_token), [str(row.pk)]
        )
        before = "2026-03-01T11:00:00.579Z"
        self.assertEqual(self.ids(f"?from={before}&to={before}", self.staff_token), [])

    def test_a_date_time_out_of_its_ranges_says_what_is_wanted(self) -> None:
        for value in (
            "2026-12-06T24:00:00Z",
            "2026-12-06T08:00:60Z",
            "2026-12-06T08:00:00%2B25:00",
            "2026-02-30T09:00:00Z",
        ):
            with self.subTest(value=value):
                response = self.call("GET", f"/sessions?from={value}")
                self.assert_error(
                    response,
                    422,
                    "from: must be an ISO 8601 date-time such as "
                    "2026-03-01T09:00:00Z: a day its month has, hours 00 to 23",
                )
                self.assertNotIn("extra characters", response.json()["message"])

    def test_a_date_without_a_time_is_422_and_says_so(self) -> None:
        for value in ("2026-03-01", "2026-3-1", "1772355600"):
            response = self.call("GET", f"/sessions?from={value}")
            self.assert_error(response, 422, "from: must be a date and a time of day")
            self.assertNotIn("or date", response.json()["message"])

    def test_a_page_takes_a_fixed_number_of_queries(self) -> None:
        staff = self.staff_token
        self.items(token=staff)  # warm up ContentType and similar caches
        # The token lookup, then one query for the page.
        with self.assertNumQueries(2):
            self.items(token=staff)
