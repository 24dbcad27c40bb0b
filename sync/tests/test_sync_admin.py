"""Synced data in Django admin: staff read it; SteVe and the sync write it."""

from django.db.models import Model
from django.test import TestCase
from django.urls import reverse

from sync.models import SyncRun, TransactionSyncState, UserMapping
from sync.tests.factories import (
    ChargerFactory,
    StaffFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserMappingFactory,
)


class SyncedDataAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = StaffFactory(is_superuser=True)
        cls.rows: list[Model] = [
            SyncRunFactory(),
            TransactionSyncStateFactory(ocpp_id_tag="04A1"),
            UserMappingFactory(steve_ocpp_id_tag="04A1"),
        ]

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def test_rows_can_be_read_but_not_added_changed_or_deleted(self) -> None:
        for row in self.rows:
            name = f"admin:sync_{row._meta.model_name}"
            with self.subTest(model=row._meta.model_name):
                listed = self.client.get(reverse(f"{name}_changelist"))
                self.assertEqual(listed.status_code, 200)
                self.assertNotContains(listed, reverse(f"{name}_add"))
                change = reverse(f"{name}_change", args=[row.pk])
                self.assertContains(self.client.get(change), "Close")
                self.assertNotContains(self.client.get(change), 'name="_save"')
                self.assertEqual(self.client.post(change, {}).status_code, 403)
                delete = reverse(f"{name}_delete", args=[row.pk])
                self.assertEqual(
                    self.client.post(delete, {"post": "yes"}).status_code, 403
                )
                self.assertEqual(
                    self.client.get(reverse(f"{name}_add")).status_code, 403
                )
        self.assertEqual(
            (
                SyncRun.objects.count(),
                TransactionSyncState.objects.count(),
                UserMapping.objects.count(),
            ),
            (1, 1, 1),
        )


class ChargerAdminTests(TestCase):
    def test_a_chargers_steve_connector_is_not_changed_in_django_admin(self) -> None:
        # Staff name a charger, set its visibility and power here; which SteVe
        # connector it is stays as the sync found it.
        charger = ChargerFactory(charge_box_id="CP-006", connector_id=2)
        self.client.force_login(StaffFactory(is_superuser=True))
        change = reverse("admin:sync_charger_change", args=[charger.pk])
        response = self.client.post(
            change,
            {
                "charge_box_id": "CP-006",
                "connector_id": "3",
                "friendly_name": "Old Mill Depot",
                "connector_type": "Type 2",
                "max_power_kw": "22",
            },
        )
        self.assertRedirects(response, reverse("admin:sync_charger_changelist"))
        charger.refresh_from_db()
        self.assertEqual(
            (charger.charge_box_id, charger.connector_id, charger.friendly_name),
            ("CP-006", 2, "Old Mill Depot"),
        )
        # A charger added by hand names its connector.
        added = self.client.get(reverse("admin:sync_charger_add"))
        self.assertContains(added, 'name="charge_box_id"')


class DjangoAdminNulTests(TestCase):
    def test_a_nul_in_a_list_filter_or_search_is_a_bad_request(self) -> None:
        # PostgreSQL text cannot hold NUL: the query would fail with a 500.
        self.client.force_login(StaffFactory(is_superuser=True))
        runs = reverse("admin:sync_syncrun_changelist")
        for query in (
            "status__exact=%00",
            "q=a%00b",
            "app_label=sync&model_name=usermapping&field_name=user&term=%00",
        ):
            url = reverse("admin:autocomplete") if "term" in query else runs
            with self.subTest(query=query):
                response = self.client.get(f"{url}?{query}")
                self.assertContains(response, "NUL character", status_code=400)
        self.assertEqual(
            self.client.get(f"{runs}?status__exact=failed").status_code, 200
        )
