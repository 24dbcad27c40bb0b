import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpResponse
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_eventstream.utils import get_storage

from polaris import live
from portal import selectors
from portal.live import banners_html
from portal.models import ChargerGroup, CustomerProfile, Reservation
from portal.selectors import usage
from portal.selectors.chargers import CHARGER_LIST_SQL, charger_list_params
from portal.tests.base import PortalTestCase
from portal.tests.factories import (
    PlanFactory,
    ReservationFactory,
    SubscriptionFactory,
)
from sessions_app.api.selectors.sessions import api_session_document
from sessions_app.models import ApiSession, ChargerRate, Rate
from sessions_app.pricing import RateTerms
from sync import rollups
from sync.models import (
    CHECK_IN_VALID_FOR,
    Charger,
    SyncRun,
    TransactionSyncState,
    UserMapping,
)
from sync.signals import run_finished, sessions_changed
from sync.tests.factories import (
    ChargerFactory,
    SyncRunFactory,
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
    session_with_energy,
)


def default_rate(currency: str = "EUR") -> Rate:
    """The operator's default tariff: 0.40 per kWh."""
    return Rate.objects.create(
        name="Default", currency=currency, energy_price=Decimal("0.40"), is_default=True
    )


def active_banner(response: HttpResponse) -> str:
    """The dashboard's active-session banner, as the page's HTML."""
    body = response.content.decode()
    return body[body.index('id="active-session"') : body.index("Recent activity")]


def started_api_session(
    customer: User, transaction: TransactionSyncState, **fields: Any
) -> ApiSession:
    """`customer`'s portal or API session that started `transaction`, with the
    transaction's card and connector."""
    return ApiSession.objects.create(
        user=customer,
        charge_box_id=transaction.charge_box_id,
        connector_id=transaction.connector_id,
        id_tag=transaction.ocpp_id_tag,
        status=ApiSession.Status.STARTED,
        transaction=transaction,
        **fields,
    )


def banner_html(*, customer: User, now: datetime) -> str:
    """The active-session partial the live update sends `customer`."""
    tags = selectors.customer_tags(customer=customer)
    return banners_html(tags_by_customer={customer.pk: tags}, now=now)[customer.pk]


