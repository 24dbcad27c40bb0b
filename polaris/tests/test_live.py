"""Live-update streams under uvicorn: who may read them, for how long, and what they
hold open."""

import re
import time
from collections.abc import Iterator
from html import unescape

import jwt
import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, TransactionTestCase

from polaris import live
from polaris.browser import LiveServer, live_server
from polaris.testing import SseReader, current_database_url, wait_until
from sync.tests.factories import StaffFactory, UserFactory

APPLICATION = "polaris-live-test"


def assert_sent_to_sign_in(
    test: TransactionTestCase, url: str, cookies: dict[str, str]
) -> None:
    """Opening the stream at `url` with `cookies` is turned away to sign in: an
    EventSource gets one `signed-out` event, on which the page goes there, and
    anything else the redirect."""
    stream = requests.get(
        url,
        cookies=cookies,
        headers={"Accept": "text/event-stream"},
        allow_redirects=False,
        timeout=10,
    )
    test.assertEqual(stream.status_code, 200)
    test.assertEqual(stream.headers["Content-Type"], "text/event-stream")
    test.assertEqual(stream.text, "retry: 1000\nevent: signed-out\ndata:\n\n")
    other = requests.get(url, cookies=cookies, allow_redirects=False, timeout=10)
    test.assertEqual(other.status_code, 302)
    test.assertIn("/accounts/login/", other.headers["Location"])


class LiveServerCase(TransactionTestCase):
    """Tests of a uvicorn of their own, started with `server_env()`."""

    server: LiveServer

    def server_env(self) -> dict[str, str]:
        return {}

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with live_server(**self.server_env()) as server:
            self.server = server
            yield

    def cookies_for(self, user: User) -> dict[str, str]:
        """The cookies of a new browser session of `user`'s."""
        client = Client()
        client.force_login(user)
        return {"sessionid": client.cookies["sessionid"].value}


