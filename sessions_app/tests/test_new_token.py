"""Creating an API token is post/redirect/get, and the raw token is shown once.

The raw token crosses the redirect in a signed, short-lived browser-session cookie
(sessions_app/new_token.py): never in the database, the session or the URL.
"""

import time_machine
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from sessions_app.models import ApiToken
from sessions_app.new_token import COOKIE
from sync.tests.factories import StaffFactory, UserFactory


class NewTokenTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.driver = UserFactory()

    def pages(self) -> list[tuple[object, str]]:
        return [
            (self.staff, reverse("sessions_app:api-token-list")),
            (self.driver, reverse("portal:token-list")),
        ]

    def test_a_post_redirects_and_the_page_shows_the_token_once(self) -> None:
        for user, url in self.pages():
            with self.subTest(url=url):
                self.client.force_login(user)
                response = self.client.post(url, {"name": "Car"})
                self.assertRedirects(response, url, fetch_redirect_response=False)
                token = ApiToken.objects.get(user=user)

                page = self.client.get(url)
                raw = page.context["new_token"]
                self.assertTrue(raw.startswith(token.prefix))
                self.assertContains(page, raw)
                self.assertIn("no-store", page["Cache-Control"])
                # The page that showed it deletes the cookie: reloading shows the
                # list without the token, and nothing was created again.
                self.assertEqual(page.cookies[COOKIE].value, "")
                again = self.client.get(url)
                self.assertNotContains(again, raw)
                self.assertNotContains(again, "shown only once")
                self.assertEqual(ApiToken.objects.filter(user=user).count(), 1)

    def test_the_cookie_is_http_only_strict_scoped_and_never_written_to_disk(
        self,
    ) -> None:
        for user, url in self.pages():
            with self.subTest(url=url):
                self.client.force_login(user)
                cookie = self.client.post(url, {"name": "Car"}).cookies[COOKIE]
                self.assertTrue(cookie["httponly"])
                self.assertEqual(cookie["samesite"], "Strict")
                self.assertEqual(cookie["path"], url)
                # A browser-session cookie: browsers keep it in memory only.
                self.assertEqual(cookie["max-age"], "")
                self.assertEqual(cookie["expires"], "")

    def test_the_raw_token_is_stored_nowhere_on_the_server(self) -> None:
        self.client.force_login(self.driver)
        url = reverse("portal:token-list")
        self.client.post(url, {"name": "Car"})
        raw = self.client.get(url).context["new_token"]
        for session in Session.objects.all():
            self.assertNotIn(raw, str(session.get_decoded()))
        with connection.cursor() as cursor:
            for table in ("api_tokens", "audit_log", "django_session"):
                cursor.execute(
                    f"SELECT count(*) FROM {table} t "
                    "WHERE position(%s in row_to_json(t)::text) > 0",
                    [raw],
                )
                self.assertEqual(cursor.fetchone(), (0,), table)

    def test_a_cookie_older_than_a_minute_shows_nothing(self) -> None:
        self.client.force_login(self.driver)
        url = reverse("portal:token-list")
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            self.client.post(url, {"name": "Car"})
            traveller.shift(61)
            page = self.client.get(url)
        self.assertIsNone(page.context["new_token"])
        self.assertNotContains(page, "shown only once")

    def test_nobody_else_sees_the_token_from_a_cookie(self) -> None:
        self.client.force_login(self.driver)
        url = reverse("portal:token-list")
        self.client.post(url, {"name": "Car"})
        self.client.force_login(UserFactory())  # the cookie stays in this browser
        page = self.client.get(url)
        self.assertIsNone(page.context["new_token"])
        self.assertNotContains(page, "shown only once")

    def test_a_made_up_cookie_shows_nothing(self) -> None:
        self.client.force_login(self.driver)
        url = reverse("portal:token-list")
        self.client.cookies[COOKIE] = f"{self.driver.pk}:pol_fake"
        page = self.client.get(url)
        self.assertIsNone(page.context["new_token"])
        self.assertNotContains(page, "pol_fake")
