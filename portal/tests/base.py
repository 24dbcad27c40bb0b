"""Personas of the portal tests: alice and bob (customers) and an agent (staff)."""

from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import Permission
from django.test import TestCase
from django.utils import timezone

from sync.tests.factories import (
    ChargerFactory,
    StaffFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)


class PortalTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        now = timezone.now()
        cls.alice = UserFactory(username="alice@example.com", first_name="Alice")
        cls.bob = UserFactory(username="bob@example.com", first_name="Bob")
        cls.agent = StaffFactory(username="agent")
        cls.agent.user_permissions.add(
            Permission.objects.get(codename="act_as_customer")
        )
        UserMappingFactory(user=cls.alice, steve_ocpp_id_tag="TAG-ALICE")
        UserMappingFactory(user=cls.bob, steve_ocpp_id_tag="TAG-BOB")
        cls.charger = ChargerFactory(
            charge_box_id="CB-1", friendly_name="Harbour Street", last_check_in_at=now
        )
        cls.alice_session = session_with_energy(
            kwh=Decimal("12.5"),
            charger=cls.charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=now - timedelta(hours=3),
            stopped_at=now - timedelta(hours=2),
            is_finalized=True,
        )
        cls.bob_session = session_with_energy(
            kwh=Decimal("7.25"),
            charger=cls.charger,
            ocpp_id_tag="TAG-BOB",
            started_at=now - timedelta(hours=5),
            stopped_at=now - timedelta(hours=4),
            is_finalized=True,
        )
