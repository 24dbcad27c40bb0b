import re

from django.http import HttpResponse
from django.urls import reverse

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
