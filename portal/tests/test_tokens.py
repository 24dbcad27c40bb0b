import re
from datetime import UTC, datetime, timedelta

import time_machine
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone

from portal.tests.base import PortalTestCase
from sessions_app.models import ApiToken
from sessions_app.services import api_token_create


def current_section(response: HttpResponse) -> list[str]:
    """The addresses of the sidebar links marked as the page's own section."""
    return re.findall(
        r'<a class="sidebar__link" href="([^"]*)" aria-current="page">',
        response.content.decode(),
    )


class TokenTests(PortalTestCase):
    def test_the_sidebar_marks_api_tokens_as_the_current_section(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get(reverse("portal:token-list"))
        self.assertEqual(current_section(response), [reverse("portal:token-list")])

    def test_staff_on_the_console_side_get_the_consoles_tokens_page(self) -> None:
        # The portal's sidebar there would lead its Dashboard link to the console.
        self.client.force_login(self.agent)
        response = self.client.get(reverse("portal:token-list"))
        self.assertRedirects(response, reverse("sessions_app:api-token-list"))
        # On their own customer dashboard (chosen at /switch), the portal's page.
        self.client.post(reverse("portal:switch"), {"account": "customer"})
        response = self.client.get(reverse("portal:token-list"))
        self.assertEqual(current_section(response), [reverse("portal:token-list")])

    def test_it_creates_a_token_and_shows_it_once(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(
            reverse("portal:token-list"), {"name": "Home"}, follow=True
        )
        token = ApiToken.objects.get(user=self.alice)
        self.assertContains(response, "shown only once")
        self.assertContains(response, token.prefix)
        response = self.client.get(reverse("portal:token-list"))
        self.assertNotContains(response, "shown only once")

    def test_a_token_expires_when_its_creator_chose(self) -> None:
        self.client.force_login(self.alice)
        now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
        with time_machine.travel(now, tick=False):
            for name, days in [
                ("Month", "30"),
                ("Year", "365"),
                ("Forever", "never"),
                ("Unsaid", ""),
            ]:
                self.client.post(
                    reverse("portal:token-list"),
                    {"name": name, "expires_in_days": days},
                )
        expiries = dict(
            ApiToken.objects.filter(user=self.alice).values_list("name", "expires_at")
        )
        self.assertEqual(
            expiries,
            {
                "Month": now + timedelta(days=30),
                "Year": now + timedelta(days=365),
                "Forever": None,
                "Unsaid": now + timedelta(days=90),
            },
        )

    def test_the_form_offers_90_days_first_and_refuses_other_lifetimes(self) -> None:
        self.client.force_login(self.alice)
        page = self.client.get(reverse("portal:token-list"))
        self.assertContains(page, '<option value="90" selected>90 days</option>')
        response = self.client.post(
            reverse("portal:token-list"), {"name": "Odd", "expires_in_days": "7"}
        )
        self.assertContains(response, "Select a valid choice. 7 is not one of")
        self.assertFalse(ApiToken.objects.filter(user=self.alice).exists())

    def test_the_list_says_when_each_token_expires_and_which_have(self) -> None:
        now = timezone.now()
        api_token_create(user=self.alice, name="Car", expires_at=now + timedelta(1))
        api_token_create(user=self.alice, name="Old", expires_at=now - timedelta(1))
        api_token_create(user=self.alice, name="Kept")
        api_token_create(user=self.alice, name="App", expires_at=now + timedelta(8))
        self.client.force_login(self.alice)
        page = self.client.get(reverse("portal:token-list")).content.decode()
        rows = {
            name: row
            for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)
            for name in ["Car", "Old", "Kept", "App"]
            if f">{name}<" in row
        }
        # Polaris sends no email: the week before a token expires, its row says so.
        self.assertIn(">Expires soon<", rows["Car"])
        self.assertIn("Revoke", rows["Car"])
        self.assertIn(">Active<", rows["App"])
        # An expired token no longer works: nothing is left to revoke.
        self.assertIn(">Expired<", rows["Old"])
        self.assertNotIn("Revoke", rows["Old"])
        self.assertIn('data-label="Expires" class="nowrap">Never<', rows["Kept"])

    def test_the_page_warns_of_the_tokens_about_to_expire(self) -> None:
        now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
        with time_machine.travel(now, tick=False):
            api_token_create(user=self.alice, name="App", expires_at=now + timedelta(8))
            self.client.force_login(self.alice)
            page = self.client.get(reverse("portal:token-list"))
            self.assertNotContains(page, "within a week")
            car, _ = api_token_create(
                user=self.alice, name="Car", expires_at=now + timedelta(days=7)
            )
            page = self.client.get(reverse("portal:token-list"))
            self.assertContains(
                page,
                '<span class="banner__title">A token expires within a week:</span> '
                f'<span class="mono">{car.prefix}…</span> (Car) on Dec 14, 10:00. '
                "Create a new one below and switch what uses it before then.",
            )
            api_token_create(user=self.alice, expires_at=now + timedelta(hours=1))
            page = self.client.get(reverse("portal:token-list"))
            self.assertContains(page, "2 tokens expire within a week:")
            self.assertContains(page, "switch what uses them before then.")
        # Revoked or expired, a token has nothing left to warn of.
        with time_machine.travel(now + timedelta(days=7, hours=1), tick=False):
            page = self.client.get(reverse("portal:token-list"))
            self.assertContains(page, "A token expires within a week:")
            self.assertContains(page, "(App) on Dec 15, 10:00.")
            ApiToken.objects.filter(name="App").update(revoked_at=timezone.now())
            page = self.client.get(reverse("portal:token-list"))
            self.assertNotContains(page, "within a week")

    def test_it_revokes_a_token(self) -> None:
        token, _ = api_token_create(user=self.alice, name="Car")
        self.client.force_login(self.alice)
        response = self.client.post(reverse("portal:token-revoke", args=[token.pk]))
        self.assertRedirects(response, reverse("portal:token-list"))
        token.refresh_from_db()
        self.assertIsNotNone(token.revoked_at)

    def test_bob_gets_404_for_alices_token(self) -> None:
        token, _ = api_token_create(user=self.alice, name="Car")
        self.client.force_login(self.bob)
        response = self.client.post(reverse("portal:token-revoke", args=[token.pk]))
        self.assertEqual(response.status_code, 404)
        self.assertNotContains(self.client.get(reverse("portal:token-list")), "Car")
        token.refresh_from_db()
        self.assertIsNone(token.revoked_at)