class LiveStreamTests(LiveServerCase):
    def server_env(self) -> dict[str, str]:
        # Tag the server's connections so that only they are counted.
        url = current_database_url()
        url += f"{'&' if '?' in url else '?'}application_name={APPLICATION}"
        # A pool smaller than the streams opened below: were a stream to keep its
        # connection, the pages after them would wait for one and fail.
        return {
            "DATABASE_URL": url,
            "DATABASE_POOL_SIZE": "2",
            "DATABASE_POOL_TIMEOUT": "3",
        }

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
            # Eight open streams, and the server holds only its pool's idle
            # connections (at most two), none of them in a transaction...
            wait_until(lambda: self.other_connections() <= 2, timeout=10)
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
        assert_sent_to_sign_in(self, f"{self.server.url}/admin/live/", cookies)

    def test_a_malformed_last_event_id_gets_a_sentence_not_a_cut_stream(self) -> None:
        alice = UserFactory()
        channel = live.customer_channel(alice.pk)
        cookies = self.cookies_for(alice)
        for last_event_id in (
            f"{channel}:abc",
            f"{channel}:1:2",
            "no-colon",
            f"{channel}:{'9' * 5000}",
        ):
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

    def test_a_replay_whose_events_expired_has_the_page_re_read(self) -> None:
        cookies = self.cookies_for(StaffFactory())
        channel = live.staff_channel()
        storage = live.RedisStorage()
        before = storage.get_current_id(channel)
        live.publish(channel, "transaction-resynced", "41")
        live.publish(channel, "transaction-resynced", "42")
        stored = f"event:{channel}:{before + 1}"
        # Kept long enough for a reconnect, not the library's day.
        self.assertLessEqual(storage.redis.ttl(stored), live.EVENT_REPLAY_SECONDS)
        storage.redis.delete(stored)  # As its expiry would.

        # Replaying 42 alone would hide that 41 was missed: the stream says to
        # re-read the page instead.
        with requests.get(
            f"{self.server.url}/admin/live/",
            cookies=cookies,
            headers={"Last-Event-ID": f"{channel}:{before}"},
            stream=True,
            timeout=10,
        ) as response:
            seen = SseReader(response).read_until(b"stream-reset")
        self.assertIn(b"event: stream-reset", seen)
        self.assertNotIn(b"data: 42", seen)

    def test_django_eventstreams_own_parameters_are_ignored(self) -> None:
        alice, bob = UserFactory(), UserFactory()
        cookies = self.cookies_for(alice)
        garbage = {"es-meta": "garbage", "recover": "true", "link": "next"}
        for path in ("/live/", "/admin/live/"):
            staff_cookies = self.cookies_for(StaffFactory()) if "admin" in path else {}
            with requests.get(
                f"{self.server.url}{path}",
                params=garbage,
                cookies=staff_cookies or cookies,
                stream=True,
                timeout=10,
            ) as response:
                self.assertEqual(response.status_code, 200, path)
                self.assertIn(b"stream-open", SseReader(response).read_until(b"open"))
        self.assertNotIn("Traceback", self.server.log())

        # A valid token (it needs SECRET_KEY) naming Bob and his channel changes
        # nothing either: Alice's stream is Alice's channel.
        token = jwt.encode(
            {
                "channels": [live.customer_channel(bob.pk)],
                "user": bob.pk,
                "exp": int(time.time()) + 600,
            },
            settings.SECRET_KEY,
            algorithm="HS256",
        )
        with requests.get(
            f"{self.server.url}/live/",
            params={"es-meta": token, "channel": live.customer_channel(bob.pk)},
            cookies=cookies,
            stream=True,
            timeout=10,
        ) as response:
            stream = SseReader(response)
            stream.read_until(b"stream-open")
            live.publish(live.customer_channel(bob.pk), "active-session", "bob's")
            live.publish(live.customer_channel(alice.pk), "active-session", "alice's")
            seen = stream.read_until(b"data: alice's")
        self.assertNotIn(b"bob's", seen)

    def test_signing_out_ends_the_sessions_streams_at_once(self) -> None:
        alice = UserFactory()
        cookies = self.cookies_for(alice)
        # Alice is also signed in on another device, which stays signed in.
        other_device = Client()
        other_device.force_login(alice)
        other_cookies = {"sessionid": other_device.cookies["sessionid"].value}
        url = f"{self.server.url}/live/"
        with (
            requests.get(url, cookies=cookies, stream=True, timeout=10) as signed_out,
            requests.get(url, cookies=other_cookies, stream=True, timeout=10) as other,
        ):
            stream, other_stream = SseReader(signed_out), SseReader(other)
            stream.read_until(b"stream-open")
            other_stream.read_until(b"stream-open")
            browser = requests.Session()
            browser.cookies.update(cookies)
            confirm = browser.get(f"{self.server.url}/accounts/logout/", timeout=10)
            found = re.search(
                r'name="csrfmiddlewaretoken" value="([^"]+)"', confirm.text
            )
            assert found is not None, confirm.text[:500]
            answer = browser.post(
                f"{self.server.url}/accounts/logout/",
                data={"csrfmiddlewaretoken": found[1]},
                allow_redirects=False,
                timeout=10,
            )
            self.assertEqual(answer.status_code, 302)
            # Long before its lifetime (300 s here), it ends, saying why: the page
            # then leaves for the sign-in page instead of reconnecting.
            stream.read_to_end()
            self.assertIn(b"event: signed-out", stream.seen)
            self.assertNotIn(b"stream-renew", stream.seen)
            # The other device's stream goes on.
            live.publish(live.customer_channel(alice.pk), "active-session", "later")
            other_stream.read_until(b"data: later")
            self.assertFalse(other_stream.ended)
        # The browser's reconnect is sent to sign in.
        assert_sent_to_sign_in(self, url, cookies)


