"""Reserve and cancel through SteVe (the stand-in over real HTTP)."""

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from portal.models import Reservation
from portal.selectors import charger_list
from portal.services import PortalError, reservation_cancel, reservation_create
from portal.tests.base import PortalTestCase
from portal.tests.factories import ReservationFactory
from sync.client import SteveClient
from sync.models import UserMapping
from sync.standin.testing import StandinProcess
from sync.tests.factories import (
    ChargerFactory,
    TransactionSyncStateFactory,
    UserMappingFactory,
)


def _free_connector(state: dict[str, Any]) -> tuple[str, int]:
    for box in state["chargeBoxes"]:
        if not box["online"]:
            continue
        for connector in box["connectors"]:
            if connector.get("transactionPk") is None:
                return box["chargeBoxId"], connector["connectorId"]
    raise AssertionError("the stand-in fleet has no free connector")


class ReservationTests(PortalTestCase):
    standin: StandinProcess

    @pytest.fixture(autouse=True)
    def _standin(self, standin: StandinProcess) -> None:
        self.standin = standin

    def setUp(self) -> None:
        self.client_steve = self.standin.client(timeout=5, retry_delays=(0.05,))
        self.addCleanup(self.client_steve.close)
        # The stand-in's fleet knows TAG-0001; alice uses it for these tests.
        UserMappingFactory(user=self.alice, steve_ocpp_id_tag="TAG-0001")
        box, connector = _free_connector(self.standin.state())
        self.free = ChargerFactory(
            charge_box_id=box, connector_id=connector, last_check_in_at=timezone.now()
        )

    def _reserve(self) -> Reservation:
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-ALICE").update(
            is_active=False
        )
        return reservation_create(
            customer=self.alice, charger=self.free, minutes=30, client=self.client_steve
        )

    def test_an_accepted_reserve_now_stores_the_reservation(self) -> None:
        reservation = self._reserve()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)
        held = self.standin.state()["reservations"]
        self.assertEqual(len(held), 1, held)

    def test_a_refused_reserve_now_stores_nothing(self) -> None:
        self.standin.set_online(self.free.charge_box_id, False)
        with self.assertRaisesMessage(
            PortalError, "The charger is offline, so it cannot be reserved now."
        ):
            self._reserve()
        self.assertFalse(Reservation.objects.exists())

    def test_a_customer_whose_cards_are_deactivated_is_told_so(self) -> None:
        UserMapping.objects.filter(user=self.alice).update(is_active=False)
        with self.assertRaisesMessage(PortalError, "no active charging card"):
            reservation_create(
                customer=self.alice,
                charger=self.free,
                minutes=30,
                client=self.client_steve,
            )

    def test_a_card_steve_does_not_accept_is_named_as_the_reason(self) -> None:
        # The stand-in's SteVe does not know TAG-ALICE: its ReserveNow is refused
        # before anything reaches the station.
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-0001").update(is_active=False)
        with self.assertRaisesMessage(
            PortalError, "Your charging card cannot be used for a reservation"
        ):
            reservation_create(
                customer=self.alice,
                charger=self.free,
                minutes=30,
                client=self.client_steve,
            )
        self.assertFalse(Reservation.objects.exists())

    def test_reserving_a_charger_held_for_the_customer_gives_back_that_one(
        self,
    ) -> None:
        # A second Reserve (a double click, a page from before) would be refused
        # by the station as Occupied: held for the customer's own reservation.
        first = self._reserve()
        again = self._reserve()
        self.assertEqual(again.pk, first.pk)
        self.assertEqual(Reservation.objects.count(), 1)
        self.assertEqual(len(self.standin.state()["reservations"]), 1)

    def test_a_reserve_sent_alongside_an_accepted_one_is_not_refused(self) -> None:
        # Two Reserve clicks reach the server together: both find the charger
        # free, the station accepts the first and answers the second Occupied.
        test = self

        class SiblingFirstClient(SteveClient):
            def reserve_now(self, **kwargs: Any) -> Any:
                sibling = super().reserve_now(**kwargs)
                test.assertTrue(sibling.accepted(test.free.charge_box_id))
                ReservationFactory(
                    user=test.alice,
                    charger=test.free,
                    id_tag=kwargs["id_tag"],
                    starts_at=timezone.now(),
                    ends_at=kwargs["expiry"],
                )
                return super().reserve_now(**kwargs)

        client = self.reserving_with_tag_0001(SiblingFirstClient)
        reservation = reservation_create(
            customer=self.alice, charger=self.free, minutes=30, client=client
        )
        self.assertEqual(Reservation.objects.get(), reservation)
        self.assertEqual(len(self.standin.state()["reservations"]), 1)

    def reserving_with_tag_0001[Client: SteveClient](
        self, client_class: type[Client]
    ) -> Client:
        """A `client_class` for the stand-in, with Alice left only TAG-0001 to
        reserve with."""
        client = client_class(
            base_url=self.standin.base_url,
            username=self.standin.username,
            password=self.standin.password,
            timeout=5,
        )
        self.addCleanup(client.close)
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-ALICE").update(
            is_active=False
        )
        return client

    def test_it_reserves_with_an_active_tag_that_is_not_charging(self) -> None:
        tags = UserMapping.objects
        # Alice has TAG-0001 and TAG-ALICE; the first in idTag order is charging.
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0001", is_finalized=False)
        self.assertEqual(tags.tag_to_charge_with(self.alice), "TAG-ALICE")
        tags.filter(steve_ocpp_id_tag="TAG-ALICE").update(is_active=False)
        self.assertEqual(tags.tag_to_charge_with(self.alice), "TAG-0001")
        tags.filter(user=self.alice).update(is_active=False)
        self.assertIsNone(tags.tag_to_charge_with(self.alice))

    def test_no_transaction_is_open_while_steve_is_asked(self) -> None:
        # TestCase wraps each test in transactions of its own: count ours.
        outer_depth = len(connection.atomic_blocks)
        depths: list[int] = []

        class ObservedClient(SteveClient):
            def reserve_now(self, **kwargs: Any) -> Any:
                depths.append(len(connection.atomic_blocks))
                return super().reserve_now(**kwargs)

            def cancel_reservation(self, **kwargs: Any) -> Any:
                depths.append(len(connection.atomic_blocks))
                return super().cancel_reservation(**kwargs)

        client = self.reserving_with_tag_0001(ObservedClient)
        reservation = reservation_create(
            customer=self.alice, charger=self.free, minutes=30, client=client
        )
        self.assertEqual(Reservation.objects.get().charger, self.free)
        reservation.steve_reservation_id = self.standin.state()["reservations"][0][
            "reservationId"
        ]
        reservation.save()
        reservation_cancel(reservation=reservation, client=client)
        self.assertEqual(depths, [outer_depth, outer_depth])
        self.assertEqual(reservation.status, Reservation.Status.CANCELLED)

    def test_a_reservation_steve_cannot_cancel_keeps_holding_the_charger(
        self,
    ) -> None:
        # ReserveNow's answer carries no reservation id, so CancelReservation
        # cannot be sent: the station keeps the connector for alice's tag, refuses
        # other tags, and the portal must not show the charger free meanwhile.
        reservation = self._reserve()
        self.assertIsNone(reservation.steve_reservation_id)
        with self.assertRaises(PortalError):
            reservation_cancel(reservation=reservation, client=self.client_steve)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)
        (held,) = self.standin.state()["reservations"]
        self.assertEqual(held["status"], "ACCEPTED")
        start = self.client_steve.remote_start(
            charge_box_id=self.free.charge_box_id,
            connector_id=self.free.connector_id,
            id_tag="TAG-0003",
        )
        self.assertEqual(start.status_of(self.free.charge_box_id), "Rejected")
        chargers = charger_list(customer=self.bob, now=timezone.now()).rows
        (seen_by_bob,) = [c for c in chargers if c.pk == self.free.pk]
        self.assertEqual(seen_by_bob.status, "reserved")  # type: ignore[attr-defined]

    def test_cancel_sends_cancel_reservation_when_the_id_is_known(self) -> None:
        reservation = self._reserve()
        held = self.standin.state()["reservations"][0]
        reservation.steve_reservation_id = held["reservationId"]
        reservation.save()
        reservation_cancel(reservation=reservation, client=self.client_steve)
        status = self.standin.state()["reservations"][0]["status"]
        self.assertEqual(status, "CANCELLED")
        self.assertEqual(reservation.status, Reservation.Status.CANCELLED)

    def test_a_cancel_an_offline_station_cannot_take_keeps_the_reservation(
        self,
    ) -> None:
        # SteVe refuses an operation for a station that is not connected; the
        # station still holds the connector, so the portal must not show it free.
        reservation = self._reserve()
        reservation.steve_reservation_id = self.standin.state()["reservations"][0][
            "reservationId"
        ]
        reservation.save()
        self.standin.set_online(self.free.charge_box_id, False)
        self.addCleanup(self.standin.set_online, self.free.charge_box_id, True)
        with self.assertRaisesMessage(
            PortalError, "The charger is offline, so the reservation cannot be"
        ):
            reservation_cancel(reservation=reservation, client=self.client_steve)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)
        (held,) = self.standin.state()["reservations"]
        self.assertEqual(held["status"], "ACCEPTED")

    def test_a_reservation_the_station_no_longer_holds_is_marked_cancelled(
        self,
    ) -> None:
        reservation = self._reserve()
        steve_id = self.standin.state()["reservations"][0]["reservationId"]
        self.client_steve.cancel_reservation(
            charge_box_id=self.free.charge_box_id, reservation_id=steve_id
        )
        reservation.steve_reservation_id = steve_id
        reservation.save()
        reservation_cancel(reservation=reservation, client=self.client_steve)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.CANCELLED)

    def test_cancelling_twice_says_it_is_already_cancelled(self) -> None:
        reservation = self._reserve()
        reservation.steve_reservation_id = self.standin.state()["reservations"][0][
            "reservationId"
        ]
        reservation.save()
        reservation_cancel(reservation=reservation, client=self.client_steve)
        with self.assertRaisesMessage(
            PortalError, "This reservation is already cancelled."
        ):
            reservation_cancel(reservation=reservation, client=self.client_steve)

    def test_the_view_reserves_and_shows_it(self) -> None:
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-ALICE").update(
            is_active=False
        )
        self.client.force_login(self.alice)
        with override_settings(
            **self.standin.polaris_settings(),
        ):
            response = self.client.post(
                reverse("portal:charger-reserve"),
                {"charger": self.free.pk, "minutes": 15},
                follow=True,
            )
        self.assertContains(response, "is reserved for you")
        self.assertContains(response, "cannot cancel this reservation early")

    def test_acting_agents_cannot_reserve(self) -> None:
        self.client.force_login(self.agent)
        self.client.post(reverse("portal:act-as-start", args=[self.alice.pk]))
        response = self.client.post(
            reverse("portal:charger-reserve"), {"charger": self.free.pk, "minutes": 15}
        )
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Reservation.objects.exists())
