"""Reserve and cancel through SteVe (the stand-in over real HTTP)."""

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.db import OperationalError, connection, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django_eventstream.eventstream import get_storage

from polaris.live import customer_channel
from portal.models import CustomerProfile, Reservation
from portal.selectors import charger_list
from portal.services import PortalError, reservation_cancel, reservation_create
from portal.tests.base import PortalTestCase
from portal.tests.factories import ReservationFactory
from sessions_app.charging.tags import CARD_CHOICE_LOCK
from sessions_app.models import ApiSession
from sessions_app.tests.base import card_choice_taken_elsewhere
from sync.client import SteveClient
from sync.models import UserMapping
from sync.standin.testing import StandinProcess
from sync.tests.factories import (
    ChargerFactory,
    StaffFactory,
    TransactionSyncStateFactory,
    UserMappingFactory,
)

RESERVE_NOW = "/steve/api/v1/operations/ReserveNow"


def _free_connectors(state: dict[str, Any]) -> list[tuple[str, int]]:
    free = [
        (box["chargeBoxId"], connector["connectorId"])
        for box in state["chargeBoxes"]
        if box["online"]
        for connector in box["connectors"]
        if connector.get("transactionPk") is None
    ]
    if not free:
        raise AssertionError("the stand-in fleet has no free connector")
    return free


class StandinReservationTestCase(PortalTestCase):
    standin: StandinProcess

    @pytest.fixture(autouse=True)
    def _standin(self, standin: StandinProcess) -> None:
        self.standin = standin

    def setUp(self) -> None:
        self.client_steve = self.standin.client(timeout=5, retry_delays=(0.05,))
        self.addCleanup(self.client_steve.close)
        # The stand-in's fleet knows TAG-0001; alice uses it for these tests.
        UserMappingFactory(user=self.alice, steve_ocpp_id_tag="TAG-0001")
        self.free_connectors = [
            ChargerFactory(
                charge_box_id=box,
                connector_id=connector,
                friendly_name=f"{box} street",
                last_check_in_at=timezone.now(),
            )
            for box, connector in _free_connectors(self.standin.state())
        ]
        self.free = self.free_connectors[0]

    def cancellable(self, reservation: Reservation) -> None:
        """Give `reservation` the id of the stand-in's first one, as staff copy it
        from SteVe's web interface."""
        held = self.standin.state()["reservations"][0]
        reservation.steve_reservation_id = held["reservationId"]
        reservation.save()

    def reserve_now_sent(self) -> int:
        """How many ReserveNow requests reached the stand-in's SteVe."""
        return int(self.standin.state()["requests"].get(RESERVE_NOW, 0))


