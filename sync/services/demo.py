"""Deterministic demo data for `manage.py demo`: logins, mappings, charger names.

Idempotent: running it again leaves existing rows as they are, so a demo that was
stopped and started again keeps what people changed in it. Except for what came from
the stand-in: it is a new SteVe on every start, numbering its transactions from 1
again, so what the last demo synced from it is cleared (`demo_history_clear`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from portal.models import Plan, Reservation, Subscription
from sessions_app.models import ApiSession, Rate
from sync.locks import DEMO_LOCK
from sync.models import Charger, TransactionSyncState, UserMapping
from sync.services.mappings import user_mapping_create

DEMO_APPLICATION = "polaris demo"
LOAD_TEST_APPLICATION = "polaris load test"

STAFF_USERNAME = "admin"
STAFF_PASSWORD = "admin"
DRIVER_PASSWORD = "driver"

# driver email → (label, stand-in idTags). The stand-in's default fleet uses these tags.
DEMO_DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "driver1@example.com": ("Dana Driver", ("TAG-0001", "TAG-0002")),
    "driver2@example.com": ("Eli Electric", ("TAG-0003",)),
    "driver3@example.com": ("Fay Fleet", ("TAG-0005", "TAG-0006")),
}

# Friendly names and hardware for the stand-in's charge boxes, in fleet order.
# None is below 22 kW, the most a stand-in station draws: a target's first check
# projects the listed maximum (sessions_app.charging.targets).
DEMO_SITES = [
    ("Harbour Street", "CCS2", Decimal("50")),
    ("Market Hall", "Type 2", Decimal("22")),
    ("Station Square", "CCS2", Decimal("150")),
    ("Library Lane", "Type 2", Decimal("22")),
    ("Riverside Depot", "CHAdeMO", Decimal("50")),
    ("Old Mill Car Park", "Type 2", Decimal("22")),
    ("Airport P3", "CCS2", Decimal("300")),
    ("Bakery Corner", "Type 2", Decimal("22")),
]


class DemoRunning(Exception):
    """Another demo, or a load test, holds the database; `where` names the demo's
    web address if known."""

    def __init__(self, where: str, *, by_load_test: bool = False) -> None:
        super().__init__(where)
        self.where = where
        self.by_load_test = by_load_test


@contextmanager
def demo_lock(*, port: int | None) -> Iterator[None]:
    """Hold the database for one demo (on `port`), or a load test (no port),
    while the block runs.

    A second demo on the same database would start a second beat and a second
    stand-in whose fleet shares the first one's transaction ids, and both would
    sync into the same tables; a load test syncs into them too and restores them
    at its end. The lock is a session lock on a connection of its own, so
    Postgres frees it when the holder exits, however it exits. Raises
    DemoRunning, and psycopg.OperationalError when the database cannot be reached.
    The database is Django's (a test process's is its test database).
    """
    params = {
        **connection.get_connection_params(),
        "application_name": (
            LOAD_TEST_APPLICATION
            if port is None
            else f"{DEMO_APPLICATION} on port {port}"
        ),
    }
    with psycopg.connect(autocommit=True, connect_timeout=10, **params) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [DEMO_LOCK]).fetchone()
        if not (row and row[0]):
            holder = conn.execute(
                """
                SELECT a.application_name
                  FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.classid = 0 AND l.objid = %s
                   AND l.database = (SELECT oid FROM pg_database
                                      WHERE datname = current_database())
                """,
                [DEMO_LOCK],
            ).fetchone()
            name = holder[0] if holder else ""
            other_port = name.removeprefix(f"{DEMO_APPLICATION} on port ")
            raise DemoRunning(
                f"http://127.0.0.1:{other_port}/" if other_port.isdigit() else "",
                by_load_test=name == LOAD_TEST_APPLICATION,
            )
        yield


# What only the stand-in that the last demo ran knows of: its transactions (and the
# events and runs that read them), and the sessions and reservations it acted on.
STANDIN_HISTORY_TABLES = [
    "synced_transaction_events",
    "transaction_sync_state",
    "sync_runs",
    "api_sessions",
    "reservations",
]


@dataclass(frozen=True)
class StandinHistory:
    sessions: int
    api_sessions: int
    reservations: int

    def __bool__(self) -> bool:
        return bool(self.sessions or self.api_sessions or self.reservations)


def demo_history() -> StandinHistory:
    """What the database holds that a stand-in synced or acted on."""
    return StandinHistory(
        sessions=TransactionSyncState.objects.count(),
        api_sessions=ApiSession.objects.count(),
        reservations=Reservation.objects.count(),
    )


def synced_session_count() -> int:
    """How many synced sessions the database holds, asked before migrating: 0
    when their table does not exist yet."""
    table = TransactionSyncState._meta.db_table
    if table not in connection.introspection.table_names():
        return 0
    return TransactionSyncState.objects.count()


def demo_history_clear() -> StandinHistory:
    """Empty the stand-in's history (the rollups empty with it, by their triggers);
    accounts, mappings, chargers, rates and plans stay. Returns what was cleared."""
    with transaction.atomic():
        history = demo_history()
        with connection.cursor() as cursor:
            tables = ", ".join(STANDIN_HISTORY_TABLES)
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    return history


@transaction.atomic
def demo_accounts_create() -> None:
    """Create the staff login and the mapped demo drivers (once)."""
    User = get_user_model()
    if not User.objects.filter(username=STAFF_USERNAME).exists():
        User.objects.create_superuser(
            STAFF_USERNAME, "admin@example.com", STAFF_PASSWORD
        )
    for email, (label, tags) in DEMO_DRIVERS.items():
        driver = User.objects.filter(username=email).first()
        if driver is None:
            first, last = label.split(" ", 1)
            driver = User.objects.create_user(
                email, email, DRIVER_PASSWORD, first_name=first, last_name=last
            )
        for tag in tags:
            if not UserMapping.objects.filter(steve_ocpp_id_tag=tag).exists():
                user_mapping_create(
                    actor=None,
                    steve_ocpp_id_tag=tag,
                    user=driver,
                    label=label,
                    source="demo",
                )


@transaction.atomic
def demo_billing_create() -> None:
    """A default rate, and a plan for driver1 so the portal's plan card has content."""
    Rate.objects.get_or_create(
        is_default=True,
        defaults={
            "name": "Standard",
            "currency": "eur",
            "flat_fee": Decimal("0.50"),
            "energy_price": Decimal("0.39"),
            "time_price": Decimal("0"),
            "tax_percent": Decimal("19"),
        },
    )
    plan, _ = Plan.objects.get_or_create(
        name="Home 200",
        defaults={"currency": "EUR", "monthly_fee": Decimal("29"),
                  "included_kwh": Decimal("200")},
    )  # fmt: skip
    driver = get_user_model().objects.get(username="driver1@example.com")
    Subscription.objects.get_or_create(
        user=driver,
        defaults={"plan": plan, "anchor_day": 1, "started_on": date(2026, 1, 1)},
    )


@transaction.atomic
def demo_chargers_name() -> int:
    """Give chargers the sync created (named after their chargeBoxId) a demo name."""
    boxes = sorted(set(Charger.objects.values_list("charge_box_id", flat=True)))
    renamed = 0
    for index, box in enumerate(boxes):
        site, connector_type, power = DEMO_SITES[index % len(DEMO_SITES)]
        renamed += Charger.objects.filter(charge_box_id=box, friendly_name=box).update(
            friendly_name=site, connector_type=connector_type, max_power_kw=power
        )
    return renamed
