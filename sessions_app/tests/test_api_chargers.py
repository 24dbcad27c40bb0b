"""`GET /api/v1/chargers`: which chargers, what each gives, statuses, rates, pages."""

import base64
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from portal.models import ChargerGroup
from portal.selectors import charger_list
from portal.tests.factories import ReservationFactory
from sessions_app.models import ChargerRate, Rate
from sessions_app.tests.test_api_sessions import ApiTestCase
from sync.models import Charger
from sync.tests.factories import ChargerFactory, TransactionSyncStateFactory


def where(charger: Charger) -> tuple[str, str]:
    return (charger.charge_box_id, str(charger.connector_id))


class ChargerListApiTests(ApiTestCase):
    def page(self, query: str = "", token: str | None = None) -> dict[str, Any]:
        return self.result(self.call("GET", f"/chargers{query}", token))

    def listed(self, token: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = "?limit=100"
        while True:
            page = self.page(query, token)
            items += page["items"]
            if page["next_cursor"] is None:
                return items
            query = f"?limit=100&cursor={page['next_cursor']}"

    def places(self, token: str | None = None) -> set[tuple[str, str]]:
        return {
            (item["chargestation"], item["connector"]) for item in self.listed(token)
        }

    def portal_card(self, customer: AbstractBaseUser) -> set[tuple[str, str]]:
        rows = charger_list(customer=customer, now=timezone.now()).rows
        return {where(row) for row in rows}

    def test_customers_see_the_portals_chargers_card_and_staff_every_charger(
        self,
    ) -> None:
        depot = ChargerGroup.objects.create(name="Depot")
        depot.members.add(self.alice)
        depot.chargers.add(ChargerFactory(charge_box_id="DEPOT-1", is_public=False))
        yard = ChargerGroup.objects.create(name="Yard")
        yard.members.add(self.bob)
        yard.chargers.add(ChargerFactory(charge_box_id="YARD-1", is_public=False))
        alice = self.places()
        self.assertIn(("DEPOT-1", "1"), alice)
        self.assertNotIn(("YARD-1", "1"), alice)
        self.assertEqual(alice, self.portal_card(self.alice))
        self.assertEqual(self.places(self.bob_token), self.portal_card(self.bob))
        every = {where(charger) for charger in Charger.objects.all()}
        self.assertEqual(self.places(self.staff_token), every)

    def test_each_charger_says_where_to_start_what_it_is_and_its_rate(self) -> None:
        ChargerFactory(
            charge_box_id="CP-100",
            connector_id=2,
            friendly_name="Harbour Street",
            connector_type="CCS",
            max_power_kw=Decimal("150.0"),
            last_check_in_at=timezone.now(),
        )
        items = {item["chargestation"]: item for item in self.listed()}
        self.assertEqual(
            items["CP-100"],
            {
                "chargestation": "CP-100",
                "connector": "2",
                "name": "Harbour Street",
                "connector_type": "CCS",
                "max_power_kw": 150.0,
                "status": "online",
                "rate": str(self.rate.pk),
            },
        )
        # Set up without a type, power or check-in.
        self.assertEqual(
            {key: items["CP-001"][key] for key in ("name", "status")},
            {"name": "CP-001", "status": "offline"},
        )
        self.assertIsNone(items["CP-001"]["connector_type"])
        self.assertIsNone(items["CP-001"]["max_power_kw"])

    def test_statuses_are_the_portals(self) -> None:
        now = timezone.now()
        Charger.objects.update(last_check_in_at=now)
        TransactionSyncStateFactory(charger=Charger.objects.get(charge_box_id="CP-001"))
        ReservationFactory(
            user=self.bob,
            charger=Charger.objects.get(charge_box_id="CP-002"),
            starts_at=now - timedelta(minutes=5),
        )
        Charger.objects.filter(charge_box_id="CP-003").update(
            last_check_in_at=now - timedelta(hours=2)
        )
        statuses = {
            (item["chargestation"], item["connector"]): item["status"]
            for item in self.listed()
        }
        card = charger_list(customer=self.alice, now=timezone.now()).rows
        self.assertEqual(statuses, {where(row): row.status for row in card})
        self.assertEqual(
            set(statuses.values()), {"in_use", "reserved", "offline", "online"}
        )

    def test_the_rate_is_the_one_a_session_started_there_applies(self) -> None:
        fast = Rate.objects.create(name="Fast", currency="eur", energy_price=1)
        ChargerRate.objects.create(
            charger=Charger.objects.get(charge_box_id="CP-002"), rate=fast
        )
        rates = {item["chargestation"]: item["rate"] for item in self.listed()}
        self.assertEqual(rates["CP-002"], str(fast.pk))
        self.assertEqual(rates["CP-001"], str(self.rate.pk))
        self.standin.station_stop(42)  # frees CP-002
        for box, token in (("CP-001", self.alice_token), ("CP-002", self.bob_token)):
            with self.subTest(box=box):
                session = self.result(self.start(token, box=box), 201)
                self.assertEqual(session["rate"], rates[box])
        Rate.objects.filter(pk=self.rate.pk).update(is_default=False)
        rates = {item["chargestation"]: item["rate"] for item in self.listed()}
        self.assertEqual((rates["CP-001"], rates["CP-002"]), (None, str(fast.pk)))

    def test_the_cursor_walks_every_charger_once_in_the_portals_order(self) -> None:
        # Same names, so the chargeBoxId and the connector break ties; a name that
        # JSON escapes; names whose numbers sort as numbers.
        ChargerFactory(charge_box_id="CP-010", friendly_name="CP-004")
        ChargerFactory(friendly_name="Bay 12")
        ChargerFactory(friendly_name="Bay 4")
        ChargerFactory(friendly_name='Quai "Nord" à Sète')
        seen: list[tuple[str, str]] = []
        query = "?limit=2"
        while True:
            page = self.page(query, self.staff_token)
            self.assertLessEqual(len(page["items"]), 2)
            seen += [(i["chargestation"], i["connector"]) for i in page["items"]]
            if page["next_cursor"] is None:
                break
            query = f"?limit=2&cursor={page['next_cursor']}"
        self.assertEqual(seen, [where(charger) for charger in Charger.objects.all()])

    def test_a_cursor_this_api_did_not_give_is_422(self) -> None:
        def encoded(text: str) -> str:
            return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

        for cursor in (
            "zzz",
            encoded('["a", "b"]'),
            encoded('["a", "b", "1"]'),
            encoded('["a\\u0000", "b", 1]'),
            encoded('["\\ud800", "b", 1]'),
        ):
            with self.subTest(cursor=cursor):
                response = self.call("GET", f"/chargers?cursor={cursor}")
                self.assert_error(response, 422, "The cursor is not valid")
        response = self.call("GET", "/chargers?cursor=!!")
        self.assert_error(response, 422, "cursor: must be a next_cursor this API gave")

    def test_an_unknown_or_repeated_query_parameter_is_422(self) -> None:
        self.assert_error(
            self.call("GET", "/chargers?chargestation=CP-001"),
            422,
            "Unknown query parameter: chargestation. This endpoint takes cursor, "
            "limit.",
        )
        self.assert_error(
            self.call("GET", "/chargers?limit=1&limit=2"),
            422,
            "Query parameter given more than once: limit.",
        )
        self.assert_error(self.call("GET", "/chargers?limit=101"), 422, "limit")

    def test_it_needs_a_token(self) -> None:
        response = self.client.get("/api/v1/chargers")
        self.assert_error(response, 401, "Authorization: Bearer")
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')

    def test_a_page_takes_a_fixed_number_of_queries(self) -> None:
        now = timezone.now()
        for n in range(30):
            charger = ChargerFactory(last_check_in_at=now)
            ChargerRate.objects.create(charger=charger, rate=self.rate)
            if n % 3 == 0:
                TransactionSyncStateFactory(charger=charger)
        self.page(token=self.staff_token)  # warm up ContentType and similar caches
        # The token lookup, the chargers, their rates.
        for limit in (1, 100):
            with self.subTest(limit=limit), self.assertNumQueries(3):
                self.page(f"?limit={limit}", self.staff_token)
