"""Pricing: a rate plus a session's energy and duration give its cost.

Pure functions on plain values, no database: the Sessions API (running estimate and
final cost) and the portal's estimate call the same `session_cost`, so the two can
never disagree.

Money is kept as `Decimal` to 4 places per line (sub-cent prices such as 0.2995/kWh
exist); the amount is the sum of the lines' totals, so the breakdown always adds up.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

MONEY = Decimal("0.0001")
KWH = Decimal("0.001")
HOURS = Decimal("0.0001")
SECONDS_PER_HOUR = Decimal(3600)


class PricedRate(Protocol):
    """What pricing needs of a rate: `sessions_app.models.Rate` and `RateTerms`."""

    @property
    def name(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def flat_fee(self) -> Decimal: ...
    @property
    def energy_price(self) -> Decimal: ...
    @property
    def time_price(self) -> Decimal: ...
    @property
    def tax_percent(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class RateTerms:
    """A rate's prices frozen at one moment (what a session was sold at)."""

    name: str
    currency: str
    flat_fee: Decimal
    energy_price: Decimal
    time_price: Decimal
    tax_percent: Decimal

    @classmethod
    def of(cls, rate: PricedRate) -> "RateTerms":
        return cls(
            name=rate.name,
            currency=rate.currency,
            flat_fee=Decimal(rate.flat_fee),
            energy_price=Decimal(rate.energy_price),
            time_price=Decimal(rate.time_price),
            tax_percent=Decimal(rate.tax_percent),
        )

    def as_json(self) -> dict[str, str]:
        """Decimals as strings, so a JSON round trip loses no precision."""
        return {
            "name": self.name,
            "currency": self.currency,
            "flat_fee": str(self.flat_fee),
            "energy_price": str(self.energy_price),
            "time_price": str(self.time_price),
            "tax_percent": str(self.tax_percent),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> "RateTerms":
        """The inverse of `as_json`. Raises KeyError or decimal errors if malformed."""
        return cls(
            name=data["name"],
            currency=data["currency"],
            flat_fee=Decimal(data["flat_fee"]),
            energy_price=Decimal(data["energy_price"]),
            time_price=Decimal(data["time_price"]),
            tax_percent=Decimal(data["tax_percent"]),
        )


@dataclass(frozen=True, slots=True)
class CostLine:
    """One line of the breakdown: type FLAT, ENERGY or TIME."""

    type: str
    start: datetime
    end: datetime
    rate_name: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    before_tax: Decimal
    tax_percent: Decimal
    total_tax: Decimal
    total_cost: Decimal


@dataclass(frozen=True, slots=True)
class Cost:
    """A session's cost: `amount` is the sum of the breakdown's `total_cost`."""

    amount: Decimal
    currency: str
    breakdown: tuple[CostLine, ...]


def session_cost(
    *, rate: PricedRate, kwh: Decimal, started_at: datetime, ended_at: datetime
) -> Cost:
    """Price a session of `kwh` from `started_at` to `ended_at` at `rate`.

    Returns a `Cost` with one line per component the rate charges for (a zero price
    adds no line). Negative energy or a stop before the start count as zero.
    """
    energy = max(Decimal(kwh), Decimal(0)).quantize(KWH, rounding=ROUND_HALF_UP)
    seconds = max((ended_at - started_at).total_seconds(), 0.0)
    hours = (Decimal(str(seconds)) / SECONDS_PER_HOUR).quantize(
        HOURS, rounding=ROUND_HALF_UP
    )
    components = (
        ("FLAT", Decimal(1), "session", Decimal(rate.flat_fee)),
        ("ENERGY", energy, "kWh", Decimal(rate.energy_price)),
        ("TIME", hours, "h", Decimal(rate.time_price)),
    )
    lines = tuple(
        _line(rate, kind, quantity, unit, price, started_at, ended_at)
        for kind, quantity, unit, price in components
        if price > 0
    )
    return Cost(
        amount=sum((line.total_cost for line in lines), Decimal("0.0000")),
        currency=rate.currency,
        breakdown=lines,
    )


def _line(
    rate: PricedRate,
    kind: str,
    quantity: Decimal,
    unit: str,
    unit_price: Decimal,
    start: datetime,
    end: datetime,
) -> CostLine:
    before_tax = _money(quantity * unit_price)
    tax_percent = Decimal(rate.tax_percent)
    total_tax = _money(before_tax * tax_percent / 100)
    return CostLine(
        type=kind,
        start=start,
        end=max(end, start),
        rate_name=rate.name,
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
        before_tax=before_tax,
        tax_percent=tax_percent,
        total_tax=total_tax,
        total_cost=before_tax + total_tax,
    )


def _money(value: Decimal) -> Decimal:
    return value.quantize(MONEY, rounding=ROUND_HALF_UP)
