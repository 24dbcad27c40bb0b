"""Each live page takes its stream's resume id before it reads what it shows, so
an event published while it renders is replayed to it (polaris.live.stream_url)."""

from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext

from polaris import live
from portal.tests.base import PortalTestCase
from sync.tests.factories import StaffFactory

# What the pages show; a query of one before the stream's id was taken read data
# an event published meanwhile could have changed.
PAGE_TABLES = (
    "transaction_sync_state",
    "synced_transaction_events",
    "sync_runs",
    "user_mappings",
    "tag_energy_by_hour",
    "api_sessions",
    "reservations",
    "chargers",
)


class StreamResumeIdTests(PortalTestCase):
    def reads_before_the_stream_id(self, path: str) -> list[str]:
        """The page's data queries run before it asked for its stream's id."""
        before: list[str] = []
        queries = CaptureQueriesContext(connection)
        real_stream_url = live.stream_url

        def stream_url(url: str, channel: str) -> str:
            before.extend(query["sql"] for query in queries.captured_queries)
            return real_stream_url(url, channel)

        with queries, mock.patch.object(live, "stream_url", stream_url):
            response = self.client.get(path)
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"lastEventId=", response.content)
        return [
            sql for sql in before if any(f'"{table}"' in sql for table in PAGE_TABLES)
        ]

    def test_every_live_page_takes_the_id_first(self) -> None:
        staff = StaffFactory()
        detail = f"/admin/sessions/{self.alice_session.steve_transaction_id}/"
        for user, path in (
            (self.alice, "/"),
            (staff, "/admin/sessions/"),
            (staff, detail),
            (staff, "/admin/sync-runs/"),
        ):
            with self.subTest(path):
                self.client.force_login(user)
                self.assertEqual(self.reads_before_the_stream_id(path), [])
