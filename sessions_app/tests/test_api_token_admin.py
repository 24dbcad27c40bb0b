"""API tokens in Django admin: revoking is for staff who may change tokens, and
each revoke is in the token's history."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.test import TestCase
from django.urls import reverse

from sessions_app.models import ApiToken
from sessions_app.services import api_token_create
from sync.tests.factories import StaffFactory, UserFactory


class ApiTokenRevokeActionTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.token, _ = api_token_create(
            user=UserFactory(username="dana@example.com"), name="Dana's app"
        )
        cls.staff = StaffFactory()

    def grant(self, *codenames: str) -> None:
        self.staff.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="sessions_app", codename__in=codenames
            )
        )

    def revoke(self) -> None:
        self.client.force_login(self.staff)
        self.client.post(
            reverse("admin:sessions_app_apitoken_changelist"),
            {"action": "revoke", "_selected_action": [self.token.pk]},
        )
        self.token.refresh_from_db()

    def test_staff_who_may_only_view_tokens_cannot_revoke_them(self) -> None:
        self.grant("view_apitoken")
        self.client.force_login(self.staff)
        changelist = self.client.get(reverse("admin:sessions_app_apitoken_changelist"))
        self.assertContains(changelist, "Dana&#x27;s app")
        self.assertNotContains(changelist, "Revoke selected tokens")
        self.revoke()
        self.assertIsNone(self.token.revoked_at)
        self.assertFalse(LogEntry.objects.exists())

    def test_a_revoke_is_in_the_tokens_history_once(self) -> None:
        self.grant("view_apitoken", "change_apitoken")
        self.revoke()
        self.assertIsNotNone(self.token.revoked_at)
        revoked_at = self.token.revoked_at
        # Selected again, a revoked token stays as it was and is not logged again.
        self.revoke()
        self.assertEqual(self.token.revoked_at, revoked_at)
        entry = LogEntry.objects.get()
        self.assertEqual(
            (entry.user_id, entry.object_id, entry.action_flag, entry.change_message),
            (self.staff.pk, str(self.token.pk), CHANGE, "Revoked."),
        )
        self.assertTrue(ApiToken.objects.filter(pk=self.token.pk).exists())