class ReservationTests(StandinReservationTestCase):
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

    # A prefix of its own keeps parallel runs' events on other channels.
    @override_settings(LIVE_CHANNEL_PREFIX=f"test-{uuid.uuid4().hex[:12]}-")
    def test_reserving_and_cancelling_reach_the_customers_other_pages(self) -> None:
        channel = customer_channel(self.alice.pk)

        def banners_since(last_id: int) -> int:
            events = get_storage().get_events(channel, last_id)
            return sum(event.type == "active-session" for event in events)

        before = get_storage().get_current_id(channel)
        with self.captureOnCommitCallbacks(execute=True):
            reservation = self._reserve()
        self.assertEqual(banners_since(before), 1)
        held = self.standin.state()["reservations"][0]
        reservation.steve_reservation_id = held["reservationId"]
        with self.captureOnCommitCallbacks(execute=True):
            reservation_cancel(reservation=reservation, client=self.client_steve)
        self.assertEqual(banners_since(before), 2)

    def test_a_steve_failure_says_the_reservation_was_not_sent(self) -> None:
        self.standin.set_fault("error", status=503, path_contains="ReserveNow")
        with self.assertRaisesMessage(
            PortalError,
            "The reservation could not be sent: the charging network is not "
            "answering right now. Try again in a few minutes",
        ):
            self._reserve()
        self.assertFalse(Reservation.objects.exists())

    def test_a_reservation_whose_answer_was_lost_is_kept_unconfirmed(self) -> None:
        # SteVe relayed it and the station took it, but SteVe's answer was cut
        # off: the card holds the charger there, and Polaris says it may.
        self.standin.set_fault("cut", path_contains="ReserveNow")
        reservation = self._reserve()
        self.assertEqual(
            (reservation.status, reservation.confirmed),
            (Reservation.Status.ACTIVE, False),
        )
        (held,) = self.standin.state()["reservations"]
        self.assertEqual(held["idTag"], "TAG-0001")
        # Sent again (the driver retries), it is that reservation, not a refusal
        # naming someone else, and nothing more is sent.
        sent = self.reserve_now_sent()
        self.assertEqual(self._reserve(), reservation)
        self.assertEqual(self.reserve_now_sent(), sent)
        # The card holds it: it reserves no other charger meanwhile.
        other = ChargerFactory(
            friendly_name="Other street", last_check_in_at=timezone.now()
        )
        with self.assertRaisesMessage(PortalError, "already holds the reservation"):
            reservation_create(
                customer=self.alice, charger=other, minutes=30, client=self.client_steve
            )

    def test_the_portal_says_an_unconfirmed_reservation_may_not_hold(self) -> None:
        self.standin.set_fault(
            "timeout_operation", delay=0.1, path_contains="ReserveNow"
        )
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-ALICE").update(
            is_active=False
        )
        self.client.force_login(self.alice)
        with override_settings(**self.standin.polaris_settings()):
            response = self.client.post(
                reverse("portal:charger-reserve"),
                {"charger": self.free.pk, "minutes": 30},
                follow=True,
            )
        (message,) = response.context["messages"]
        self.assertEqual(message.level_tag, "warning")
        self.assertTrue(
            message.message.startswith(
                "The charging network did not confirm your reservation of "
                f"{self.free}. It is shown as yours until "
            ),
            message.message,
        )
        self.assertContains(
            response,
            "The charging network did not confirm this reservation, so the station "
            "may not be holding the charger for you.",
        )
        self.assertNotContains(response, "cannot cancel this reservation early")

    def test_steve_refusing_our_credentials_says_trying_again_will_not_help(
        self,
    ) -> None:
        self.standin.set_fault("unauthorized", path_contains="ReserveNow")
        with self.assertRaisesMessage(
            PortalError,
            "The reservation could not be sent: Polaris's connection to the "
            "charging network needs fixing by its operators. Please contact "
            "support; trying again will not help until it is fixed.",
        ):
            self._reserve()
        self.assertFalse(Reservation.objects.exists())

    def test_a_refused_reserve_now_stores_nothing(self) -> None:
        self.standin.set_online(self.free.charge_box_id, False)
        with self.assertRaisesMessage(
            PortalError, "The charger is offline, so it cannot be reserved now."
        ):
            self._reserve()
        self.assertFalse(Reservation.objects.exists())

    def test_a_charger_held_for_someone_elses_scheduled_charge_is_not_reserved(
        self,
    ) -> None:
        # The station knows nothing of a session scheduled in Polaris: it would
        # take the reservation, and the session could not start at its time.
        bob = UserMappingFactory(steve_ocpp_id_tag="TAG-0002").user
        starts_at = timezone.now() + timedelta(minutes=20)
        ApiSession.objects.create(
            user=bob,
            charge_box_id=self.free.charge_box_id,
            connector_id=self.free.connector_id,
            id_tag="TAG-0002",
            target_start_at=starts_at,
        )
        starts = date_format(timezone.localtime(starts_at), "H:i")
        if timezone.localdate(starts_at) != timezone.localdate():
            starts = date_format(timezone.localtime(starts_at), "M j, H:i")
        with self.assertRaisesMessage(
            PortalError,
            f"{self.free} is held for someone else's charge starting at {starts}.",
        ):
            self._reserve()
        self.assertFalse(Reservation.objects.exists())
        self.assertEqual(self.reserve_now_sent(), 0)

    def test_a_charger_the_customer_charges_at_is_not_someone_elses(self) -> None:
        # Reserve from a page shown before their own charge began there: the
        # station answers Occupied, which is their own charge.
        self.standin.add_transaction(
            self.free.charge_box_id, self.free.connector_id, "TAG-0001"
        )
        TransactionSyncStateFactory(
            charger=self.free,
            charge_box_id=self.free.charge_box_id,
            connector_id=self.free.connector_id,
            ocpp_id_tag="TAG-0001",
        )
        with self.assertRaisesMessage(
            PortalError,
            f"You are charging at {self.free} already, so it cannot be reserved.",
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
        # Nor is it refused for Alice's only card holding a reservation: this one.
        first = self._reserve()
        again = self._reserve()
        self.assertEqual(again.pk, first.pk)
        self.assertEqual(Reservation.objects.count(), 1)
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
        # Alice has TAG-0001 and TAG-0002 (TAG-ALICE, which SteVe does not know,
        # is switched off); the first in idTag order is charging.
        UserMappingFactory(user=self.alice, steve_ocpp_id_tag="TAG-0002")
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0001", is_finalized=False)
        self.assertEqual(self._reserve().id_tag, "TAG-0002")

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
        self.cancellable(reservation)
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
        self.cancellable(reservation)
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

    def test_a_cancel_whose_answer_was_lost_keeps_it_until_cancel_again(
        self,
    ) -> None:
        reservation = self._reserve()
        self.cancellable(reservation)
        self.standin.set_fault("cut", path_contains="CancelReservation")
        with self.assertRaisesMessage(
            PortalError,
            "The charging network did not confirm the cancellation, so the "
            "reservation is kept for now. Press Cancel again in a moment.",
        ):
            reservation_cancel(reservation=reservation, client=self.client_steve)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)
        # The station did cancel it: Cancel again hears it is not held.
        reservation_cancel(reservation=reservation, client=self.client_steve)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.CANCELLED)

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
        self.cancellable(reservation)
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
        reservation = Reservation.objects.get()
        ends = timezone.localtime(reservation.ends_at)
        # The time today; after midnight, the date too.
        until = date_format(
            ends, "H:i" if ends.date() == timezone.localdate() else "M j, H:i"
        )
        self.assertContains(
            response,
            f"{self.free.friendly_name} #{self.free.connector_id} is reserved for "
            f"you until {until}.",
        )
        self.assertContains(response, "cannot cancel this reservation early")

    def test_acting_agents_cannot_reserve(self) -> None:
        self.client.force_login(self.agent)
        self.client.post(reverse("portal:act-as-start", args=[self.alice.pk]))
        response = self.client.post(
            reverse("portal:charger-reserve"), {"charger": self.free.pk, "minutes": 15}
        )
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Reservation.objects.exists())


