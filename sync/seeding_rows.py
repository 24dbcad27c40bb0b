"""COPY lines of the scale seed's transactions and events, one slice at a time.

Generating ten million event lines is most of `seed_scale`'s work, so slices are
made in worker processes while the parent streams finished ones into COPY. This
module imports nothing from Django: a spawned worker starts in a fraction of a
second and needs no settings. Each slice draws from its own random generator,
seeded from the seed and the slice's first transaction, so the rows depend on
the seed alone, never on how many workers made them or in which order.
"""

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

ACTIVE_SESSIONS = 300
HEAVY_CUSTOMERS = 5
HEAVY_SHARE = 0.005  # each heavy customer owns 0.5% of all sessions
HISTORY_DAYS = 365

_STOP_REASONS = ["Local", "EVDisconnected", "Remote", "Local", "EVDisconnected"]
# The "34:56+00" tails of every second in an hour, and the ".123" kWh fractions:
# looking a piece up is much cheaper than formatting it ten million times.
_WITHIN_HOUR = [f"{m:02d}:{s:02d}+00" for m in range(60) for s in range(60)]
_KWH_FRACTION = [f".{wh:03d}" for wh in range(1000)]


@dataclass(frozen=True)
class TransactionPlan:
    """What every slice needs to know; pickled once into each worker."""

    seed: int
    count: int
    per_tx: int
    first_transaction: int
    first_steve_transaction: int
    first_event: int
    first_run: int
    run_count: int
    now_ts: int
    tags: list[str]
    heavy_tags: list[str]
    chargers: list[tuple[int, str, int]]


@dataclass(frozen=True)
class Slice:
    """COPY text (UTF-8) of `count` transactions and their events."""

    first: int
    count: int
    transactions: bytes
    events: bytes
    event_count: int
    active: int


_plan: TransactionPlan | None = None


def charging_count(transactions: int, connectors: int) -> int:
    """How many of the seeded sessions are still charging: ACTIVE_SESSIONS, one
    per connector at most (a small fleet cannot run 300 charges at once)."""
    return min(ACTIVE_SESSIONS, transactions, connectors)


