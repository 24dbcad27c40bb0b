"""Live-update streams under uvicorn: who may read them, and what they hold open."""

import re
import time
from collections.abc import Iterator
from html import unescape

import pytest
import requests
from django.db import connection
from django.test import TransactionTestCase

from polaris import live
from polaris.browser import LiveServer, live_server
from polaris.testing import SseReader, current_database_url
from sync.tests.factories import StaffFactory, UserFactory

APPLICATION = "polaris-live-test"


class LiveStreamTests(TransactionTestCase):
    server: LiveServer

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        # Tag the server's connections so that only they are counted.
        url = current_database_url()
        url += f"{'&' if '?' in url else '?'}application_name={APPLICATION}"
        # A pool smaller than the streams opened below: were a stream to keep its
        # connection, the pages after them would wait for one and fail.
        with live_server(
            DATABASE_URL=url, DATABASE_POOL_SIZE="2", DATABASE_POOL_TIMEOUT="3"
        ) as server:
            self.server = server
            yield

    def cookies_for(self, user: object) -> dict[str, str]:
        self.client.force_login(user)  # type: ignore[arg-type]
        return {"sessionid": self.client.cookies["sessionid"].value}

    def other_connections(self, state: str | None = None) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND state = COALESCE(%s, state)",
                [APPLICATION, state],
            )
            (count,) = cursor.fetchone()
        return int(count)

    def test_open_streams_hold_no_database_connection(self) -> None:
        cookies = self.cookies_for(StaffFactory())
        url = f"{self.server.url}/admin/live/"
        streams = []
        try:
            for _ in range(8):
                response = requests.get(url, cookies=cookies, stream=True, timeout=10)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.headers["Content-Type"], "text/event-stream")
                first = next(response.iter_content(chunk_size=None))
                self.assertIn(b"stream-open", first)
                streams.append(response)
            time.sleep(0.5)
            # Eight open streams, and the server holds only its pool's idle
            # connections (at most two), none of them in a transaction...
            self.assertLessEqual(self.other_connections(), 2)
            self.assertEqual(self.other_connections(state="idle in transaction"), 0)
            # ...so pages are still served while the streams stay open.
            for _ in range(4):
                page = requests.get(
                    f"{self.server.url}/admin/sync-runs/", cookies=cookies, timeout=10
                )
                self.assertEqual(page.status_code, 200)
        finally:
            for response in streams:
                response.close()

    def test_customers_cannot_open_the_staff_stream(self) -> None:
        cookies = self.cookies_for(UserFactory())
        response = requests.get(
            f"{self.server.url}/admin/live/",
            cookies=cookies,
            allow_redirects=False,
            timeout=10,
        )
        self.assertEqual(response.status_code, 302)
        self.assertIn("/accounts/login/", response.headers["Location"])

    def test_a_malformed_last_event_id_gets_a_sentence_not_a_cut_stream(self) -> None:
        alice = UserFactory()
        channel = live.customer_channel(alice.pk)
        cookies = self.cookies_for(alice)
        for last_event_id in (f"{channel}:abc", f"{channel}:1:2", "no-colon"):
            response = requests.get(
                f"{self.server.url}/live/",
                params={"lastEventId": last_event_id},
                cookies=cookies,
                timeout=10,
            )
            self.assertEqual(response.status_code, 400, last_event_id)
            self.assertIn("lastEventId must be the id of an event", response.text)

    def test_the_channel_manager_keeps_customers_to_their_own_channel(self) -> None:
        alice, bob, staff = UserFactory(), UserFactory(), StaffFactory()
        self.assertTrue(live.can_read(alice, live.customer_channel(alice.pk)))
        self.assertFalse(live.can_read(alice, live.customer_channel(bob.pk)))
        self.assertFalse(live.can_read(alice, live.staff_channel()))
        self.assertTrue(live.can_read(staff, live.staff_channel()))
        self.assertFalse(live.can_read(None, live.staff_channel()))

    def test_an_event_between_the_page_and_its_stream_is_not_missed(self) -> None:
        # A resync can finish between the page being rendered and its EventSource
        # connecting; the stream the page names starts after what it rendered.
        cookies = self.cookies_for(StaffFactory())
        # An earlier event, which the page already shows: not replayed.
        live.publish(live.staff_channel(), "transaction-resynced", "41")
        page = requests.get(
            f"{self.server.url}/admin/sync-runs/", cookies=cookies, timeout=10
        )
        found = re.search(r'sse-connect="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        stream_path = unescape(found[1])
        self.assertTrue(stream_path.startswith("/admin/live/?lastEventId="))
        live.publish(live.staff_channel(), "transaction-resynced", "42")
        with requests.get(
            f"{self.server.url}{stream_path}", cookies=cookies, stream=True, timeout=10
        ) as response:
            seen = SseReader(response).read_until(b"data: 42")
        # The event after the one the page was rendered at.
        rendered_at = int(stream_path.rsplit("%3A", 1)[1])
        event = rf"event: transaction-resynced\nid: [^\n]+:{rendered_at + 1}\ndata: 42"
        self.assertRegex(seen, event.encode())
        self.assertNotIn(b"data: 41", seen)