class OneReservationACardTests(StandinReservationTestCase):
    """A card holds one reservation at a time: a reservation cannot be cancelled
    early and can be renewed hourly, so without it one customer could hold every
    free connector."""

    def setUp(self) -> None:
        # Without scenarios, and with CP-004 (two connectors) online, the fleet
        # has four idle connectors to reserve.
        self.standin.reset(scenarios=False)
        self.standin.set_online("CP-004", True)
        super().setUp()
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-ALICE").update(
            is_active=False
        )
        # Times in the sentence are Alice's, not the operator's.
        CustomerProfile.objects.create(user=self.alice, time_zone="Asia/Kolkata")
        self.assertGreaterEqual(len(self.free_connectors), 3)

    def reserve(self, charger_index: int) -> Reservation:
        return reservation_create(
            customer=self.alice,
            charger=self.free_connectors[charger_index],
            minutes=30,
            client=self.client_steve,
        )

    def until(self, reservation: Reservation) -> str:
        """The reservation's end as Alice reads it: its time, with its date when it
        ends on another day than today (a test run close to her midnight)."""
        ends = reservation.ends_at.astimezone(ZoneInfo("Asia/Kolkata"))
        if ends.date() == timezone.now().astimezone(ends.tzinfo).date():
            return f"{ends:%H:%M}"
        return f"{ends:%b} {ends.day}, {ends:%H:%M}"

    def card_choice_is_free(self) -> bool:
        """Whether another connection could choose one of Alice's cards now."""
        with psycopg.connect(**connection.get_connection_params()) as other:
            row = other.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)",
                [CARD_CHOICE_LOCK, self.alice.pk],
            ).fetchone()
        return bool(row and row[0])

    def test_a_card_holding_a_reservation_reserves_no_other_charger(self) -> None:
        first = self.reserve(0)
        charger = first.charger
        with self.assertRaises(PortalError) as refused:
            self.reserve(1)
        self.assertEqual(
            refused.exception.message,
            f"Your card TAG-0001 already holds the reservation at "
            f"{charger.friendly_name} #{charger.connector_id} until "
            f"{self.until(first)}; one reservation a card at a time. You can "
            "reserve another charger once it ends, or once you start charging "
            "there.",
        )
        self.assertEqual(Reservation.objects.get(), first)
        self.assertEqual(self.reserve_now_sent(), 1)
        self.assertEqual(len(self.standin.state()["reservations"]), 1)
        self.assertTrue(self.card_choice_is_free())

    def test_a_customer_with_several_cards_holds_one_reservation_a_card(
        self,
    ) -> None:
        UserMappingFactory(user=self.alice, steve_ocpp_id_tag="TAG-0002")
        first, second = self.reserve(0), self.reserve(1)
        self.assertEqual([first.id_tag, second.id_tag], ["TAG-0001", "TAG-0002"])
        with self.assertRaises(PortalError) as refused:
            self.reserve(2)
        held = "; ".join(
            f"{r.id_tag} at {r.charger.friendly_name} #{r.charger.connector_id} "
            f"until {self.until(r)}"
            for r in (first, second)
        )
        self.assertEqual(
            refused.exception.message,
            f"Each of your cards already holds a reservation ({held}); one "
            "reservation a card at a time. You can reserve another charger once "
            "one of them ends, or once you start charging at one of them.",
        )
        self.assertEqual(Reservation.objects.count(), 2)
        self.assertEqual(self.reserve_now_sent(), 2)
        # Each card's own charger is still given back, not refused.
        self.assertEqual(self.reserve(1), second)

    def test_a_card_is_free_again_once_its_reservation_ended_or_was_used(
        self,
    ) -> None:
        now = timezone.now()
        ReservationFactory(
            user=self.alice,
            charger=self.charger,
            id_tag="TAG-0001",
            starts_at=now - timedelta(hours=1),
            ends_at=now - timedelta(minutes=1),
        )
        ReservationFactory(
            user=self.alice,
            charger=self.charger,
            id_tag="TAG-0001",
            starts_at=now - timedelta(minutes=10),
            ends_at=now + timedelta(minutes=20),
            status=Reservation.Status.USED,
        )
        self.assertEqual(self.reserve(0).id_tag, "TAG-0001")

    def test_the_card_counts_whoever_reserved_with_it_in_any_letter_case(
        self,
    ) -> None:
        # The card was Bob's until staff moved it to Alice, and the sync has
        # since respelled its mapping: the station still holds Bob's reservation
        # for it.
        bobs = ReservationFactory(
            user=self.bob,
            charger=self.charger,
            id_tag="tag-0001",
            starts_at=timezone.now(),
        )
        with self.assertRaisesMessage(
            PortalError,
            f"Your card tag-0001 already holds the reservation at Harbour Street "
            f"#1 until {self.until(bobs)};",
        ):
            self.reserve(0)
        self.assertEqual(self.reserve_now_sent(), 0)

    def test_a_customers_reserves_choose_their_cards_one_at_a_time(self) -> None:
        # Another Reserve or start of Alice's is choosing a card: this one waits
        # until it is done, then sees what it stored.
        other = card_choice_taken_elsewhere(self, self.alice)
        with self.assertRaises(OperationalError), transaction.atomic():
            self.reserve(0)
        self.assertEqual(self.reserve_now_sent(), 0)
        self.assertFalse(Reservation.objects.exists())
        other.rollback()  # the other one is done: this one chooses now
        self.assertEqual(self.reserve(0).id_tag, "TAG-0001")
        self.assertTrue(self.card_choice_is_free())

    def test_the_portal_says_which_reservation_holds_the_card(self) -> None:
        self.client.force_login(self.alice)
        with override_settings(**self.standin.polaris_settings()):
            for charger in self.free_connectors[:2]:
                response = self.client.post(
                    reverse("portal:charger-reserve"),
                    {"charger": charger.pk, "minutes": 15},
                    follow=True,
                )
        first = Reservation.objects.get()
        self.assertContains(
            response,
            f"Your card TAG-0001 already holds the reservation at "
            f"{first.charger.friendly_name} #{first.charger.connector_id} until "
            f"{self.until(first)}; one reservation a card at a time.",
        )
        self.assertEqual(self.reserve_now_sent(), 1)