class DashboardTests(PortalTestCase):
    def test_it_requires_login(self) -> None:
        response = self.client.get("/")
        self.assertRedirects(response, "/accounts/login/?next=/")

    def test_it_shows_recent_activity_of_the_customer_only(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(response, "Recent activity")
        self.assertContains(response, "12.50")
        self.assertContains(response, "Finalized")
        self.assertNotContains(response, "7.25")
        # With its connector, as the banner and the charger cards name it: a
        # site's connectors share one name.
        connector = self.charger.connector_id
        self.assertContains(
            response, f'<span class="table__primary">Harbour Street #{connector}</span>'
        )

    def test_a_deactivated_cards_sessions_and_usage_stay(self) -> None:
        # Deactivating a card stops new charges on it, not its history.
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-ALICE").update(
            is_active=False
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        recent = response.context["recent"]
        self.assertEqual([row.pk for row in recent], [self.alice_session.pk])
        self.assertEqual(response.context["cards"].usage.total_kwh, Decimal("12.5"))
        self.assertFalse(response.context["can_charge"])

    def test_it_marks_unfinalized_sessions_as_being_settled(self) -> None:
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            kwh_delivered=Decimal("3.4"),
            started_at=timezone.now() - timedelta(minutes=20),
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(response, "Still being settled")
        self.assertContains(response, "Charging at Harbour Street")
        self.assertContains(response, "3.40 kWh")

    def test_the_banner_names_the_connector_and_the_day_a_charge_began_before_today(
        self,
    ) -> None:
        started = timezone.localtime() - timedelta(days=1)
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=started,
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        connector = self.charger.connector_id
        self.assertContains(response, f"Charging at Harbour Street #{connector}")
        when = f"{started:%b} {started.day}, {started:%H:%M}"
        self.assertContains(response, f">{when}</time>")
        # Started with the card at the station, not from here: nothing to stop it
        # with but the station, and the banner says so.
        self.assertContains(response, "Started at the station with your card")
        self.assertNotContains(response, 'id="stop-session-')

    def test_a_manual_stop_is_settled_only_once_the_station_can_no_longer_replace_it(
        self,
    ) -> None:
        # SteVe may still replace a manual stop with the station's own (its time
        # and meter): until the grace period ends it is not "complete and billed".
        # The period runs from when the sync recorded the stop (updatedAt).
        now = timezone.now()
        for hours_ago, actor in ((1, "manual"), (72, "manual"), (2, "station")):
            TransactionSyncStateFactory(
                charger=self.charger,
                ocpp_id_tag="TAG-ALICE",
                started_at=now - timedelta(hours=hours_ago, minutes=30),
                stopped_at=now - timedelta(hours=hours_ago),
                updated_at=now - timedelta(hours=hours_ago),
                is_finalized=True,
                stop_event_actor=actor,
            )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        rows = body[body.index('id="recent-activity"') :].split("<tr>")[2:]
        markers = [
            "Finalized" if "Finalized" in row else "Still being settled"
            for row in rows[:4]
        ]
        # Newest first: the manual stop of an hour ago, the station's, the
        # fixture's (stopped by its station), the manual stop of three days ago.
        self.assertEqual(
            markers,
            ["Still being settled", "Finalized", "Finalized", "Finalized"],
        )

    def test_a_station_charging_on_past_a_manual_stop_is_still_charging_here(
        self,
    ) -> None:
        # Stopped by hand in SteVe, which told the station nothing: while its
        # readings keep coming, the banner (with its Stop) and Recent activity
        # say it charges, as the charger card does, and where to stop it (SteVe
        # refuses a remote stop of a charge it closed); silent for an hour, it
        # ended.
        default_rate()
        now = timezone.now()
        session = TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            kwh_delivered=Decimal("2"),
            started_at=now - timedelta(minutes=40),
            charging_past_manual_stop=True,
        )
        api_session = started_api_session(self.alice, session)
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        banner = body[body.index('id="active-session"') : body.index("Recent activity")]
        self.assertIn("Charging at Harbour Street", banner)
        self.assertIn("stop it at the station", banner)
        self.assertNotIn(f'id="stop-session-{api_session.pk}"', banner)
        # The sync's energy stops at the manual stop: no cost estimated from it.
        self.assertNotIn("estimated", banner)
        newest = body[body.index('id="recent-activity"') :].split("<tr>")[2]
        self.assertIn('data-label="End" class="nowrap">Charging</td>', newest)

        session.last_reading_after_stop_at = now - timedelta(hours=2)
        session.save()
        body = self.client.get("/").content.decode()
        self.assertNotIn("Charging at Harbour Street", body)
        newest = body[body.index('id="recent-activity"') :].split("<tr>")[2]
        self.assertNotIn(">Charging</td>", newest)

    def test_it_shows_the_estimated_cost_when_a_rate_applies(self) -> None:
        default_rate()
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            kwh_delivered=Decimal("10"),
            started_at=timezone.now() - timedelta(minutes=20),
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(response, "estimated")
        self.assertContains(response, "4.00 EUR")

    def test_the_chargers_own_rate_beats_the_default(self) -> None:
        default_rate()
        fast = Rate.objects.create(
            name="Fast", currency="EUR", energy_price=Decimal("0.70")
        )
        ChargerRate.objects.create(charger=self.charger, rate=fast)
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            kwh_delivered=Decimal("10"),
            started_at=timezone.now() - timedelta(minutes=20),
        )
        self.client.force_login(self.alice)
        self.assertContains(self.client.get("/"), "7.00 EUR")

    def test_a_session_started_here_says_what_its_session_object_says(self) -> None:
        # The Sessions API gives a session's energy from its latest reading (the
        # station's register, ahead of the sync between two runs) and prices it
        # at the rate it was sold at: the banner says the same, whatever the
        # rate became since.
        rate = default_rate()
        now = timezone.now()
        session = TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            kwh_delivered=Decimal("10"),
            started_at=now - timedelta(minutes=20),
            last_reading_at=now - timedelta(minutes=2),
        )
        register_wh = session.meter_start_wh + 12_500
        api_session = started_api_session(
            self.alice,
            session,
            rate=rate,
            rate_terms=RateTerms.of(rate).as_json(),
            energy_report={
                "timestamp": (now - timedelta(minutes=1)).isoformat(),
                "energy_meter": {"value": register_wh, "unit": "Wh"},
            },
        )
        Rate.objects.filter(pk=rate.pk).update(energy_price=Decimal("0.90"))
        self.client.force_login(self.alice)
        banner = active_banner(self.client.get("/"))
        self.assertIn('<span class="tabular live-kwh">12.50 kWh</span>', banner)
        self.assertIn('estimated <span class="tabular">5.00 EUR</span>', banner)
        document = api_session_document(ApiSession.objects.get(pk=api_session.pk))
        self.assertEqual(document["metrics"]["energyConsumed"], 12_500)
        self.assertEqual(document["cost"]["amount"], 5.0)

        # Without a rate when it was sold, the API gives no cost, and nor does the
        # banner.
        ApiSession.objects.filter(pk=api_session.pk).update(rate=None, rate_terms={})
        banner = active_banner(self.client.get("/"))
        self.assertIn("12.50 kWh", banner)
        self.assertNotIn("estimated", banner)

    def test_it_has_no_banner_without_an_active_session(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertNotContains(response, "Charging at")
        self.assertContains(
            response, f'sse-connect="{reverse("portal:live")}?lastEventId=', html=False
        )

    def test_it_shows_the_next_reservation_not_past_ones(self) -> None:
        now = timezone.now()
        ReservationFactory(
            user=self.alice,
            charger=ChargerFactory(friendly_name="Old Depot"),
            starts_at=now - timedelta(hours=3),
            ends_at=now - timedelta(hours=2),
        )
        ReservationFactory(user=self.alice, charger=self.charger)
        ReservationFactory(user=self.bob, charger=ChargerFactory(friendly_name="Bobs"))
        self.client.force_login(self.alice)
        response = self.client.get("/")
        body = response.content.decode()
        card = body[body.index('id="next-reservation"') :]
        card = card[: card.index("</section>")]
        # Its connector too: a site's connectors share one friendly name.
        self.assertIn(
            f'Harbour Street <span class="muted">#{self.charger.connector_id}', card
        )
        self.assertNotIn("Old Depot", card)
        self.assertNotIn("Bobs", card)

    def test_it_shows_times_in_the_customer_time_zone(self) -> None:
        CustomerProfile.objects.create(user=self.alice, time_zone="Asia/Tokyo")
        self.client.force_login(self.alice)
        response = self.client.get("/")
        tokyo = self.alice_session.started_at.astimezone(ZoneInfo("Asia/Tokyo"))
        self.assertContains(response, tokyo.strftime("%H:%M"))
        self.assertContains(response, "Asia/Tokyo")

    def test_it_shows_first_run_state_without_mappings(self) -> None:
        self.client.force_login(UserFactory(username="new@example.com"))
        response = self.client.get("/")
        self.assertContains(response, "Contact your operator")
        # No blank chart: a sentence says what will fill it.
        self.assertContains(response, "No charging in this period.")
        self.assertNotContains(response, '<svg class="chart"')

    def test_it_lists_chargers_with_status_and_counts(self) -> None:
        now = timezone.now()
        ChargerFactory(
            friendly_name="Quiet Lane", last_check_in_at=now - timedelta(hours=2)
        )
        ChargerFactory(
            friendly_name="Private Depot", is_public=False, last_check_in_at=now
        )
        busy = ChargerFactory(friendly_name="Busy Corner", last_check_in_at=now)
        TransactionSyncStateFactory(charger=busy, ocpp_id_tag="TAG-X")
        held = ChargerFactory(friendly_name="Held Bay", last_check_in_at=now)
        ReservationFactory(
            user=self.bob, charger=held, starts_at=now - timedelta(minutes=5)
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        body = response.content.decode()
        self.assertNotIn("Private Depot", body)
        self.assertContains(response, "1 of 4 available now")
        for name, status in (
            ("Harbour Street", "online"),
            ("Quiet Lane", "offline"),
            ("Busy Corner", "in_use"),
            ("Held Bay", "reserved"),
        ):
            card = body[body.index(f">{name}</h3>") :][:400]
            self.assertIn(f"badge--{status}", card, name)

    def listed_chargers(self, names: list[str]) -> list[str]:
        """The chargers named `names`, made now, as Alice's dashboard lists them."""
        for name in names:
            ChargerFactory(friendly_name=name)
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        return [
            name
            for name in re.findall(r'class="card__title"[^>]*>([^<]+)</h3>', body)
            if name in names
        ]

    def test_chargers_are_listed_by_name_reading_its_numbers_as_numbers(self) -> None:
        shown = self.listed_chargers(
            ["Bay 12", "Bay 4", "Bay 100", "Bay 04", "Bay 9 level 10"]
        )
        # "Bay 4" and "Bay 04" have one key; their chargeBoxIds order them.
        self.assertEqual(shown[2:], ["Bay 9 level 10", "Bay 12", "Bay 100"])
        self.assertEqual(sorted(shown[:2]), ["Bay 04", "Bay 4"])

    def test_chargers_are_listed_by_name_whatever_its_case_and_accents(self) -> None:
        # Й is a letter of its own, after И; the case of every script folds.
        names = ["Zeta Quay", "Йа Lot", "ampere Lot", "БАЙ Hall", "Écluse"]
        shown = self.listed_chargers([*names, "Иб Hall", "Ampère Hall", "бай Depot"])
        self.assertEqual(
            shown,
            [
                *("Ampère Hall", "ampere Lot", "Écluse", "Zeta Quay"),
                *("бай Depot", "БАЙ Hall", "Иб Hall", "Йа Lot"),
            ],
        )

    def test_an_offline_charger_says_whether_a_check_in_was_ever_recorded(self) -> None:
        ChargerFactory(
            friendly_name="Quiet Lane",
            last_check_in_at=timezone.now() - timedelta(hours=2),
        )
        ChargerFactory(friendly_name="New Site", last_check_in_at=None)
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        for name, note in (
            ("Quiet Lane", "Not checked in for over an hour."),
            ("New Site", "No check-in recorded yet."),
        ):
            card = body[body.index(f">{name}</h3>") :]
            card = card[: card.index("</article>")]
            self.assertIn(note, card, name)

    def test_a_charger_silent_for_an_hour_is_offline_with_a_session_open(
        self,
    ) -> None:
        # SteVe keeps a session open that a station gone silent never closed: the
        # station is what a driver would find, and it does not answer.
        quiet = ChargerFactory(
            friendly_name="Quiet Lane",
            last_check_in_at=timezone.now() - timedelta(hours=2),
        )
        TransactionSyncStateFactory(charger=quiet, ocpp_id_tag="TAG-X")
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        card = body[body.index(">Quiet Lane</h3>") :][:400]
        self.assertIn("badge--offline", card)

    @override_settings(USE_THOUSAND_SEPARATOR=True)
    def test_charger_ids_and_urls_stay_whole_where_numbers_are_grouped(self) -> None:
        ChargerFactory(
            pk=12345, friendly_name="Long Row", last_check_in_at=timezone.now()
        )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        self.assertIn('id="charger-12345"', body)
        self.assertIn('for="minutes-12345"', body)
        self.assertIn('name="charger" value="12345"', body)
        self.assertNotIn("12,345", body)

    def test_a_reservation_its_charge_used_holds_nothing_afterwards(self) -> None:
        # The station uses a reservation up when its tag starts charging on its
        # connector: once that charge is over, the connector is free for anyone.
        now = timezone.now()
        bay = ChargerFactory(friendly_name="Used Bay", last_check_in_at=now)
        ReservationFactory(
            user=self.alice,
            charger=bay,
            id_tag="TAG-ALICE",
            starts_at=now - timedelta(minutes=20),
            ends_at=now + timedelta(minutes=10),
        )
        TransactionSyncStateFactory(
            charger=bay,
            ocpp_id_tag="TAG-ALICE",
            started_at=now - timedelta(minutes=15),
            stopped_at=now - timedelta(minutes=5),
            is_finalized=True,
        )
        for user in (self.alice, self.bob):
            self.client.force_login(user)
            body = self.client.get("/").content.decode()
            card = body[body.index(">Used Bay</h3>") :][:400]
            self.assertIn("badge--online", card, user)
            self.assertIn("2 of 2 available now", body)
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        self.assertNotIn('id="next-reservation"', body)

    def test_a_charge_linked_to_the_charger_later_uses_the_reservation(self) -> None:
        now = timezone.now()
        bay = ChargerFactory(friendly_name="Linked Bay", last_check_in_at=now)
        reservation = ReservationFactory(
            user=self.alice,
            charger=bay,
            id_tag="TAG-ALICE",
            starts_at=now - timedelta(minutes=20),
            ends_at=now + timedelta(minutes=10),
        )
        session = TransactionSyncStateFactory(
            charger=None,
            charge_box_id=bay.charge_box_id,
            connector_id=bay.connector_id,
            ocpp_id_tag="TAG-ALICE",
            started_at=now - timedelta(minutes=5),
        )
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)
        # A later run links the session to the charger of its connector.
        TransactionSyncState.objects.filter(pk=session.pk).update(charger=bay)
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.USED)
        self.assertIsNone(
            selectors.next_reservation(customer=self.alice, now=timezone.now())
        )

    def test_the_cards_charge_uses_it_whatever_the_station_clock_or_case(
        self,
    ) -> None:
        # The station consumes the reservation when its card starts there: a
        # station clock minutes behind stamps that charge before the reservation,
        # and SteVe may spell the card in another case.
        now = timezone.now()
        for name, tag, started in (
            ("Slow Clock Bay", "TAG-ALICE", now - timedelta(minutes=3)),
            ("Respelled Bay", "tag-alice", now + timedelta(minutes=2)),
        ):
            with self.subTest(name):
                bay = ChargerFactory(friendly_name=name, last_check_in_at=now)
                reservation = ReservationFactory(
                    user=self.alice,
                    charger=bay,
                    id_tag="TAG-ALICE",
                    starts_at=now,
                    ends_at=now + timedelta(minutes=60),
                )
                TransactionSyncStateFactory(
                    charger=bay, ocpp_id_tag=tag, started_at=started
                )
                reservation.refresh_from_db()
                self.assertEqual(reservation.status, Reservation.Status.USED)

    def test_a_charge_stored_before_the_reservation_does_not_use_it(self) -> None:
        # The card's earlier charge there, stamped minutes before the
        # reservation by a slow clock, was already known when it was made.
        now = timezone.now()
        bay = ChargerFactory(friendly_name="Earlier Bay", last_check_in_at=now)
        session = TransactionSyncStateFactory(
            charger=bay,
            ocpp_id_tag="TAG-ALICE",
            started_at=now - timedelta(minutes=10),
            stopped_at=now - timedelta(minutes=5),
            is_finalized=True,
        )
        reservation = ReservationFactory(
            user=self.alice,
            charger=bay,
            id_tag="TAG-ALICE",
            starts_at=now,
            ends_at=now + timedelta(minutes=60),
        )
        # The sync rewrites the row later (its last reading, say).
        TransactionSyncState.objects.filter(pk=session.pk).update(
            updated_at=timezone.now()
        )
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)

    def test_a_reservation_holds_until_its_own_tag_charges_there(self) -> None:
        now = timezone.now()
        bay = ChargerFactory(friendly_name="Held Bay", last_check_in_at=now)
        ReservationFactory(
            user=self.alice,
            charger=bay,
            id_tag="TAG-ALICE",
            starts_at=now - timedelta(minutes=20),
            ends_at=now + timedelta(minutes=10),
        )
        # Before the reservation, by someone else, and elsewhere: none uses it.
        for tag, charger, started in (
            ("TAG-ALICE", bay, now - timedelta(hours=2)),
            ("TAG-BOB", bay, now - timedelta(minutes=15)),
            ("TAG-ALICE", self.charger, now - timedelta(minutes=15)),
        ):
            TransactionSyncStateFactory(
                charger=charger,
                ocpp_id_tag=tag,
                started_at=started,
                stopped_at=started + timedelta(minutes=5),
                is_finalized=True,
            )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        bay_card = body[body.index(">Held Bay</h3>") :]
        bay_card = bay_card[: bay_card.index("</article>")]
        self.assertIn("badge--reserved", bay_card)
        # Hers: it says so, beside her Start.
        self.assertIn('<p class="charger__note">Reserved for you.</p>', bay_card)
        card = body[body.index('id="next-reservation"') :]
        self.assertIn("Held Bay", card[: card.index("</section>")])

    def test_a_connector_held_for_a_scheduled_session_is_reserved(self) -> None:
        # Nobody charges there until the start time: "in_use" would say otherwise.
        ApiSession.objects.create(
            user=self.bob,
            charge_box_id=self.charger.charge_box_id,
            connector_id=self.charger.connector_id,
            id_tag="TAG-BOB",
            target_start_at=timezone.now() + timedelta(hours=1),
        )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        card = body[body.index(">Harbour Street</h3>") :][:1500]
        self.assertIn("badge--reserved", card)
        self.assertIn("Held for a session scheduled to start soon.", card)
        self.assertNotIn("Start charging", card)

    def test_a_charger_in_use_by_the_customer_says_it_is_their_charge(self) -> None:
        now = timezone.now()
        cards = {
            name: ChargerFactory(friendly_name=name, last_check_in_at=now)
            for name in ("Own Charge", "Own Start", "Someone Else")
        }
        TransactionSyncStateFactory(
            charger=cards["Own Charge"], ocpp_id_tag="TAG-ALICE"
        )
        ApiSession.objects.create(
            user=self.alice,
            charge_box_id=cards["Own Start"].charge_box_id,
            connector_id=cards["Own Start"].connector_id,
            id_tag="TAG-ALICE",
            status=ApiSession.Status.CREATED,
            remote_start_sent_at=now,
        )
        TransactionSyncStateFactory(
            charger=cards["Someone Else"], ocpp_id_tag="TAG-BOB"
        )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        for name, note in (
            ("Own Charge", "Your charge is here"),
            ("Own Start", "Your charge is here"),
            ("Someone Else", "A session is charging or starting here."),
        ):
            card = body[body.index(f">{name}</h3>") :]
            card = card[: card.index("</article>")]
            self.assertIn("badge--in_use", card, name)
            self.assertIn(note, card, name)

    def test_a_connector_held_by_an_open_api_session_is_in_use(self) -> None:
        # The station has stopped, the sync has not told the session yet: a Start
        # offered now would be refused ("This connector already has a session").
        session = ApiSession.objects.create(
            user=self.bob,
            charge_box_id=self.charger.charge_box_id,
            connector_id=self.charger.connector_id,
            id_tag="TAG-BOB",
            status=ApiSession.Status.STARTED,
        )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        card = body[body.index(">Harbour Street</h3>") :][:400]
        self.assertIn("badge--in_use", card)
        self.assertIn("0 of 1 available now", body)
        session.status = ApiSession.Status.ENDED
        session.save()
        body = self.client.get("/").content.decode()
        card = body[body.index(">Harbour Street</h3>") :][:400]
        self.assertIn("badge--online", card)

    def test_a_session_suspected_stuck_is_not_a_charge_in_progress(self) -> None:
        # SteVe never closes a transaction the station forgot: nobody is charging.
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=timezone.now() - timedelta(hours=30),
            is_suspected_stuck=True,
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        body = response.content.decode()
        card = body[body.index(">Harbour Street</h3>") :][:400]
        self.assertIn("badge--online", card)
        self.assertNotContains(response, "Charging at Harbour Street")

    def test_recent_activity_does_not_say_a_stuck_session_is_charging(self) -> None:
        # The banner and the charger say nobody is charging; its row agrees, and
        # does not count 30 hours the station never reported as charging time.
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=timezone.now() - timedelta(hours=30),
            is_suspected_stuck=True,
        )
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        rows = body[body.index('id="recent-activity"') :]
        rows = rows[rows.index("<tbody>") : rows.index("</tbody>")].split("</tr>")
        # Alice's finalized session started 3 hours ago, this one 30.
        row = rows[1]
        self.assertIn('data-label="End" class="nowrap">Not reported</td>', row)
        self.assertNotIn("Charging", row)
        self.assertIn('data-label="Duration" class="nowrap tabular">—</td>', row)

    def test_it_shows_group_chargers_to_members(self) -> None:
        from portal.models import ChargerGroup

        depot = ChargerFactory(friendly_name="Private Depot", is_public=False)
        group = ChargerGroup.objects.create(name="Fleet")
        group.chargers.add(depot)
        group.members.add(self.alice)
        self.client.force_login(self.alice)
        self.assertContains(self.client.get("/"), "Private Depot")
        self.client.force_login(self.bob)
        self.assertNotContains(self.client.get("/"), "Private Depot")

    def test_it_reads_with_a_bounded_number_of_queries(self) -> None:
        self.client.force_login(self.alice)
        self.client.get("/")
        with self.assertNumQueries(11):
            self.client.get("/")


