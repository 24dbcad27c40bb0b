"""Authentication of the Sessions API: Bearer tokens and the browser session."""

from datetime import UTC, datetime, timedelta

import time_machine
from django.contrib.auth import get_user_model
from django.test import Client, TestCase
from django.utils import timezone

from sessions_app.models import ApiToken
from sessions_app.services import api_token_create, api_token_revoke
from sessions_app.tests.test_api_sessions import ApiTestCase
from sessions_app.tests.test_charging import REMOTE_START


class BearerAuthApiTests(ApiTestCase):
    def test_no_credentials_are_401_with_a_challenge(self) -> None:
        response = self.client.get("/api/v1/sessions")
        self.assert_error(response, 401, "Authorization: Bearer")
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')

    def test_an_unknown_token_is_401(self) -> None:
        response = self.call("GET", "/sessions", token="pol_not-a-token")
        self.assert_error(response, 401, "This bearer token is not valid")

    def test_a_revoked_token_is_401_saying_when_it_was_revoked(self) -> None:
        token, raw = api_token_create(user=self.alice, name="ci")
        self.result(self.call("GET", "/sessions", token=raw))
        with time_machine.travel(datetime(2026, 12, 1, 9, 30, tzinfo=UTC)):
            api_token_revoke(token=token)
        response = self.call("GET", "/sessions", token=raw)
        self.assert_error(
            response,
            401,
            "This bearer token was revoked at 2026-12-01 09:30 UTC. Create a new "
            "one on your API tokens page",
        )
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')

    def test_a_token_works_until_it_expires_and_then_says_when_it_did(self) -> None:
        expires_at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
        _, raw = api_token_create(user=self.alice, expires_at=expires_at)
        with time_machine.travel(expires_at - timedelta(seconds=1), tick=False):
            self.result(self.call("GET", "/sessions", token=raw))
        with time_machine.travel(expires_at, tick=False):
            response = self.call("GET", "/sessions", token=raw)
        self.assert_error(
            response,
            401,
            "This bearer token expired at 2026-12-01 09:30 UTC. Create a new one on "
            "your API tokens page",
        )
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')

    def test_an_expired_token_that_was_revoked_says_it_was_revoked(self) -> None:
        expires_at = timezone.now() - timedelta(days=1)
        token, raw = api_token_create(user=self.alice, expires_at=expires_at)
        api_token_revoke(token=token)
        response = self.call("GET", "/sessions", token=raw)
        self.assert_error(response, 401, "This bearer token was revoked at")

    def test_an_inactive_users_token_is_401(self) -> None:
        type(self.bob).objects.filter(pk=self.bob.pk).update(is_active=False)
        response = self.call("GET", "/sessions", token=self.bob_token)
        self.assert_error(response, 401, "its user is inactive")
        # Revoked too, it says no more: whose account is closed is not the
        # caller's to learn from a token's history.
        ApiToken.objects.filter(user=self.bob).update(revoked_at=timezone.now())
        response = self.call("GET", "/sessions", token=self.bob_token)
        self.assert_error(response, 401, "its user is inactive")

    def test_a_write_with_a_bad_token_or_none_is_401_not_a_csrf_failure(
        self,
    ) -> None:
        # An integrator is no browser: CSRF is never what is wrong with its call.
        client = Client(enforce_csrf_checks=True)
        body = {"chargestation": "CP-001", "connector": 1}
        for headers in ({"Authorization": "Bearer pol_not-a-token"}, {}):
            with self.subTest(headers=headers):
                response = client.post(
                    "/api/v1/sessions",
                    data=body,
                    content_type="application/json",
                    headers=headers,
                )
                self.assert_error(response, 401, "Authorization: Bearer")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_no_cache_keeps_an_answer(self) -> None:
        # One caller's data, changing with every sync; refusals alike.
        for response in (
            self.call("GET", "/sessions"),
            self.call("GET", "/sessions", token="pol_not-a-token"),
        ):
            with self.subTest(status=response.status_code):
                self.assertIn("no-store", response["Cache-Control"])
                self.assertIn("private", response["Cache-Control"])

    def test_use_is_recorded_at_most_once_a_minute(self) -> None:
        token, raw = api_token_create(user=self.alice)
        self.call("GET", "/sessions", token=raw)
        token.refresh_from_db()
        first = token.last_used_at
        self.assertIsNotNone(first)
        self.call("GET", "/sessions", token=raw)
        token.refresh_from_db()
        self.assertEqual(token.last_used_at, first)


class BrowserSessionAuthApiTests(ApiTestCase):
    def test_the_portal_reads_with_its_session(self) -> None:
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get("/api/v1/sessions").status_code, 200)

    def test_a_write_without_csrf_token_is_refused(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        response = client.post(
            "/api/v1/sessions",
            data={"chargestation": "CP-001", "connector": 1},
            content_type="application/json",
        )
        self.assert_error(
            response,
            403,
            "This browser request has no valid CSRF token: send the token a "
            "Polaris page carries (its forms' csrfmiddlewaretoken field) in the "
            "X-CSRFToken header, or use a bearer token.",
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_write_with_the_csrf_token_starts_a_session(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        secret = "a" * 32  # what the portal's page would carry in its cookie
        client.cookies["csrftoken"] = secret
        response = client.post(
            "/api/v1/sessions",
            data={"chargestation": "CP-001", "connector": 1},
            content_type="application/json",
            headers={"X-CSRFToken": secret},
        )
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["result"]["user"], str(self.alice.pk))
        self.assertEqual(self.steve_requests(REMOTE_START), 1)


class ApiTokenServiceTests(TestCase):
    def test_only_a_hash_and_the_prefix_are_stored(self) -> None:
        user = get_user_model().objects.create_user("carol", "c@example.com", "pw")
        token, raw = api_token_create(user=user, name="laptop")
        self.assertTrue(raw.startswith("pol_"))
        self.assertTrue(raw.startswith(token.prefix))
        stored = ApiToken.objects.values().get()
        self.assertNotIn(raw, [str(value) for value in stored.values()])
        now = timezone.now()
        with time_machine.travel(now, tick=False):
            revoked = api_token_revoke(token=token)
        self.assertEqual(revoked.revoked_at, now)