class StreamLifetimeTests(LiveServerCase):
    """Streams under a short LIVE_STREAM_MAX_SECONDS."""

    # Long enough for an event published after the stream opened to reach it on a
    # loaded machine (CI runs two workers beside browsers): at 2 s it once did not.
    LIFETIME_S = 5

    def server_env(self) -> dict[str, str]:
        return {"LIVE_STREAM_MAX_SECONDS": str(self.LIFETIME_S)}

    def test_a_stream_ends_with_its_lifetime_and_the_reconnect_replays_the_gap(
        self,
    ) -> None:
        alice = UserFactory()
        cookies = self.cookies_for(alice)
        channel = live.customer_channel(alice.pk)
        url = f"{self.server.url}/live/"
        with requests.get(url, cookies=cookies, stream=True, timeout=10) as response:
            stream = SseReader(response)
            stream.read_until(b"stream-open")
            live.publish(channel, "active-session", "before")
            stream.read_until(b"data: before")
            found = re.search(rb"id: ([^\n]+)\ndata: before", stream.seen)
            assert found is not None, stream.seen
            last_event_id = found[1].decode()
            stream.read_to_end()
        self.assertIn(b"retry: 1000\nevent: stream-renew\ndata:\n\n", stream.seen)

        # Published while the browser was away: replayed after the id it had.
        live.publish(channel, "active-session", "while away")
        headers = {"Last-Event-ID": last_event_id}
        with requests.get(
            url, cookies=cookies, headers=headers, stream=True, timeout=10
        ) as response:
            seen = SseReader(response).read_until(b"data: while away")
        self.assertNotIn(b"data: before", seen)

    def test_who_may_no_longer_read_is_refused_at_the_reconnect(self) -> None:
        staff, alice = StaffFactory(), UserFactory()
        streams = {
            "/admin/live/": (staff, self.cookies_for(staff)),
            "/live/": (alice, self.cookies_for(alice)),
        }
        for path, (user, cookies) in streams.items():
            with (
                self.subTest(path=path),
                requests.get(
                    f"{self.server.url}{path}", cookies=cookies, stream=True, timeout=10
                ) as response,
            ):
                stream = SseReader(response)
                stream.read_until(b"stream-open")
                # No longer staff; a customer deactivated.
                User.objects.filter(pk=user.pk).update(
                    is_staff=False, is_active=user is not alice
                )
                stream.read_to_end()
                self.assertIn(b"event: stream-renew", stream.seen)
                assert_sent_to_sign_in(self, f"{self.server.url}{path}", cookies)


class StreamLimitTests(LiveServerCase):
    """A user holds at most LIVE_STREAMS_PER_USER streams in one process (2 here)."""

    def server_env(self) -> dict[str, str]:
        return {"LIVE_STREAMS_PER_USER": "2"}

    def open_stream(self, cookies: dict[str, str]) -> SseReader:
        response = requests.get(
            f"{self.server.url}/live/", cookies=cookies, stream=True, timeout=10
        )
        stream = SseReader(response)
        # Kept until the test ends: a reader dropped closes its connection.
        self.streams.append(stream)
        self.addCleanup(response.close)
        stream.read_until(b"stream-open")
        return stream

    def setUp(self) -> None:
        self.streams: list[SseReader] = []

    def test_one_more_stream_ends_at_once_and_comes_back_later(self) -> None:
        alice, bob = UserFactory(), UserFactory()
        # Two devices of hers: the limit is the user's, not a browser session's.
        first = self.open_stream(self.cookies_for(alice))
        self.open_stream(self.cookies_for(alice))

        refused = self.open_stream(self.cookies_for(alice))
        self.assertTrue(refused.ended)
        self.assertIn(b"retry: 30000\n\n", refused.seen)
        self.assertNotIn(b"stream-open", refused.seen)
        # Other users are not held back by hers.
        self.assertFalse(self.open_stream(self.cookies_for(bob)).ended)

        # A tab closed gives its place back.
        first.response.close()
        wait_until(
            lambda: not self.open_stream(self.cookies_for(alice)).ended,
            timeout=10,
            what="a stream in the closed one's place",
        )
