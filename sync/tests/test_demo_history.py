"""What a restarted demo clears: only what its last stand-in synced or acted on."""

from decimal import Decimal

from django.test import TransactionTestCase

from portal.models import Reservation
from portal.tests.factories import ReservationFactory
from sessions_app.models import ApiSession, AuditEntry, Rate
from sync.models import (
    Charger,
    SyncedTransactionEvent,
    UserMapping,
)
from sync.services.demo import (
    DEMO_DRIVERS,
    StandinHistory,
    demo_accounts_create,
    demo_history,
    demo_history_clear,
)
from sync.tests.factories import (
    ChargerFactory,
    SyncRunFactory,
    UserMappingFactory,
    session_with_energy,
)
from sync.tests.rollup_checks import assert_rollups_exact


class DemoHistoryTests(TransactionTestCase):
    def test_it_clears_the_stand_ins_history_and_keeps_the_rest(self) -> None:
        mapping = UserMappingFactory(steve_ocpp_id_tag="TAG-0001")
        charger = ChargerFactory()
        rate = Rate.objects.create(name="Standard", is_default=True)
        SyncRunFactory()
        session_with_energy(kwh=Decimal("4.2"), ocpp_id_tag="TAG-0001", charger=charger)
        ApiSession.objects.create(
            user=mapping.user,
            charge_box_id=charger.charge_box_id,
            connector_id=charger.connector_id,
            id_tag="TAG-0001",
        )
        ReservationFactory(user=mapping.user, charger=charger)

        cleared = demo_history_clear()

        self.assertEqual(
            cleared, StandinHistory(sessions=1, api_sessions=1, reservations=1)
        )
        self.assertFalse(demo_history())
        self.assertFalse(SyncedTransactionEvent.objects.exists())
        self.assertFalse(Reservation.objects.exists())
        # The rollups emptied with their tables.
        assert_rollups_exact(self)
        self.assertEqual(UserMapping.objects.get(), mapping)
        self.assertEqual(Charger.objects.get(), charger)
        self.assertEqual(Rate.objects.get(), rate)
        # Numbering starts over, as the new stand-in's does.
        self.assertEqual(session_with_energy(kwh=Decimal("1"), charger=charger).pk, 1)


class DemoAccountsTests(TransactionTestCase):
    def test_the_drivers_cards_are_mapped_once_through_the_audited_service(
        self,
    ) -> None:
        for _ in range(2):  # as each start of the demo does
            demo_accounts_create()
        mappings = UserMapping.objects.order_by("steve_ocpp_id_tag")
        self.assertEqual(
            list(mappings.values_list("steve_ocpp_id_tag", "user__username")),
            [
                (tag, email)
                for email, (_, tags) in sorted(DEMO_DRIVERS.items())
                for tag in tags
            ],
        )
        entries = AuditEntry.objects.filter(action=AuditEntry.Action.MAPPING_CREATED)
        self.assertEqual(
            sorted(entries.values_list("object_id", "source", "actor")),
            sorted((str(m.pk), "demo", None) for m in mappings),
        )
