"""The 404, 403 and 500 pages: what went wrong, and a way back for who is signed in."""

import secrets
import sys

from django.template import loader
from django.test import Client, RequestFactory, TestCase, override_settings
from django.urls import reverse
from django.views.debug import ExceptionReporter

from sync.tests.factories import StaffFactory, UserFactory


class ErrorPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = StaffFactory()
        cls.driver = UserFactory()

    def assert_way_back(self, response: object, href: str, label: str) -> None:
        self.assertContains(
            response,
            f'<a class="btn btn--primary" href="{href}">{label}</a>',
            html=True,
            status_code=response.status_code,  # type: ignore[attr-defined]
        )

    def test_a_404_leads_staff_back_to_the_console(self) -> None:
        self.client.force_login(self.staff)
        response = self.client.get("/admin/sessions/987654/")
        self.assertEqual(response.status_code, 404)
        self.assertContains(
            response, "Nothing in the console at this address", status_code=404
        )
        self.assertContains(response, "after the next sync run", status_code=404)
        self.assert_way_back(
            response, reverse("sessions_app:session-list"), "Back to Charging Sessions"
        )

    def test_a_404_leads_drivers_back_to_their_dashboard(self) -> None:
        self.client.force_login(self.driver)
        response = self.client.post(
            reverse("portal:charger-start"), {"charger": 987654}
        )
        self.assertEqual(response.status_code, 404)
        self.assertContains(response, "not on your account", status_code=404)
        self.assert_way_back(
            response, reverse("portal:dashboard"), "Back to your dashboard"
        )
        self.assertNotContains(response, "Charging Sessions", status_code=404)

    def test_a_404_asks_anyone_else_to_sign_in(self) -> None:
        response = self.client.get("/no-such-page")
        self.assertEqual(response.status_code, 404)
        self.assert_way_back(response, reverse("login"), "Sign in")
        self.assertNotContains(response, "Go to the start page", status_code=404)

    def test_a_403_says_why_in_our_words_and_leads_back(self) -> None:
        # Staff without "Can act as a customer" trying to act as one.
        self.client.force_login(self.staff)
        response = self.client.post(
            reverse("portal:act-as-start", args=[self.driver.pk])
        )
        self.assertEqual(response.status_code, 403)
        self.assertContains(
            response,
            "You may not act as customers. Nothing was changed.",
            status_code=403,
        )
        self.assertContains(response, "403 · Not allowed", status_code=403)
        self.assert_way_back(
            response, reverse("sessions_app:session-list"), "Back to Charging Sessions"
        )

    def test_a_request_the_server_will_not_read_gets_our_page(self) -> None:
        # Django refuses an address with over a thousand parameters before any
        # view runs, and renders 400.html without a request.
        self.client.force_login(self.staff)
        query = "&".join(["tag=a"] * 1001)
        response = self.client.get(f"/admin/sessions/?{query}")
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "400 · Bad request", status_code=400)
        self.assertContains(response, "could not read that request", status_code=400)
        self.assertNotContains(response, "Bad Request (400)", status_code=400)
        self.assert_way_back(response, "/", "Back to Polaris Express")

    def test_a_form_sent_without_its_csrf_token_gets_our_page(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.driver)
        response = client.post(reverse("portal:token-list"), {"name": "Car"})
        self.assertEqual(response.status_code, 403)
        self.assertContains(response, "That form was out of date", status_code=403)
        self.assertNotContains(response, "CSRF verification failed", status_code=403)
        self.assert_way_back(
            response, reverse("portal:dashboard"), "Back to your dashboard"
        )

    def test_the_500_page_renders_without_a_request_and_leads_home(self) -> None:
        # Django renders it with an empty context: no request, no user, no queries.
        with self.assertNumQueries(0):
            html = loader.get_template("500.html").render()
        self.assertIn("Polaris Express hit an error", html)
        self.assertIn("Charging carries on at the chargers", html)
        self.assertInHTML(
            '<a class="btn btn--primary" href="/">Back to Polaris Express</a>', html
        )


class ErrorReportTests(TestCase):
    def test_the_debug_error_report_masks_the_passwords_of_urls(self) -> None:
        # Made here, so the report's source lines cannot show them; the error is
        # raised where they are not local variables either.
        db_secret, redis_secret = secrets.token_hex(8), secrets.token_hex(8)
        redis_url = f"redis://:{redis_secret}@cache.example.com:6379/0"
        backend = "django.core.cache.backends.redis.RedisCache"
        with override_settings(
            DATABASE_URL=f"postgres://polaris:{db_secret}@db.example.com/polaris",
            REDIS_URL=redis_url,
            CACHES={"default": {"BACKEND": backend, "LOCATION": redis_url}},
        ):
            html = _debug_error_report()
        self.assertIn("postgres://polaris:***@db.example.com/polaris", html)
        self.assertIn("redis://:***@cache.example.com:6379/0", html)
        self.assertNotIn(db_secret, html)
        self.assertNotIn(redis_secret, html)


def _debug_error_report() -> str:
    """The DEBUG error page of an error raised here, as Django renders it."""
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        request = RequestFactory().get("/")
        return ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
