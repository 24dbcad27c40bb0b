"""`session_cost`: a rate plus energy and time give the cost and its breakdown."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase

from sessions_app.models import Rate
from sessions_app.pricing import RateTerms, session_cost

START = datetime(2022, 6, 21, 13, 4, tzinfo=UTC)


def rate(**prices: str) -> Rate:
    """An unsaved rate (pricing needs no database)."""
    fields = {
        "flat_fee": "0",
        "energy_price": "0",
        "time_price": "0",
        "tax_percent": "0",
        **prices,
    }
    return Rate(
        name="Standard",
        currency="usd",
        **{key: Decimal(value) for key, value in fields.items()},
    )


class SessionCostTests(SimpleTestCase):
    def test_it_matches_the_seed_example(self) -> None:
        # 1.96 kWh at 0.30 with no tax: 0.588 (the seed's session object).
        cost = session_cost(
            rate=rate(energy_price="0.30"),
            kwh=Decimal("1.96"),
            started_at=START,
            ended_at=START + timedelta(seconds=2281),
        )
        self.assertEqual(cost.amount, Decimal("0.5880"))
        self.assertEqual(cost.currency, "usd")
        (line,) = cost.breakdown
        self.assertEqual(
            (line.type, line.quantity, line.unit, line.unit_price, line.before_tax),
            ("ENERGY", Decimal("1.960"), "kWh", Decimal("0.30"), Decimal("0.5880")),
        )
        self.assertEqual((line.total_tax, line.total_cost), (0, Decimal("0.5880")))
        self.assertEqual(
            (line.start, line.end), (START, START + timedelta(seconds=2281))
        )

    def test_flat_energy_and_time_with_tax(self) -> None:
        cost = session_cost(
            rate=rate(
                flat_fee="1.00",
                energy_price="0.25",
                time_price="2.00",
                tax_percent="19",
            ),
            kwh=Decimal("10"),
            started_at=START,
            ended_at=START + timedelta(minutes=90),
        )
        lines = {line.type: line for line in cost.breakdown}
        self.assertEqual(list(lines), ["FLAT", "ENERGY", "TIME"])
        self.assertEqual(lines["FLAT"].total_cost, Decimal("1.1900"))
        self.assertEqual(lines["ENERGY"].before_tax, Decimal("2.5000"))
        self.assertEqual(lines["ENERGY"].total_tax, Decimal("0.4750"))
        self.assertEqual(lines["TIME"].quantity, Decimal("1.5000"))
        self.assertEqual(lines["TIME"].unit, "h")
        self.assertEqual(lines["TIME"].total_cost, Decimal("3.5700"))
        self.assertEqual(cost.amount, Decimal("7.7350"))
        self.assertEqual(cost.amount, sum(line.total_cost for line in cost.breakdown))

    def test_money_halfway_between_two_ten_thousandths_rounds_up(self) -> None:
        # 0.001 kWh at 0.25 is 0.00025: half up, as a till rounds, not to even.
        cost = session_cost(
            rate=rate(energy_price="0.25"),
            kwh=Decimal("0.001"),
            started_at=START,
            ended_at=START + timedelta(minutes=1),
        )
        self.assertEqual(cost.amount, Decimal("0.0003"))

    def test_a_free_rate_costs_nothing(self) -> None:
        cost = session_cost(
            rate=rate(), kwh=Decimal("5"), started_at=START, ended_at=START
        )
        self.assertEqual((cost.amount, cost.breakdown), (Decimal(0), ()))

    def test_negative_energy_and_a_stop_before_the_start_count_as_zero(self) -> None:
        cost = session_cost(
            rate=rate(energy_price="0.30", time_price="1"),
            kwh=Decimal("-2"),
            started_at=START,
            ended_at=START - timedelta(hours=1),
        )
        self.assertEqual(cost.amount, 0)
        self.assertTrue(all(line.end == START for line in cost.breakdown))

    def test_frozen_terms_survive_json_and_price_the_same(self) -> None:
        live = rate(flat_fee="0.5", energy_price="0.2995", tax_percent="7.7")
        terms = RateTerms.from_json(RateTerms.of(live).as_json())
        args = {"kwh": Decimal("3.333"), "started_at": START, "ended_at": START}
        self.assertEqual(
            session_cost(rate=terms, **args), session_cost(rate=live, **args)
        )


class RateTaxTests(SimpleTestCase):
    def test_a_rate_takes_only_a_whole_tax_percent(self) -> None:
        # The seed's cost breakdown gives tax as an integer percentage.
        rate(tax_percent="19").clean()
        with self.assertRaisesMessage(ValidationError, "whole percent"):
            rate(tax_percent="7.7").clean()