class UsageCardTests(PortalTestCase):
    def test_it_totals_the_current_period(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/?period=current")
        self.assertContains(response, "Current period")
        self.assertContains(response, '12.5<span class="stat__unit"> kWh', html=False)

    def test_it_falls_back_to_current_for_bad_periods(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/?period=forever")
        self.assertEqual(response.context["cards"].usage.period.name, "current")
        self.assertContains(
            response,
            "“forever” is not a period (current, previous or year); "
            "showing the current billing period.",
        )
        for understood in ("/", "/?period=", "/?period=year"):
            with self.subTest(url=understood):
                self.assertNotContains(self.client.get(understood), "is not a period")

    def test_a_bad_period_stays_explained_through_live_re_reads(self) -> None:
        # The card re-reads itself with each live update: asking for the period
        # the address asked for, so the note stays while the address says it.
        self.client.force_login(self.alice)
        page = self.client.get("/?period=forever")
        self.assertContains(page, 'hx-get="?period=forever" hx-trigger="sse:')
        for period in ("current", "year"):
            with self.subTest(period=period):
                self.assertContains(
                    self.client.get(f"/?period={period}"),
                    f'hx-get="?period={period}" hx-trigger="sse:',
                )
        re_read = self.client.get(
            "/?period=forever",
            headers={"HX-Request": "true", "HX-Target": "usage-card"},
        )
        self.assertContains(re_read, "“forever” is not a period")

    def test_a_long_bad_period_is_cut_with_an_ellipsis(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/?period=" + "x" * 60)
        self.assertContains(response, f"“{'x' * 39}…” is not a period")

    def test_it_serves_the_card_alone_to_the_period_chips(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get(
            "/?period=year", headers={"HX-Request": "true", "HX-Target": "usage-card"}
        )
        self.assertContains(response, 'id="usage-card"')
        self.assertNotContains(response, "Recent activity")
        self.assertIn("HX-Target", response["Vary"])

    def test_it_serves_the_chargers_alone_to_their_live_update(self) -> None:
        self.client.force_login(self.alice)
        page = self.client.get("/").content.decode()
        self.assertRegex(page, r'id="chargers"[^>]* hx-trigger="sse:active-session[",]')
        part = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "chargers"}
        ).content.decode()
        self.assertIn('id="chargers"', part)
        self.assertIn("Harbour Street", part)
        self.assertIn('name="csrfmiddlewaretoken"', part)
        self.assertNotIn("Recent activity", part)

    def test_it_serves_the_recent_activity_alone_to_its_live_update(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "recent-activity"}
        )
        body = response.content.decode()
        self.assertTrue(body.lstrip().startswith('<section class="card"'), body[:80])
        self.assertContains(response, 'id="recent-activity"')
        self.assertContains(response, 'hx-trigger="sse:active-session"')
        self.assertContains(response, "Harbour Street")
        self.assertNotContains(response, 'id="usage-card"')
        self.assertNotContains(response, 'id="chargers"')

    def test_the_first_session_takes_the_no_sessions_note_away_live(self) -> None:
        # "Your first session will show up here": the note must be part of the
        # recent activity, which re-reads itself on the live event, or it stays
        # above the session it announced until a reload.
        carol = UserFactory(username="carol@example.com")
        UserMappingFactory(user=carol, steve_ocpp_id_tag="TAG-CAROL")
        self.client.force_login(carol)
        body = self.client.get("/").content.decode()
        recent = body[body.index('id="recent-activity"') :]
        recent = recent[: recent.index("</section>")]
        self.assertEqual(body.count("No charging sessions yet"), 1)
        self.assertIn("No charging sessions yet", recent)
        self.assertNotIn("Your account is almost ready", body)
        session_with_energy(
            kwh=Decimal("3"),
            charger=self.charger,
            ocpp_id_tag="TAG-CAROL",
            started_at=timezone.now() - timedelta(minutes=5),
        )
        response = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "recent-activity"}
        )
        self.assertNotContains(response, "No charging sessions yet")
        self.assertContains(response, "Harbour Street")

    def test_the_reservation_card_comes_and_goes_with_its_live_update(self) -> None:
        # A charge that uses the reservation ends it: the card must go without a
        # reload, and its slot stay for the next one.
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        self.client.force_login(self.alice)
        part = {"HX-Request": "true", "HX-Target": "next-reservation-slot"}
        response = self.client.get("/", headers=part)
        body = response.content.decode()
        self.assertTrue(body.lstrip().startswith('<div class="card-slot"'), body[:80])
        self.assertContains(response, 'id="next-reservation"')
        # The live event, and the reservation's end: it re-reads itself then.
        self.assertContains(response, 'hx-trigger="sse:active-session, load delay:')
        self.assertNotContains(response, 'id="usage-card"')
        Reservation.objects.filter(pk=reservation.pk).update(
            status=Reservation.Status.USED
        )
        response = self.client.get("/", headers=part)
        self.assertContains(response, 'id="next-reservation-slot"')
        self.assertNotContains(response, 'id="next-reservation"')

    def test_other_htmx_requests_get_the_whole_page(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/", headers={"HX-Request": "true"})
        self.assertContains(response, "Recent activity")
        self.assertContains(response, 'id="usage-card"')

    def test_the_chips_keep_their_ids_and_mark_the_chosen_period(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/?period=previous")
        self.assertContains(
            response,
            '<a class="chip" id="period-previous" href="?period=previous"',
            html=False,
        )
        chosen = response.content.decode().split('id="period-previous"')[1]
        self.assertIn('aria-current="true"', chosen.split(">")[0])

    def test_it_puts_the_chart_dates_in_html_outside_the_svg(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get("/")
        body = response.content.decode()
        start = body.index('<svg class="chart"')
        svg = body[start : body.index("</svg>", start)]
        self.assertIn("<rect", svg)
        self.assertNotIn("<text", svg)
        self.assertContains(response, 'class="usage-chart__axis"')
        # Its scale: the busiest day's energy, at the dashed line its bar reaches.
        self.assertContains(
            response, '<p class="usage-chart__scale" aria-hidden="true">12.5 kWh</p>'
        )
        self.assertIn(
            'class="chart__grid chart__grid--top" x1="0" x2="640" y1="8"',
            svg,
        )

    def test_it_shows_currency_codes_in_capitals(self) -> None:
        SubscriptionFactory(
            user=self.alice, plan=PlanFactory(name="Lower", currency="eur")
        )
        default_rate(currency="eur")
        TransactionSyncStateFactory(
            charger=self.charger, ocpp_id_tag="TAG-ALICE", kwh_delivered=Decimal("5")
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        body = response.content.decode()
        banner = body[body.index('id="active-session"') : body.index("</section>")]
        self.assertIn("EUR", banner)
        self.assertNotIn("eur", banner)
        self.assertContains(response, "This plan is billed in EUR.")
        self.assertNotContains(response, ">eur<")

    def test_it_shows_the_plan_card(self) -> None:
        SubscriptionFactory(user=self.alice)
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(response, "Home 200")
        self.assertContains(response, "EUR")
        self.assertContains(response, "of <span")

    def test_a_plan_whose_included_energy_rounds_to_none_shows_no_bar(self) -> None:
        # The card shows tenths of a kWh: 0.04 included would be 0.0.
        SubscriptionFactory(
            user=self.alice, plan=PlanFactory(name="Tiny", included_kwh="0.04")
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(response, "Tiny")
        self.assertNotContains(response, "of <span")

    def test_the_plan_card_comes_along_with_each_usage_card_update(self) -> None:
        # A charge in progress re-reads the usage card live; the plan card counts
        # the same energy and must not fall behind it.
        SubscriptionFactory(user=self.alice)
        self.client.force_login(self.alice)
        page = self.client.get("/").content.decode()
        self.assertNotIn('hx-swap-oob="true"', page)
        update = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "usage-card"}
        ).content.decode()
        self.assertIn('id="usage-card"', update)
        self.assertRegex(update, r'id="plan-card"[^>]* hx-swap-oob="true"')
        self.assertIn("Home 200", update)

    def test_the_plan_card_says_what_is_left_or_how_much_over(self) -> None:
        SubscriptionFactory(user=self.alice)  # 200 kWh included; 12.5 used
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(
            response,
            '<p class="plan-use"><span class="tabular">12.5</span> of <span '
            'class="tabular">200</span> kWh included used this billing period; '
            '<span class="tabular">187.5</span> kWh left.</p>',
            html=True,
        )
        self.assertContains(response, 'class="plan-bar__fill" x="0" y="0" width="6"')
        session_with_energy(
            kwh=Decimal("246.3"), charger=self.charger, ocpp_id_tag="TAG-ALICE"
        )
        response = self.client.get("/")
        self.assertContains(
            response,
            '<p class="plan-use"><span class="tabular">258.8</span> kWh used this '
            'billing period: <strong class="plan-use__over"><span class="tabular">'
            '58.8</span> kWh over</strong> the <span class="tabular">200</span> '
            "kWh included.</p>",
            html=True,
        )
        self.assertContains(response, 'class="plan-bar plan-bar--over"')
        self.assertContains(response, 'width="100"', count=2)  # track and fill

    def test_the_usage_and_plan_cards_round_the_same_energy_alike(self) -> None:
        SubscriptionFactory(user=self.alice)  # 12.5 kWh used so far
        session_with_energy(
            kwh=Decimal("246.35"), charger=self.charger, ocpp_id_tag="TAG-ALICE"
        )
        self.client.force_login(self.alice)
        page = self.client.get("/").content.decode()
        usage_total = re.search(
            r'class="stat__value tabular usage-total">([\d.]+)', page
        )
        plan_used = re.search(r'class="plan-use"><span class="tabular">([\d.]+)', page)
        assert usage_total and plan_used
        self.assertEqual((usage_total[1], plan_used[1]), ("258.9", "258.9"))

    def test_plan_use_adds_up_in_the_tenths_it_shows(self) -> None:
        def use(used: str, included: str = "200") -> tuple[str, str, str, int]:
            plan = selectors.plan_use(
                used_kwh=Decimal(used), included_kwh=Decimal(included)
            )
            return (str(plan.used_kwh), str(plan.left_kwh), str(plan.over_kwh),
                    plan.percent)  # fmt: skip

        self.assertEqual(use("0"), ("0.0", "200.0", "0.0", 0))
        self.assertEqual(use("50"), ("50.0", "150.0", "0.0", 25))
        self.assertEqual(use("199.96"), ("200.0", "0.0", "0.0", 100))
        self.assertEqual(use("199.7"), ("199.7", "0.3", "0.0", 99))
        self.assertEqual(use("258.84"), ("258.8", "0.0", "58.8", 100))
        self.assertEqual(use("258.85"), ("258.9", "0.0", "58.9", 100))
        self.assertEqual(use("1000", "0.5"), ("1000.0", "0.0", "999.5", 100))

    def test_energy_from_before_the_plan_is_not_counted_against_it(self) -> None:
        # Anchored on the 1st, begun on the 20th: the first period is the 20th
        # on, on both cards.
        SubscriptionFactory(user=self.alice, started_on=date(2025, 3, 20))
        session_with_energy(
            kwh=Decimal("40"),
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=datetime(2025, 3, 5, 8, tzinfo=UTC),
        )
        session_with_energy(
            kwh=Decimal("3"),
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            started_at=datetime(2025, 3, 20, 8, tzinfo=UTC),
        )
        self.client.force_login(self.alice)
        with time_machine.travel(datetime(2025, 3, 21, 12, tzinfo=UTC), tick=False):
            response = self.client.get("/")
        self.assertContains(response, "Current period · Mar 20\u2013Mar 31, 2025")
        self.assertContains(
            response,
            '<p class="plan-use"><span class="tabular">3.0</span> of <span '
            'class="tabular">200</span> kWh included used this billing period; '
            '<span class="tabular">197.0</span> kWh left.</p>',
            html=True,
        )

    def test_the_plan_is_the_one_of_the_customers_own_day(self) -> None:
        # 1 March in Auckland while it is still 28 February for the operator:
        # the usage card's period and the plan card agree on the new plan.
        CustomerProfile.objects.create(user=self.alice, time_zone="Pacific/Auckland")
        SubscriptionFactory(
            user=self.alice,
            plan=PlanFactory(name="Old"),
            started_on=date(2025, 1, 1),
            ended_on=date(2025, 2, 28),
        )
        SubscriptionFactory(
            user=self.alice, plan=PlanFactory(name="New"), started_on=date(2025, 3, 1)
        )
        self.client.force_login(self.alice)
        with time_machine.travel(datetime(2025, 2, 28, 12, tzinfo=UTC), tick=False):
            response = self.client.get("/")
        self.assertContains(response, "Current period · Mar 1\u2013Mar 31, 2025")
        self.assertContains(response, '<p class="stat__value">New</p>', html=True)

    @override_settings(BILLING_BACKEND="portal.tests.test_billing.FailingBackend")
    def test_it_hides_the_plan_card_when_billing_fails(self) -> None:
        SubscriptionFactory(user=self.alice)
        self.client.force_login(self.alice)
        with self.assertLogs("portal.billing", "ERROR"):
            response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, "Home 200")
        self.assertContains(response, "Recent activity")


class LiveTests(PortalTestCase):
    def test_only_the_customer_and_staff_read_a_customer_channel(self) -> None:
        channel = live.customer_channel(self.alice.pk)
        self.assertTrue(live.can_read(self.alice, channel))
        self.assertFalse(live.can_read(self.bob, channel))
        self.assertTrue(live.can_read(self.agent, channel))

    def test_the_banner_partial_renders_for_the_customer(self) -> None:
        TransactionSyncStateFactory(
            charger=self.charger, ocpp_id_tag="TAG-ALICE", kwh_delivered=Decimal("2")
        )
        html = banner_html(customer=self.alice, now=timezone.now())
        self.assertIn("2.00 kWh", html)
        self.assertEqual(banner_html(customer=self.bob, now=timezone.now()).strip(), "")


DELAYED = "Charging information is delayed."


@override_settings(SYNC_INTERVAL_SECONDS=10)
class SyncDelayTests(PortalTestCase):
    """The figures come from the sync: when no run has succeeded for three of its
    intervals, the dashboard says the figures are behind and since when."""

    def setUp(self) -> None:
        super().setUp()
        CustomerProfile.objects.create(user=self.alice, time_zone="Asia/Tokyo")
        self.charging = TransactionSyncStateFactory(
            charger=self.charger, ocpp_id_tag="TAG-ALICE"
        )
        self.client.force_login(self.alice)

    def succeeded(self, seconds_ago: int) -> SyncRun:
        return SyncRunFactory(
            started_at=timezone.now() - timedelta(seconds=seconds_ago + 1)
        )

    def failed(self) -> SyncRun:
        return SyncRunFactory(
            status=SyncRun.Status.FAILED, error="SteVe did not answer in time."
        )

    def test_no_word_of_it_while_the_sync_keeps_up(self) -> None:
        self.succeeded(seconds_ago=25)
        self.assertNotContains(self.client.get("/"), DELAYED)

    def test_one_failed_run_after_a_recent_success_is_no_delay_yet(self) -> None:
        self.succeeded(seconds_ago=15)
        self.failed()
        self.assertNotContains(self.client.get("/"), DELAYED)

    def test_three_intervals_without_success_say_when_the_network_last_answered(
        self,
    ) -> None:
        last = self.succeeded(seconds_ago=45)
        self.failed()
        response = self.client.get("/")
        self.assertContains(response, DELAYED)
        assert last.finished_at is not None
        answered = timezone.localtime(last.finished_at, ZoneInfo("Asia/Tokyo"))
        self.assertContains(
            response, "The charging network last answered at <time datetime="
        )
        self.assertContains(response, f">{answered:%H:%M:%S}</time>.")

    def test_a_partial_run_keeps_up_unless_it_could_not_read_this_charge(
        self,
    ) -> None:
        # SteVe could not serve another transaction's meter values, run after run;
        # this charge was read each time.
        last = self.succeeded(seconds_ago=120)
        other = self.charging.steve_transaction_id + 1
        partial = SyncRunFactory(
            status=SyncRun.Status.PARTIAL, unread_transaction_ids=[other]
        )
        self.assertNotContains(self.client.get("/"), DELAYED)
        # Once it is this charge that SteVe cannot serve, its figures are behind
        # since the last run that read it.
        partial.unread_transaction_ids = [self.charging.steve_transaction_id]
        partial.save()
        response = self.client.get("/")
        self.assertContains(response, DELAYED)
        assert last.finished_at is not None
        answered = timezone.localtime(last.finished_at, ZoneInfo("Asia/Tokyo"))
        self.assertContains(response, f">{answered:%H:%M:%S}</time>.")

    def test_a_stopped_beat_is_a_delay_too(self) -> None:
        # No run failed: none ran.
        self.succeeded(seconds_ago=120)
        self.assertContains(self.client.get("/"), DELAYED)

    def test_a_sync_that_never_succeeded_says_so(self) -> None:
        self.failed()
        response = self.client.get("/")
        self.assertContains(response, DELAYED)
        self.assertContains(response, "The charging network has not answered yet.")

    def test_nothing_before_the_first_run(self) -> None:
        self.assertNotContains(self.client.get("/"), DELAYED)

    def test_nothing_without_a_charge_in_progress(self) -> None:
        # The seed: the banner "only appears when you have a charge in progress".
        self.charging.delete()
        self.succeeded(seconds_ago=120)
        self.assertNotContains(self.client.get("/"), DELAYED)

    def test_a_banner_no_sync_refreshes_reads_itself_again(self) -> None:
        # A run that changes nothing sends nothing: after three intervals the
        # banner re-reads itself, and finds the figures current or delayed.
        self.succeeded(seconds_ago=1)
        recheck = 'hx-trigger="load delay:30s" hx-target="#active-session"'
        self.assertContains(self.client.get("/"), recheck)
        response = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "active-session"}
        )
        self.assertContains(response, recheck)
        self.assertContains(response, "Charging at Harbour Street")


