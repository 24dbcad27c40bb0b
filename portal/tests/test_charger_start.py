"""Start charging from the portal's charger cards, against the stand-in."""

from datetime import UTC, datetime, timedelta

import time_machine
from django.contrib.messages import constants
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone

from portal.models import Reservation
from sessions_app.models import ApiSession
from sessions_app.tests.test_charging import REMOTE_START, ChargingTestCase
from sync.models import Charger, TransactionSyncState, UserMapping
from sync.tests.factories import TransactionSyncStateFactory


class PortalChargingTestCase(ChargingTestCase):
    """Alice starts charging on CP-001 from her dashboard's charger card."""

    def start(self) -> HttpResponse:
        charger = Charger.objects.get(charge_box_id="CP-001", connector_id=1)
        self.client.force_login(self.alice)
        url = reverse("portal:charger-start")
        return self.client.post(url, {"charger": charger.pk}, follow=True)

    def only_message(self, response: HttpResponse) -> tuple[int, str]:
        sent = list(response.context["messages"])
        self.assertEqual(len(sent), 1, sent)
        return sent[0].level, sent[0].message


class ChargerStartTests(PortalChargingTestCase):
    def test_an_accepted_start_is_told_by_the_banner_alone(self) -> None:
        response = self.start()
        # Its start notice says it, and follows it: a message above it would
        # repeat it. The notice takes the focus instead, to be read out.
        self.assertEqual(
            self.only_message(response),
            (constants.INFO, "Starting to charge at CP-001 #1."),
        )
        self.assertNotContains(response, "Starting to charge at CP-001 #1.</div>")
        session = ApiSession.objects.get()
        self.assertContains(
            response,
            '<div class="banner banner--info start-notice" data-focus-successor='
            f'"stop-session-{session.pk}" data-focus-on-load',
        )
        self.assertContains(
            response, '<span class="banner__title">Starting to charge at CP-001 #1…'
        )
        # Only right after the Start: a reload does not move the focus.
        self.assertNotContains(self.client.get("/"), "data-focus-on-load")

    def test_a_start_where_the_customer_scheduled_a_charge_says_when(self) -> None:
        with time_machine.travel(datetime(2026, 12, 7, 10, 0, tzinfo=UTC)):
            # Scheduled with the Sessions API, for an hour from now.
            ApiSession.objects.create(
                user=self.alice,
                charge_box_id="CP-001",
                connector_id=1,
                id_tag="TAG-0001",
                target_start_at=timezone.now() + timedelta(hours=1),
            )
            level, text = self.only_message(self.start())
        self.assertEqual(level, constants.INFO)
        self.assertEqual(
            text, "Your charge at CP-001 #1 is already scheduled to start at 11:00."
        )

    def test_a_start_sent_twice_says_the_first_is_under_way(self) -> None:
        # A double click: the second Start is refused as the connector's second
        # session, which is the customer's own first one.
        self.start()
        response = self.start()
        self.assertEqual(
            self.only_message(response),
            (
                constants.INFO,
                "Your charge at CP-001 #1 is already starting or under way.",
            ),
        )
        self.assertEqual(ApiSession.objects.count(), 1)
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        # Until the next live update, which says how that charge goes (a start
        # refused in another tab included).
        self.assertContains(response, 'data-until="active-session"')

    def test_a_start_where_someone_else_charges_is_still_refused(self) -> None:
        self.start()
        ApiSession.objects.update(user=self.bob)
        self.assertEqual(
            self.only_message(self.start()),
            (
                constants.ERROR,
                "Someone else is starting to charge at CP-001 #1 right now.",
            ),
        )

    def test_a_refused_start_names_what_polaris_saw_holding_the_charger(
        self,
    ) -> None:
        # CP-003's station refuses every RemoteStart, giving no reason (OCPP's
        # Rejected); the card was shown before bob's charge or reservation.
        charger = Charger.objects.get(charge_box_id="CP-003", connector_id=1)
        self.client.force_login(self.alice)

        def refusal() -> str:
            response = self.client.post(
                reverse("portal:charger-start"), {"charger": charger.pk}, follow=True
            )
            level, text = self.only_message(response)
            self.assertEqual(level, constants.ERROR)
            return text

        self.assertTrue(refusal().startswith("The charge station refused"))
        now = timezone.now()
        Reservation.objects.create(
            user=self.bob,
            charger=charger,
            id_tag="TAG-0003",
            starts_at=now,
            ends_at=now + timedelta(minutes=30),
        )
        self.assertTrue(
            refusal().startswith("CP-003 #1 is reserved by someone else until ")
        )
        # A charge of her own card (started at the station) is not someone else's.
        own = TransactionSyncStateFactory(
            charge_box_id="CP-003", connector_id=1, ocpp_id_tag="TAG-0001"
        )
        self.assertTrue(
            refusal().startswith("CP-003 #1 is reserved by someone else until ")
        )
        own.delete()
        TransactionSyncStateFactory(
            charge_box_id="CP-003", connector_id=1, ocpp_id_tag="TAG-0003"
        )
        # What Polaris saw is the whole answer: the refusal's own words would
        # only guess at it ("may be in use, reserved or not ready").
        self.assertEqual(refusal(), "Someone else is charging at CP-003 #1 right now.")

    def test_a_start_where_someone_elses_session_holds_the_charger_says_so(
        self,
    ) -> None:
        # Bob's Start went out a moment ago (his car not charging yet), or he
        # scheduled one: the API's conflict speaks to integrators ("stop it"),
        # which a driver cannot do to a stranger's session.
        now = timezone.now()
        bobs = ApiSession.objects.create(
            user=self.bob,
            charge_box_id="CP-001",
            connector_id=1,
            id_tag="TAG-0003",
            remote_start_sent_at=now,
        )
        response = self.start()
        self.assertEqual(
            self.only_message(response),
            (
                constants.ERROR,
                "Someone else is starting to charge at CP-001 #1 right now.",
            ),
        )
        ApiSession.objects.filter(pk=bobs.pk).update(
            remote_start_sent_at=None,
            target_start_at=datetime(2026, 12, 7, 10, 30, tzinfo=UTC),
        )
        with time_machine.travel(datetime(2026, 12, 7, 10, 0, tzinfo=UTC)):
            response = self.start()
        self.assertEqual(
            self.only_message(response),
            (
                constants.ERROR,
                "CP-001 #1 is held for someone else's charge starting at 10:30.",
            ),
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_start_whose_answer_was_lost_says_what_its_session_says(self) -> None:
        self.standin.set_fault("malformed", path_contains="RemoteStartTransaction")
        response = self.start()
        session = ApiSession.objects.get()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIn("answer was lost", session.status_message)
        self.assertEqual(
            self.only_message(response), (constants.WARNING, session.status_message)
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

    def test_a_start_the_station_did_not_answer_in_time_says_so(self) -> None:
        self.standin.set_fault(
            "timeout_operation", delay=0.1, path_contains="RemoteStartTransaction"
        )
        response = self.start()
        level, text = self.only_message(response)
        self.assertEqual(level, constants.WARNING)
        self.assertEqual(text, ApiSession.objects.get().status_message)
        self.assertIn("did not answer in time", text)

    def test_the_answer_comes_back_to_the_period_the_dashboard_showed(self) -> None:
        # The page's address (the period chips push it) is the form's Referer.
        charger = Charger.objects.get(charge_box_id="CP-001", connector_id=1)
        self.client.force_login(self.alice)
        start = reverse("portal:charger-start")
        for referer, back in (
            ("https://testserver/?period=year", "/?period=year"),
            ("/?period=previous", "/?period=previous"),
            ("https://testserver/?period=current", "/"),
            ("https://testserver/?period=x", "/"),
            ("https://elsewhere.example/?period=year", "/"),
            ("https://testserver/tokens/?period=year", "/"),
            ("", "/"),
        ):
            with self.subTest(referer=referer):
                self.standin.set_fault("error", status=503, path_contains="operations")
                response = self.client.post(
                    start, {"charger": charger.pk}, headers={"Referer": referer}
                )
                self.assertRedirects(response, back, fetch_redirect_response=False)

    def test_a_refused_start_is_an_error_and_stores_nothing(self) -> None:
        self.standin.set_fault("error", status=503, path_contains="operations")
        level, text = self.only_message(self.start())
        self.assertEqual(level, constants.ERROR)
        self.assertIn("could not be sent", text)
        self.assertFalse(ApiSession.objects.exists())


class SessionStopTests(PortalChargingTestCase):
    def stop(self) -> HttpResponse:
        self.start()
        session = ApiSession.objects.get()
        self.standin.tick()
        self.sync()
        self.advance(session)
        url = reverse("portal:session-stop", args=[session.pk])
        return self.client.post(url, follow=True)

    def test_an_accepted_stop_says_the_session_ends(self) -> None:
        self.assertEqual(
            self.only_message(self.stop()),
            (constants.SUCCESS, "Stop requested; the session ends in a moment."),
        )

    def test_a_stop_of_a_charge_an_earlier_stop_ended_says_so(self) -> None:
        self.stop()
        session = ApiSession.objects.get()
        self.standin.tick()
        self.sync()
        self.advance(session)
        session.refresh_from_db()
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        # Stop again, from a page opened before the charge ended.
        url = reverse("portal:session-stop", args=[session.pk])
        self.assertEqual(
            self.only_message(self.client.post(url, follow=True)),
            (
                constants.INFO,
                "This charge has already ended: it is in Recent activity.",
            ),
        )

    def test_a_stop_whose_answer_was_lost_says_what_its_session_says(self) -> None:
        self.standin.set_fault("cut", path_contains="RemoteStopTransaction")
        level, text = self.only_message(self.stop())
        self.assertEqual(level, constants.WARNING)
        self.assertEqual(text, ApiSession.objects.get().status_message)
        self.assertIn(
            "The stop was sent but the charging network's answer was lost", text
        )


class ReservedChargerStartTests(ChargingTestCase):
    """A driver with two cards, one of them charging elsewhere, reserves a charger
    and starts charging on it: the station lets only the reserved tag charge there,
    and SteVe lets a tag run one transaction at a time."""

    def setUp(self) -> None:
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=self.alice)
        busy = Charger.objects.get(charge_box_id="CP-003", connector_id=1)
        TransactionSyncStateFactory(
            charger=busy, ocpp_id_tag="TAG-0001", started_at=timezone.now()
        )
        self.charger = Charger.objects.get(charge_box_id="CP-001", connector_id=1)
        self.charger.last_check_in_at = timezone.now()
        self.charger.save()
        self.client.force_login(self.alice)

    def post(self, name: str, **data: object) -> HttpResponse:
        url = reverse(f"portal:charger-{name}")
        return self.client.post(url, {"charger": self.charger.pk, **data}, follow=True)

    def test_a_reservation_takes_a_card_that_is_not_charging(self) -> None:
        self.post("reserve", minutes=30)
        self.assertEqual(Reservation.objects.get().id_tag, "TAG-0002")

    def test_it_starts_the_reserved_charger_with_the_reserved_card(self) -> None:
        # Reserved with the second card (the first was blocked for a while) ...
        first = UserMapping.objects.filter(steve_ocpp_id_tag="TAG-0001")
        first.update(is_active=False)
        self.post("reserve", minutes=30)
        reservation = Reservation.objects.get(id_tag="TAG-0002")
        # ... and since then the first is back and done charging: both are free.
        first.update(is_active=True)
        TransactionSyncState.objects.update(is_finalized=True)
        response = self.post("start")
        self.assertNotContains(response, "Starting to charge at CP-001 #1.</div>")
        self.assertContains(response, "Starting to charge at CP-001 #1…")
        self.assertEqual(ApiSession.objects.get().id_tag, reservation.id_tag)

    def test_it_finds_the_reservation_of_a_card_respelled_since(self) -> None:
        first = UserMapping.objects.filter(steve_ocpp_id_tag="TAG-0001")
        first.update(is_active=False)
        self.post("reserve", minutes=30)
        first.update(is_active=True)
        TransactionSyncState.objects.update(is_finalized=True)
        # The sync respelled the reserving card's mapping as SteVe spells it; the
        # station holds the reservation for the card as it was sent.
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-0002").update(
            steve_ocpp_id_tag="tag-0002"
        )
        response = self.post("start")
        self.assertContains(response, "Starting to charge at CP-001 #1…")
        self.assertEqual(ApiSession.objects.get().id_tag, "TAG-0002")