class ReservationAdminTests(PortalTestCase):
    def test_staff_give_a_reservation_its_steve_id_and_nothing_else(self) -> None:
        # The id gives the driver a Cancel button; a row added or changed
        # otherwise would hold nothing at the station.
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        ends_at = reservation.ends_at
        self.client.force_login(StaffFactory(is_superuser=True))
        change = reverse("admin:portal_reservation_change", args=[reservation.pk])
        saved = self.client.post(
            change, {"steve_reservation_id": "4711", "ends_at": "2030-01-01"}
        )
        self.assertEqual(saved.status_code, 302)
        reservation.refresh_from_db()
        self.assertEqual(reservation.steve_reservation_id, 4711)
        self.assertEqual(reservation.ends_at, ends_at)
        self.assertTrue(reservation.can_be_cancelled)
        for url in (
            reverse("admin:portal_reservation_add"),
            reverse("admin:portal_reservation_delete", args=[reservation.pk]),
        ):
            with self.subTest(url=url):
                response = self.client.post(url, {"post": "yes"})
                self.assertEqual(response.status_code, 403)

    def test_the_list_says_which_active_reservations_have_ended(self) -> None:
        # Still "active" in the table until its tag charges or it is cancelled.
        now = timezone.now()
        ReservationFactory(user=self.alice, charger=self.charger)
        ReservationFactory(
            user=self.bob,
            charger=self.charger,
            starts_at=now - timedelta(hours=2),
            ends_at=now - timedelta(hours=1),
        )
        self.client.force_login(StaffFactory(is_superuser=True))
        page = self.client.get(reverse("admin:portal_reservation_changelist"))
        self.assertContains(page, '<td class="field-status_now">Active</td>', html=True)
        self.assertContains(
            page, '<td class="field-status_now">Active (ended)</td>', html=True
        )