def spread_stride(size: int, picks: int) -> int:
    """A step that visits `size` slots each once (coprime with `size`) and spreads
    `picks` of them across all of it: about `size / picks` apart."""
    stride = max(1, size // max(picks, 1))
    while math.gcd(stride, size) != 1:
        stride += 1
    return stride


def use_plan(plan: TransactionPlan) -> None:
    """Worker initializer: keep the plan for every slice this process makes."""
    global _plan
    _plan = plan


def make_planned_slice(first: int, count: int) -> Slice:
    """`make_slice` with the plan a worker was given (the plan is pickled once per
    worker instead of once per slice)."""
    assert _plan is not None, "the worker was started without use_plan()"
    return make_slice(_plan, first, count)


def make_slice(plan: TransactionPlan, first: int, count: int) -> Slice:
    """Transactions `first` … `first + count - 1` (0-based within the plan) with
    their events. Starts are spread evenly over the year, oldest first (SteVe's pk
    order); the newest `charging_count` are still charging, one per connector."""
    rng = random.Random(f"{plan.seed}:{first}")
    now_ts = plan.now_ts
    span = HISTORY_DAYS * 86400
    first_ts = now_ts - span
    tags, heavy, chargers = plan.tags, plan.heavy_tags, plan.chargers
    heavy_share = HEAVY_SHARE * HEAVY_CUSTOMERS if heavy else 0.0
    n_chargers = len(chargers)
    charging = charging_count(plan.count, n_chargers)
    active_from = plan.count - charging
    active_stride = spread_stride(n_chargers, charging)
    per_tx = plan.per_tx
    steps = per_tx - 1
    finished_kinds = ["started", *["progress"] * (steps - 1), "stopped"]
    active_kinds = ["started", *["progress"] * steps]
    run_first = plan.first_run + 1
    run_last = plan.first_run + plan.run_count - 1
    run_base_ts = now_ts - (HISTORY_DAYS * 24 + 1) * 3600
    # Every timestamp falls between the first start and a few seconds after now.
    base_hour = first_ts // 3600 - 1
    hours = [
        datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d %H:")
        for hour in range(base_hour, now_ts // 3600 + 2)
    ]
    within = _WITHIN_HOUR
    fraction = _KWH_FRACTION

    def iso(ts: int) -> str:
        return hours[ts // 3600 - base_hour] + within[ts % 3600]

    tx_lines: list[str] = []
    event_lines: list[str] = []
    add_event = event_lines.append
    event_id = plan.first_event + first * per_tx
    active = 0
    for n in range(first, first + count):
        pk = plan.first_transaction + n
        is_active = n >= active_from
        if is_active:
            # Still charging: started within the last 3 hours, on its own connector,
            # spread over the fleet as a day's charges are (not the first 300
            # chargers in a row, which would fill the first page of every list).
            start = int(now_ts - rng.uniform(600, 3 * 3600))
            charger = chargers[(n - active_from) * active_stride % n_chargers]
            duration: float = now_ts - 60 - start
        else:
            start = int(first_ts + (n / max(1, active_from)) * (span - 4 * 3600))
            start += rng.randint(0, 59)
            charger = chargers[rng.randrange(n_chargers)]
            duration = rng.uniform(1800, 4 * 3600)
        if heavy and rng.random() < heavy_share:
            tag = heavy[rng.randrange(len(heavy))]
        else:
            tag = tags[rng.randrange(len(tags))]
        energy_wh = int(rng.uniform(3, 60) * 1000 * min(1.0, duration / 7200 + 0.3))
        meter_start = rng.randint(0, 5_000_000)
        step = duration / steps
        kinds = active_kinds if is_active else finished_kinds
        of_pk = f"\t{pk}\t"
        of_tag = f"\t{tag}\t"
        last_meter = meter_start
        reading_ts = start
        for i in range(per_tx):
            reading_ts = start + int(step * i)
            meter = meter_start + (energy_wh * i) // steps
            delta = meter - last_meter
            last_meter = meter
            run = run_first + (reading_ts - run_base_ts) // 3600
            if run > run_last:
                run = run_last
            synced_ts = reading_ts + 5
            # iso() written out: this line runs ten million times.
            add_event(
                f"{event_id}{of_pk}{run}\t{kinds[i]}\t{meter}\t"
                f"{hours[reading_ts // 3600 - base_hour]}{within[reading_ts % 3600]}"
                f"\t{delta // 1000}{fraction[delta % 1000]}{of_tag}"
                f"{hours[synced_ts // 3600 - base_hour]}{within[synced_ts % 3600]}\n"
            )
            event_id += 1
        charger_pk, box, connector = charger
        steve_pk = plan.first_steve_transaction + n
        kwh = f"{energy_wh // 1000}{fraction[energy_wh % 1000]}"
        updated = iso(reading_ts + 5)
        if is_active:
            active += 1
            stopped, finalized, reason, actor = r"\N", "f", "", ""
        else:
            stopped, finalized = iso(reading_ts), "t"
            reason = _STOP_REASONS[n % len(_STOP_REASONS)]
            actor = "station"
        tx_lines.append(
            f"{pk}\t{steve_pk}\t{box}\t{connector}\t{charger_pk}{of_tag}"
            f"{iso(start)}\t{stopped}\t{meter_start}\t"
            f"{meter_start + energy_wh}\t{iso(reading_ts)}\t{kwh}\t{finalized}\t"
            f"{reason}\t{actor}\tf\tf\tf\tf\t{updated}\t{iso(start + 1)}\t{updated}\n"
        )
    return Slice(
        first=first,
        count=count,
        transactions="".join(tx_lines).encode(),
        events="".join(event_lines).encode(),
        event_count=count * per_tx,
        active=active,
    )