# One prefix per test process: parallel workers share Redis.
@override_settings(LIVE_CHANNEL_PREFIX=f"test-portal-live-{uuid.uuid4().hex[:8]}-")
class LiveBannerEventTests(PortalTestCase):
    """A sync that changes a customer's session re-renders their banner on their
    channel. Events are read back from the Redis storage a reconnecting browser
    replays from."""

    def setUp(self) -> None:
        super().setUp()
        self.storage = get_storage()
        self.channels = {
            customer: live.customer_channel(customer.pk)
            for customer in (self.alice, self.bob)
        }
        self.last_ids = {
            customer: self.storage.get_current_id(channel)
            for customer, channel in self.channels.items()
        }

    def published(self, customer: object) -> list[tuple[str, str]]:
        events = self.storage.get_events(
            self.channels[customer], self.last_ids[customer]
        )
        return [(event.type, event.data) for event in events]

    def test_a_changed_session_refreshes_its_customers_banner_only(self) -> None:
        session = TransactionSyncStateFactory(
            charger=self.charger, ocpp_id_tag="TAG-ALICE", kwh_delivered=Decimal("3.5")
        )
        run = SyncRunFactory(updated_count=1)
        sessions_changed.send(sender=SyncRun, run=run, transaction_ids=[session.pk])
        ((event_type, html),) = self.published(self.alice)
        self.assertEqual(event_type, "active-session")
        self.assertIn("3.50 kWh", html)
        self.assertEqual(self.published(self.bob), [])

    def test_a_charge_started_from_another_account_before_the_card_moved(
        self,
    ) -> None:
        # Staff moved Bob's card to Alice while his portal start charged: Bob's
        # session holds its Stop, and Alice's banner does not say it began at
        # the station.
        session = TransactionSyncStateFactory(
            charger=self.charger, ocpp_id_tag="TAG-ALICE"
        )
        started_api_session(self.bob, session)
        self.client.force_login(self.alice)
        banner = active_banner(self.client.get("/"))
        self.assertIn("Started from another account before this card became", banner)
        self.assertNotIn("Started at the station", banner)
        self.assertNotIn('id="stop-session-', banner)

    def test_a_stop_under_way_takes_the_place_of_stop(self) -> None:
        session = TransactionSyncStateFactory(
            charger=self.charger, ocpp_id_tag="TAG-ALICE"
        )
        started = started_api_session(self.alice, session)
        button = f'id="stop-session-{started.pk}"'
        self.client.force_login(self.alice)
        self.assertContains(
            self.client.get("/"), f'{button} aria-label="Stop charging at'
        )
        started.stop_requested_at = timezone.now()
        started.save(update_fields=["stop_requested_at"])
        run = SyncRunFactory(updated_count=1)
        sessions_changed.send(sender=SyncRun, run=run, transaction_ids=[session.pk])
        ((_, html),) = self.published(self.alice)
        self.assertIn(
            f'{button} aria-disabled="true" aria-label="Stopping charging at', html
        )
        self.assertIn(">Stopping…</button>", html)

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_a_failing_sync_tells_whoever_is_charging_and_then_that_it_is_over(
        self,
    ) -> None:
        # A failing run changes no session, so nothing else would reach the banner.
        TransactionSyncStateFactory(charger=self.charger, ocpp_id_tag="TAG-ALICE")
        self.assert_a_run_turning_failing_tells_alice()
        # Bob is not charging: his banner has nothing a run could change.
        self.assertEqual(self.published(self.bob), [])

        self.last_ids[self.alice] = self.storage.get_current_id(
            self.channels[self.alice]
        )
        recovered = SyncRunFactory()
        run_finished.send(sender=SyncRun, run=recovered)
        ((_, html),) = self.published(self.alice)
        self.assertNotIn(DELAYED, html)
        self.assertIn("Charging at Harbour Street", html)

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_a_failing_sync_tells_a_station_charging_on_past_a_manual_stop(
        self,
    ) -> None:
        # Its banner shows the charge, so it says the figures are delayed too.
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-ALICE",
            charging_past_manual_stop=True,
        )
        self.assert_a_run_turning_failing_tells_alice()

    def assert_a_run_turning_failing_tells_alice(self) -> None:
        SyncRunFactory(started_at=timezone.now() - timedelta(minutes=2))
        failed = SyncRunFactory(status=SyncRun.Status.FAILED, error="Timed out.")
        run_finished.send(sender=SyncRun, run=failed)
        ((event_type, html),) = self.published(self.alice)
        self.assertEqual(event_type, "active-session")
        self.assertIn(DELAYED, html)
        self.assertIn("Charging at Harbour Street", html)

    def test_a_successful_run_after_another_tells_nobody(self) -> None:
        TransactionSyncStateFactory(charger=self.charger, ocpp_id_tag="TAG-ALICE")
        SyncRunFactory(started_at=timezone.now() - timedelta(seconds=10))
        run_finished.send(sender=SyncRun, run=SyncRunFactory())
        self.assertEqual(self.published(self.alice), [])

    def test_a_sync_reads_every_customers_banner_in_the_same_few_queries(
        self,
    ) -> None:
        # Each sync changes every charging session: a few queries per customer
        # would grow with the fleet, in the worker, every run.
        def changed_sessions_of(customers: int) -> list[int]:
            ids = []
            for number in range(customers):
                customer = UserFactory(username=f"c{number}-{uuid.uuid4().hex[:6]}")
                CustomerProfile.objects.create(user=customer, time_zone="Asia/Tokyo")
                tag = f"TAG-{uuid.uuid4().hex[:8]}"
                UserMappingFactory(user=customer, steve_ocpp_id_tag=tag)
                ids.append(
                    TransactionSyncStateFactory(
                        charger=self.charger, ocpp_id_tag=tag, is_finalized=False
                    ).pk
                )
            return ids

        run = SyncRunFactory(updated_count=1)
        counts = []
        for customers in (1, 6):
            ids = changed_sessions_of(customers)
            with CaptureQueriesContext(connection) as queries:
                sessions_changed.send(sender=SyncRun, run=run, transaction_ids=ids)
            counts.append(len(queries))
        self.assertEqual(counts[0], counts[1])
        session = TransactionSyncState.objects.get(pk=ids[-1])
        customer = UserMapping.objects.get(steve_ocpp_id_tag=session.ocpp_id_tag).user
        channel = live.customer_channel(customer.pk)
        (event,) = self.storage.get_events(channel, 0)
        started = timezone.localtime(session.started_at, ZoneInfo("Asia/Tokyo"))
        self.assertIn(f"{started:%H:%M}", event.data)


