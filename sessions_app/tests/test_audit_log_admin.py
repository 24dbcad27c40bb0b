"""The audit log in Django admin: staff can read who changed a mapping, and no one
can change or delete what it says."""

from django.test import TestCase
from django.urls import reverse

from sessions_app.models import AuditEntry
from sync.services.mappings import user_mapping_create
from sync.tests.factories import StaffFactory, UserFactory


class AuditLogAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = StaffFactory(is_superuser=True)
        user_mapping_create(
            actor=cls.admin,
            steve_ocpp_id_tag="04A1",
            user=UserFactory(username="dana@example.com"),
            label="Dana",
        )
        cls.entry = AuditEntry.objects.get()

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def test_it_lists_the_mapping_changes(self) -> None:
        response = self.client.get(reverse("admin:sessions_app_auditentry_changelist"))
        self.assertContains(response, "Mapping created")
        self.assertContains(response, self.admin.get_username())

    def test_an_entry_can_be_read_but_not_changed_or_deleted(self) -> None:
        url = reverse("admin:sessions_app_auditentry_change", args=[self.entry.pk])
        response = self.client.get(url)
        self.assertContains(response, "04A1")
        self.assertNotContains(response, 'name="_save"')
        self.client.post(url, {"action": "mapping.deactivated"})
        delete = reverse("admin:sessions_app_auditentry_delete", args=[self.entry.pk])
        self.assertEqual(self.client.post(delete, {"post": "yes"}).status_code, 403)
        self.entry.refresh_from_db()
        self.assertEqual(self.entry.action, AuditEntry.Action.MAPPING_CREATED)
        add = self.client.get(reverse("admin:sessions_app_auditentry_add"))
        self.assertEqual(add.status_code, 403)

    def test_an_entry_still_names_an_actor_whose_account_was_deleted(self) -> None:
        # Staff accounts come and go; what they changed stays theirs.
        agent = StaffFactory(username="agent7")
        user_mapping_create(actor=agent, steve_ocpp_id_tag="04B2", user=UserFactory())
        agent.delete()
        entry = AuditEntry.objects.get(actor_username="agent7")
        self.assertIsNone(entry.actor)
        listed = self.client.get(
            reverse("admin:sessions_app_auditentry_changelist"), {"q": "agent7"}
        )
        self.assertContains(listed, '<td class="field-who">agent7</td>', html=True)
        # A command's entry says so.
        user_mapping_create(actor=None, steve_ocpp_id_tag="04C3", user=UserFactory())
        listed = self.client.get(reverse("admin:sessions_app_auditentry_changelist"))
        self.assertContains(listed, '<td class="field-who">A command</td>', html=True)