class ReservationCancelTests(PortalTestCase):
    def test_bob_gets_404_for_alices_reservation(self) -> None:
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        self.client.force_login(self.bob)
        url = reverse("portal:reservation-cancel", args=[reservation.pk])
        self.assertEqual(self.client.post(url).status_code, 404)

    def test_it_keeps_a_reservation_steve_cannot_cancel(self) -> None:
        # Without SteVe's id no CancelReservation can be sent, and the station
        # keeps holding the charger: so does the portal.
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertNotContains(response, "Cancel reservation")
        self.assertContains(response, "cannot cancel this reservation early")
        url = reverse("portal:reservation-cancel", args=[reservation.pk])
        response = self.client.post(url, follow=True)
        self.assertRedirects(response, "/")
        self.assertContains(response, "cannot cancel this reservation early")
        self.assertNotContains(response, "Your reservation is cancelled")
        reservation.refresh_from_db()
        self.assertEqual(reservation.status, Reservation.Status.ACTIVE)

    def test_it_offers_cancel_once_steves_id_is_known(self) -> None:
        ReservationFactory(
            user=self.alice, charger=self.charger, steve_reservation_id=7
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertContains(response, "Cancel reservation")
        self.assertNotContains(response, "cannot cancel this reservation early")


class ReservationCardTests(PortalTestCase):
    """The reservation card is there only for a reservation that has not ended;
    the chargers invite to reserve only who can."""

    MISSING_CARD = "once an active charging card is linked"

    def test_without_an_upcoming_reservation_there_is_no_card(self) -> None:
        now = timezone.now()
        ReservationFactory(
            user=self.alice,
            charger=self.charger,
            starts_at=now - timedelta(hours=3),
            ends_at=now - timedelta(hours=2),
        )
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertNotContains(response, 'id="next-reservation"')
        self.assertNotContains(response, "Next reservation")
        # Each card's buttons name their charger to screen readers: a list of
        # "Start charging" buttons alone does not say which is which.
        charger = f"{self.charger.friendly_name} #{self.charger.connector_id}"
        self.assertContains(
            response,
            f'>Start charging<span class="visually-hidden"> at {charger}</span>',
        )
        self.assertContains(
            response, f'>Reserve<span class="visually-hidden"> {charger}</span>'
        )
        self.assertNotContains(response, self.MISSING_CARD)

    def test_a_customer_without_an_active_card_is_told_what_is_missing(self) -> None:
        UserMapping.objects.filter(user=self.alice).update(is_active=False)
        for customer in (self.alice, UserFactory(username="new@example.com")):
            self.client.force_login(customer)
            response = self.client.get("/")
            self.assertContains(response, self.MISSING_CARD)
            self.assertNotContains(response, ">Reserve<span", html=False)
            self.assertNotContains(response, "Start charging")

    def test_an_acting_agent_sees_the_customers_controls_disabled(self) -> None:
        # "They see what you see": what Alice may press, which the agent may not.
        ReservationFactory(
            user=self.alice, charger=self.charger, steve_reservation_id=7
        )
        self.client.force_login(self.agent)
        self.client.post(reverse("portal:act-as-start", args=[self.alice.pk]))
        response = self.client.get("/")
        pk = self.charger.pk
        for control in (
            f'id="start-{pk}" data-busy-label="Starting…" disabled>Start charging',
            f'id="minutes-{pk}" disabled>',
            f'id="reserve-{pk}" data-busy-label="Reserving…" disabled>Reserve',
            'type="submit" disabled>Cancel reservation',
        ):
            self.assertContains(response, control, html=False)
        self.assertNotContains(response, self.MISSING_CARD)

    def test_a_customer_without_a_card_is_told_so_also_before_an_agent(self) -> None:
        UserMapping.objects.filter(user=self.alice).update(is_active=False)
        self.client.force_login(self.agent)
        self.client.post(reverse("portal:act-as-start", args=[self.alice.pk]))
        response = self.client.get("/")
        self.assertContains(response, self.MISSING_CARD)
        self.assertNotContains(response, "Start charging")


class HtmxPostTests(PortalTestCase):
    """An htmx POST that redirects to the dashboard ends on the whole page: the
    browser repeats HX-Request when it follows the redirect."""

    HTMX = {"HX-Request": "true"}

    def assertWholeDashboard(self, response: HttpResponse) -> None:
        self.assertRedirects(response, "/")
        self.assertContains(response, "<html", html=False)
        self.assertContains(response, "Recent activity")
        self.assertContains(response, 'id="chargers"')

    def test_stop_ends_on_the_whole_page(self) -> None:
        # Not started yet, so stopping cancels it without calling SteVe.
        session = ApiSession.objects.create(
            user=self.alice, charge_box_id="CB-1", connector_id=1, id_tag="TAG-ALICE"
        )
        self.client.force_login(self.alice)
        url = reverse("portal:session-stop", args=[session.pk])
        response = self.client.post(url, headers=self.HTMX, follow=True)
        self.assertWholeDashboard(response)
        self.assertContains(response, "Cancelled before its scheduled start.")
        self.assertContains(response, "banner--success")

    def test_cancel_reservation_ends_on_the_whole_page(self) -> None:
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        self.client.force_login(self.alice)
        url = reverse("portal:reservation-cancel", args=[reservation.pk])
        response = self.client.post(url, headers=self.HTMX, follow=True)
        self.assertWholeDashboard(response)


class ChargerActionTests(PortalTestCase):
    def test_bob_gets_404_for_a_charger_he_cannot_see(self) -> None:
        depot = ChargerFactory(friendly_name="Private", is_public=False)
        self.client.force_login(self.bob)
        for name in ("portal:charger-reserve", "portal:charger-start"):
            response = self.client.post(
                reverse(name), {"charger": depot.pk, "minutes": 30}
            )
            self.assertEqual(response.status_code, 404, name)

    def test_a_post_without_a_charger_is_404(self) -> None:
        self.client.force_login(self.alice)
        for name in ("portal:charger-reserve", "portal:charger-start"):
            for data in ({}, {"charger": "harbour"}, {"charger": "0"}):
                response = self.client.post(reverse(name), {**data, "minutes": 30})
                self.assertEqual(response.status_code, 404, (name, data))
        self.assertFalse(Reservation.objects.exists())

    def test_bob_gets_404_for_alices_api_session(self) -> None:
        from sessions_app.models import ApiSession

        session = ApiSession.objects.create(
            user=self.alice, charge_box_id="CB-1", connector_id=1, id_tag="TAG-ALICE"
        )
        self.client.force_login(self.bob)
        url = reverse("portal:session-stop", args=[session.pk])
        self.assertEqual(self.client.post(url).status_code, 404)

    def test_an_action_opened_as_a_page_does_nothing_and_leads_to_its_button(
        self,
    ) -> None:
        # Signing in again after the session ended as Start, Reserve, Stop,
        # Cancel or Revoke was pressed brings the browser to the action's address
        # with a GET: not a blank 405, and nothing started.
        reservation = ReservationFactory(user=self.alice, charger=self.charger)
        self.client.force_login(self.alice)
        for name, args, page in (
            ("portal:charger-start", [], "/"),
            ("portal:charger-reserve", [], "/"),
            ("portal:reservation-cancel", [reservation.pk], "/"),
            ("portal:token-revoke", [1], "/tokens/"),
        ):
            response = self.client.get(reverse(name, args=args), follow=True)
            self.assertRedirects(response, page)
            self.assertContains(
                response, "Nothing was done yet: press the button again to go ahead."
            )
        self.assertFalse(ApiSession.objects.exists())
        reservation.refresh_from_db()
        self.assertIsNone(reservation.cancelled_at)
        # Other methods than GET and POST are still refused.
        self.assertEqual(
            self.client.put(reverse("portal:charger-start")).status_code, 405
        )

    def test_htmx_after_the_sign_in_ended_sends_the_tab_to_sign_in(self) -> None:
        # The period chips or a live re-read from a tab whose session expired:
        # htmx would follow a plain redirect and swap the sign-in page into the
        # card. HX-Redirect takes the whole tab there, back to the page it shows.
        response = self.client.get(
            "/",
            {"period": "year"},
            headers={
                "HX-Request": "true",
                "HX-Target": "usage-card",
                "HX-Current-URL": "http://testserver/?period=year",
            },
        )
        self.assertEqual(
            response["HX-Redirect"], "/accounts/login/?next=/%3Fperiod%3Dyear"
        )


class UnmappedCustomerTests(PortalTestCase):
    def test_a_new_mapping_finds_old_sessions(self) -> None:
        carol = UserFactory(username="carol@example.com")
        TransactionSyncStateFactory(
            charger=self.charger,
            ocpp_id_tag="TAG-CAROL",
            kwh_delivered=Decimal("5"),
            is_finalized=True,
            stopped_at=timezone.now(),
        )
        UserMappingFactory(user=carol, steve_ocpp_id_tag="TAG-CAROL")
        self.client.force_login(carol)
        self.assertContains(self.client.get("/"), "5.00")


class UsageByZoneTests(PortalTestCase):
    """Usage comes from the hourly tag rollup where local midnights fall on the
    hour, and from the events themselves where they do not (half-hour zones)."""

    def setUp(self) -> None:
        self.tags = ["TAG-ALICE"]
        # Readings at 18:10, 18:50 and 23:40 UTC on March 10: the first two share
        # an hour bucket but straddle midnight in Kolkata (18:30 UTC).
        for minutes, kwh in ((10, "1.000"), (50, "2.000"), (340, "4.000")):
            session_with_energy(
                kwh=Decimal(kwh),
                ocpp_id_tag="TAG-ALICE",
                started_at=datetime(2026, 3, 10, 17, 0, tzinfo=UTC),
                reading_at=datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
                + timedelta(minutes=minutes),
                is_finalized=True,
            )

    def per_day(self, zone_name: str) -> dict[date, Decimal]:
        by_day = selectors.energy_by_day(
            tags=self.tags,
            first_day=date(2026, 3, 1),
            end_day=date(2026, 4, 1),
            zone=ZoneInfo(zone_name),
        )
        return {day: kwh for day, kwh in by_day.items() if kwh}

    def test_whole_hour_zones_read_the_rollup(self) -> None:
        self.assertEqual(self.per_day("UTC"), {date(2026, 3, 10): Decimal("7.000")})
        self.assertEqual(
            self.per_day("Asia/Tokyo"), {date(2026, 3, 11): Decimal("7.000")}
        )
        self.assertEqual(
            self.per_day("America/New_York"), {date(2026, 3, 10): Decimal("7.000")}
        )

    def test_half_hour_zones_split_days_inside_the_hour(self) -> None:
        split = {
            date(2026, 3, 10): Decimal("1.000"),
            date(2026, 3, 11): Decimal("6.000"),
        }
        self.assertEqual(self.per_day("Asia/Kolkata"), split)  # +05:30
        self.assertEqual(self.per_day("Asia/Kathmandu"), split)  # +05:45

    def test_days_around_a_clock_change_match_the_events(self) -> None:
        # New York moves from -05:00 to -04:00 at 07:00 UTC on March 8, 2026: local
        # midnight is 05:00 UTC until then and 04:00 UTC after. Readings at 04:30
        # UTC fall on the evening before until the change, just after midnight
        # from then on.
        for day in (6, 7, 8, 9):
            session_with_energy(
                kwh=Decimal(day),
                ocpp_id_tag="TAG-ALICE",
                started_at=datetime(2026, 3, day, 4, 0, tzinfo=UTC),
                reading_at=datetime(2026, 3, day, 4, 30, tzinfo=UTC),
                is_finalized=True,
            )
        zone = ZoneInfo("America/New_York")
        span = {"first_day": date(2026, 3, 1), "end_day": date(2026, 4, 1)}
        from_rollup = rollups.tag_energy_by_day(tags=self.tags, zone=zone, **span)
        from_events = usage._energy_by_day_from_events(
            tags=self.tags, zone=zone, **span
        )
        self.assertEqual(from_rollup, from_events)
        self.assertEqual(
            {day: kwh for day, kwh in from_rollup.items() if day.day < 10},
            {
                date(2026, 3, 5): Decimal("6.000"),
                date(2026, 3, 6): Decimal("7.000"),
                date(2026, 3, 7): Decimal("8.000"),
                date(2026, 3, 9): Decimal("9.000"),
            },
        )


class ManyChargersTests(PortalTestCase):
    def test_the_counts_pill_counts_beyond_the_fifty_shown(self) -> None:
        now = timezone.now()
        for n in range(55):
            ChargerFactory(
                friendly_name=f"Bay {n:02d}",
                last_check_in_at=now if n % 2 else now - timedelta(hours=2),
            )
        busy = Charger.objects.get(friendly_name="Bay 51")
        TransactionSyncStateFactory(charger=busy, ocpp_id_tag="TAG-X")
        # Visible: Harbour Street (online) + 55 bays, 27 of them online, one in use.
        chargers = selectors.charger_list(customer=self.alice, now=timezone.now())
        self.assertEqual(len(chargers.rows), selectors.MAX_CHARGERS)
        self.assertEqual((chargers.available, chargers.total), (27, 56))
        # The page says that it shows the first fifty.
        self.client.force_login(self.alice)
        self.assertContains(
            self.client.get("/"), "Showing the first 50 of 56 chargers, by name."
        )


class ChargerStatusClockTests(PortalTestCase):
    """No event says a reservation ended or a check-in grew old: the card re-reads
    itself when the first shown status changes by the clock alone."""

    def test_the_card_re_reads_itself_when_a_reservation_holding_it_ends(
        self,
    ) -> None:
        now = timezone.now()
        # Bob's reservation holds the charger for Alice's card too.
        ReservationFactory(
            user=self.bob,
            charger=self.charger,
            starts_at=now - timedelta(minutes=5),
            ends_at=now + timedelta(minutes=2),
        )
        chargers = selectors.charger_list(customer=self.alice, now=now)
        self.assertEqual(chargers.next_change_at, now + timedelta(minutes=2))
        self.client.force_login(self.alice)
        response = self.client.get("/")
        self.assertRegex(
            response.content.decode(),
            r'id="chargers"[^>]*hx-trigger="sse:active-session, load delay:1[12]\ds"',
        )

    def test_without_a_reservation_it_is_when_a_check_in_grows_old(self) -> None:
        now = timezone.now()
        checked_in = now - timedelta(minutes=50)
        Charger.objects.filter(pk=self.charger.pk).update(last_check_in_at=checked_in)
        ChargerFactory(friendly_name="Quiet Lane", last_check_in_at=None)
        chargers = selectors.charger_list(customer=self.alice, now=now)
        self.assertEqual(chargers.next_change_at, checked_in + CHECK_IN_VALID_FOR)

    def test_offline_chargers_alone_change_with_events_only(self) -> None:
        Charger.objects.update(last_check_in_at=None)
        chargers = selectors.charger_list(customer=self.alice, now=timezone.now())
        self.assertIsNone(chargers.next_change_at)
        self.client.force_login(self.alice)
        self.assertContains(self.client.get("/"), 'hx-trigger="sse:active-session"')


class ChargerListStatesTests(PortalTestCase):
    """The chargers card's statement is SQL: each state it reads must agree with
    the queryset that defines it."""

    def test_every_state_agrees_with_the_querysets_that_define_it(self) -> None:
        now = timezone.now()

        def charger(name: str, **fields: object) -> Charger:
            return ChargerFactory(
                friendly_name=name, **{"last_check_in_at": now, **fields}
            )

        TransactionSyncStateFactory(charger=charger("Charging"))
        # Not linked to a charger: it marks none, and no state becomes unknown.
        TransactionSyncStateFactory(
            charger=None, charge_box_id="CB-UNLINKED", connector_id=1
        )
        TransactionSyncStateFactory(
            charger=charger("Stuck session"), is_suspected_stuck=True
        )
        TransactionSyncStateFactory(
            charger=charger("Stopped session"), is_finalized=True
        )
        # Manual stops: the station charging on (a reading after the stop), one
        # that fell silent an hour ago, and one without readings after its stop.
        for name, after_stop in [
            ("Manual stop, charging on", now - timedelta(minutes=2)),
            ("Manual stop, silent since", now - timedelta(hours=2)),
            ("Manual stop", None),
        ]:
            TransactionSyncStateFactory(
                charger=charger(name),
                is_finalized=True,
                stop_event_actor="manual",
                last_reading_after_stop_at=after_stop,
            )
        for status in ApiSession.Status:
            bay = charger(f"API {status}")
            ApiSession.objects.create(
                user=self.bob,
                charge_box_id=bay.charge_box_id,
                connector_id=bay.connector_id,
                id_tag="TAG-BOB",
                status=status,
            )
        hour = timedelta(hours=1)
        bay = charger("API scheduled")
        ApiSession.objects.create(
            user=self.bob,
            charge_box_id=bay.charge_box_id,
            connector_id=bay.connector_id,
            id_tag="TAG-BOB",
            target_start_at=now + hour,
        )
        for name, user, starts_at, status in [
            ("Held by bob", self.bob, now - hour, Reservation.Status.ACTIVE),
            ("Held by alice", self.alice, now - hour, Reservation.Status.ACTIVE),
            ("Held later", self.alice, now + hour, Reservation.Status.ACTIVE),
            ("Held, used", self.alice, now - hour, Reservation.Status.USED),
            ("Held, cancelled", self.bob, now - hour, Reservation.Status.CANCELLED),
        ]:
            ReservationFactory(
                user=user,
                charger=charger(name),
                starts_at=starts_at,
                ends_at=starts_at + 2 * hour,
                status=status,
            )
        charger("Offline", last_check_in_at=now - 2 * hour)
        depot = ChargerGroup.objects.create(name="Depot")
        depot.members.add(self.alice)
        depot.chargers.add(charger("Depot bay", is_public=False))
        other = ChargerGroup.objects.create(name="Elsewhere")
        other.members.add(self.bob)
        other.chargers.add(charger("Bob's depot bay", is_public=False))

        listed = selectors.charger_list(customer=self.alice, now=now)

        visible = Charger.objects.visible_to_customer(self.alice)
        self.assertEqual(
            {c.pk for c in listed.rows}, set(visible.values_list("pk", flat=True))
        )
        self.assertNotIn("Bob's depot bay", {c.friendly_name for c in listed.rows})
        held = Reservation.objects.covering(now)
        for row in listed.rows:
            with self.subTest(charger=row.friendly_name):
                at_row = {
                    "charge_box_id": row.charge_box_id,
                    "connector_id": row.connector_id,
                }
                in_use = (
                    TransactionSyncState.objects.occupying_connector(now)
                    .filter(charger=row)
                    .exists()
                    or ApiSession.objects.charging_or_starting(now)
                    .filter(**at_row)
                    .exists()
                )
                scheduled = (
                    ApiSession.objects.waiting_to_start(now).filter(**at_row).exists()
                )
                self.assertEqual(row.in_use, in_use)
                if row.friendly_name.startswith("Manual stop"):
                    self.assertEqual(
                        row.in_use, row.friendly_name == "Manual stop, charging on"
                    )
                self.assertEqual(row.scheduled, scheduled)
                self.assertEqual(row.held, held.filter(charger=row).exists())
                self.assertEqual(row.reserved, row.held or scheduled)
                self.assertEqual(
                    row.reserved_by_me,
                    held.filter(charger=row, user=self.alice).exists(),
                )
        statuses = {row.friendly_name: row.status for row in listed.rows}
        self.assertEqual(
            [name for name, status in statuses.items() if status == "in_use"],
            ["API created", "API started", "Charging", "Manual stop, charging on"],
        )
        self.assertEqual(
            [name for name, status in statuses.items() if status == "reserved"],
            ["API scheduled", "Held by alice", "Held by bob"],
        )
        self.assertEqual(statuses["Offline"], "offline")
        # Available to Alice: the online ones, and the one she holds, whose card
        # offers her Start.
        available = [
            row.friendly_name
            for row in listed.rows
            if row.status == "online"
            or (row.status == "reserved" and row.reserved_by_me)
        ]
        self.assertIn("Held by alice", available)
        self.assertEqual(
            (listed.available, listed.total), (len(available), len(statuses))
        )

    def test_it_reads_the_open_sessions_once(self) -> None:
        # Between two vacuums the open sessions' index points at the dead version
        # of each rewrite too, and each read visits their pages.
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                f"EXPLAIN (FORMAT JSON) {CHARGER_LIST_SQL}",
                charger_list_params(user=self.alice, now=now),
            )
            (plan,) = cursor.fetchone()

        def relations(node: dict[str, object]) -> list[object]:
            children = node.get("Plans", [])
            assert isinstance(children, list)
            found = [node.get("Relation Name")]
            return found + [name for child in children for name in relations(child)]

        self.assertEqual(relations(plan[0]["Plan"]).count("transaction_sync_state"), 1)


class RecentSessionsTests(PortalTestCase):
    def test_it_merges_every_tag_newest_first(self) -> None:
        UserMappingFactory(user=self.alice, steve_ocpp_id_tag="TAG-ALICE-2")
        now = timezone.now()
        for hours, tag in ((1, "TAG-ALICE-2"), (6, "TAG-ALICE"), (7, "TAG-ALICE-2")):
            for n in range(3):
                TransactionSyncStateFactory(
                    ocpp_id_tag=tag,
                    started_at=now - timedelta(hours=hours, minutes=n),
                )
        tags = selectors.customer_tags(customer=self.alice)
        recent = selectors.recent_sessions(tags=tags, now=now)
        starts = [session.started_at for session in recent]
        self.assertEqual(len(recent), selectors.RECENT_SESSIONS)
        self.assertEqual(starts, sorted(starts, reverse=True))
        expected = sorted(
            TransactionSyncState.objects.filter(ocpp_id_tag__in=tags).values_list(
                "started_at", flat=True
            ),
            reverse=True,
        )[: selectors.RECENT_SESSIONS]
        self.assertEqual(starts, expected)


class StartNoticeTests(PortalTestCase):
    """A Start shows in the banner before the station's charge reaches the sync,
    and says so when the station never began charging."""

    def start(self, **fields: object) -> ApiSession:
        now = timezone.now()
        values: dict[str, object] = {
            "user": self.alice,
            "charge_box_id": self.charger.charge_box_id,
            "connector_id": self.charger.connector_id,
            "id_tag": "TAG-ALICE",
            "remote_start_sent_at": now,
            "created_at": now,
            **fields,
        }
        return ApiSession.objects.create(**values)

    def banner(self) -> str:
        self.client.force_login(self.alice)
        body = self.client.get("/").content.decode()
        return body[body.index('id="active-session"') : body.index("</section>")]

    def test_a_start_sent_says_it_is_starting_and_how_long_it_may_take(self) -> None:
        self.start()
        banner = self.banner()
        connector = self.charger.connector_id
        self.assertIn(f"Starting to charge at Harbour Street #{connector}…", banner)
        self.assertIn("has not begun within 2 minutes", banner)

    def test_a_scheduled_start_says_when(self) -> None:
        # At noon, so that an hour later is still today (its clock time alone).
        noon = timezone.localtime().replace(hour=12, minute=0)
        with time_machine.travel(noon, tick=False):
            starts_at = noon + timedelta(hours=1)
            self.start(remote_start_sent_at=None, target_start_at=starts_at)
            banner = self.banner()
        self.assertIn("is scheduled", banner)
        self.assertIn(">13:00</time>", banner)

    def test_a_start_the_station_did_not_take_says_so_until_the_next_one(
        self,
    ) -> None:
        now = timezone.now()
        failed = self.start(
            status=ApiSession.Status.CANCELLED,
            created_at=now - timedelta(minutes=3),
            ended_at=now - timedelta(minutes=1),
        )
        self.assertIn("did not start", self.banner())
        # Started again: the new Start replaces the failure.
        self.start(status=ApiSession.Status.CANCELLED, remote_start_sent_at=None)
        self.assertNotIn("did not start", self.banner())
        ApiSession.objects.exclude(pk=failed.pk).delete()
        # A failure from long ago, or a scheduled start the driver cancelled
        # before it was sent, is not news.
        failed.ended_at = now - timedelta(minutes=20)
        failed.save()
        self.assertNotIn("did not start", self.banner())
        failed.ended_at = now
        failed.remote_start_sent_at = None
        failed.save()
        self.assertNotIn("did not start", self.banner())

    def test_a_failed_start_says_why_when_it_was_not_the_usual_timeout(
        self,
    ) -> None:
        now = timezone.now()
        failed = self.start(
            status=ApiSession.Status.CANCELLED,
            status_message="The station did not start charging within 120 seconds; "
            "create a new session to try again.",
            remote_start_sent_at=now - timedelta(minutes=3),
            ended_at=now - timedelta(seconds=30),
        )
        banner = self.banner()
        self.assertIn("The station did not begin charging in time", banner)
        self.assertNotIn("create a new session", banner)
        # A scheduled start the station refused, at once: "in time" would be
        # wrong.
        failed.status_message = (
            "The charge station refused to start charging: CP-002 #1 is reserved "
            "by someone else until 2026-12-07T22:36:27Z."
        )
        failed.remote_start_sent_at = now - timedelta(seconds=35)
        failed.save()
        banner = self.banner()
        self.assertIn(failed.status_message, banner)
        self.assertNotIn("in time", banner)

    def test_a_start_stopped_before_it_began_says_so_and_is_no_failure(
        self,
    ) -> None:
        # An integrator's stop before the charge began: kept until it begins.
        now = timezone.now()
        stopped = self.start(stop_requested_at=now)
        banner = self.banner()
        self.assertIn("Stopping the start at Harbour Street", banner)
        self.assertNotIn("Starting to charge", banner)
        # Cancelled as asked, it did not fail: no "did not start" to answer.
        stopped.status = ApiSession.Status.CANCELLED
        stopped.ended_at = now
        stopped.save()
        self.assertNotIn("did not start", self.banner())

    def test_the_live_banner_tells_a_cancelled_start_too(self) -> None:
        session = self.start()
        now = timezone.now()
        self.assertIn("Starting to charge", banner_html(customer=self.alice, now=now))
        session.status = ApiSession.Status.CANCELLED
        session.ended_at = now
        session.save()
        html = banner_html(customer=self.alice, now=now)
        self.assertIn("did not start", html)
        self.assertNotIn("Starting to charge", html)

    def test_a_failed_start_re_reads_the_banner_when_its_notice_is_due_to_go(
        self,
    ) -> None:
        now = timezone.now()
        self.start(
            status=ApiSession.Status.CANCELLED,
            ended_at=now - selectors.FAILED_START_SHOWN_FOR + timedelta(seconds=30),
        )
        banner = self.banner()
        self.assertRegex(banner, r'hx-trigger="load delay:(29|30|31)s"')
        self.client.force_login(self.alice)
        part = self.client.get(
            "/", headers={"HX-Request": "true", "HX-Target": "active-session"}
        ).content.decode()
        self.assertIn("did not start", part)
        self.assertNotIn("Recent activity", part)
