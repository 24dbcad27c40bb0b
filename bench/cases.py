"""The benchmark cases: what each measures and how.

Server time is measured in-process: each request is handed to the production ASGI
handler as uvicorn would hand it (bench/asgi.py): the hop to the worker thread,
a database connection from the pool, the full middleware stack, URL resolving,
the view, its queries and template rendering, timed with `perf_counter`. That is
the server's own work without socket noise, the same span the load test reads
from `Server-Timing`, and it lets the Django admin baseline run the exact same
way in the same process against the same database. The SSE case is the
exception: it needs uvicorn, so it starts one as a child process.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Max
from django.test import override_settings
from django.utils import timezone

from bench.asgi import AsgiClient, session_key
from bench.report import Case, make_case
from polaris.handlers import SyncStackASGIHandler
from sessions_app import selectors
from sessions_app.forms import SessionFilters
from sessions_app.models import ApiToken
from sessions_app.services import api_token_create, api_token_revoke
from sync.models import Charger, SyncRun, TransactionSyncState, UserMapping
from sync.services.seeding import vacuum_seeded_tables

if TYPE_CHECKING:
    from sync.standin.testing import StandinProcess

Sample = Callable[[], Any]

TARGET_SESSIONS_MS = 50.0
TARGET_TAG_MS = 100.0
TARGET_STATS_MS = 10.0
TARGET_DASHBOARD_MS = 50.0
TARGET_API_MS = 50.0
TARGET_SYNC_MS = 3000.0
TARGET_SSE_MS = 500.0
# Seeding a fleet of hundreds of stations takes a while on a busy machine.
SYNC_STARTUP_S = 120.0


@dataclass
class Settings:
    requests: int
    warmup: int
    sync_active: int
    sync_runs: int
    sse_clients: int
    # Idle time before each timed request. Back to back, a request finds the CPU
    # caches still holding the last one's code and data; a server process that
    # answers one request every few hundred ms does not.
    pause_ms: float = 0.0


FULL = Settings(requests=30, warmup=5, sync_active=1000, sync_runs=3, sse_clients=1000)
QUICK = Settings(requests=10, warmup=1, sync_active=30, sync_runs=2, sse_clients=50)


@dataclass
class Fixture:
    """Who and what the cases request, chosen from the seeded data."""

    staff: Any
    customer: Any
    api_token: ApiToken
    api_token_raw: str
    tag_fragment: str
    month: tuple[str, str]
    tenth_page_cursor: str | None
    detail_id: int
    detail_pk: int
    notes: list[str] = field(default_factory=list)


def timed(call: Sample, settings: Settings) -> list[float]:
    """Milliseconds of `settings.requests` calls after `settings.warmup` ones,
    each after `settings.pause_ms` of idle time."""
    for _ in range(settings.warmup):
        call()
    samples = []
    for _ in range(settings.requests):
        time.sleep(settings.pause_ms / 1000)
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def get_ok(client: AsgiClient, url: str, **headers: str) -> Sample:
    def call() -> None:
        status = client.get(url, **headers).status
        if status != 200:
            raise RuntimeError(f"GET {url} answered {status}")

    return call


class NotEnoughData(Exception):
    """The database is too small for the console cases; the message says what to
    do."""


def release(fixture: Fixture) -> None:
    """Revoke the fixture's API token: a bench run leaves no way into the API."""
    api_token_revoke(token=fixture.api_token)


def prepare(now: Any) -> Fixture:
    """A staff user, the heaviest customer, a tag fragment and cursors; its API
    token is revoked by `release`. Raises NotEnoughData."""
    User = get_user_model()
    staff, _ = User.objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT m."userId" FROM transaction_sync_state AS t '
            'JOIN user_mappings AS m ON m."steveOcppIdTag" = t."ocppIdTag" '
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        )
        row = cursor.fetchone()
    if row is None:
        raise NotEnoughData(
            "No synced session belongs to a customer (no user mapping matches its "
            "idTag), so there is no customer dashboard to measure: seed the "
            "database first (`manage.py seed_scale`), or use --quick, which seeds a "
            "small database itself."
        )
    customer = User.objects.get(pk=row[0])
    api_token, raw_token = api_token_create(user=staff, name="bench")
    # A tag of an ordinary customer, fragment of its middle: a realistic search.
    ordinary = (
        UserMapping.objects.order_by("id")
        .values_list("steve_ocpp_id_tag", flat=True)
        .last()
    ) or "TAG"
    fragment = ordinary[-6:].lower()
    local = timezone.localtime(now).date()
    month_start = (local.replace(day=1) - timedelta(days=1)).replace(day=1)
    month_end = local.replace(day=1) - timedelta(days=1)
    page_cursor = None
    for _ in range(9):
        page = selectors.session_page(filters=SessionFilters(), cursor=page_cursor)
        page_cursor = page.next_cursor
        if page_cursor is None:
            api_token_revoke(token=api_token)
            raise NotEnoughData(
                "The database has fewer than ten pages of sessions, so there is no "
                "tenth load-more page to measure: seed it first (`manage.py "
                "seed_scale`), or use --quick, which seeds a small database itself."
            )
    detail = (
        TransactionSyncState.objects.completed()
        .order_by("-steve_transaction_id")
        .first()
    ) or TransactionSyncState.objects.order_by("-id").first()
    assert detail is not None  # ten pages of sessions were found above
    # The seeded fleet checked in when it was seeded, and in a running system the
    # charger probe keeps that fresh. Without it, an hour after seeding every
    # charger reads offline, and the dashboards would skip their cards' Start and
    # Reserve forms: the cheapest page, not the one drivers get.
    Charger.objects.exclude(last_check_in_at=None).update(last_check_in_at=now)
    return Fixture(
        staff=staff,
        customer=customer,
        api_token=api_token,
        api_token_raw=raw_token,
        tag_fragment=fragment,
        month=(month_start.isoformat(), month_end.isoformat()),
        tenth_page_cursor=page_cursor,
        detail_id=detail.steve_transaction_id,
        detail_pk=detail.pk,
    )


def console_cases(fixture: Fixture, settings: Settings) -> list[Case]:
    """Charging Sessions cases beside the stock admin changelist, detail, stats,
    portal dashboard and the API list."""
    handler = SyncStackASGIHandler()
    staff = AsgiClient.signed_in(handler, fixture.staff)
    month_from, month_to = fixture.month
    month = f"{month_from[:4]}", f"{int(month_from[5:7])}"
    page10 = (
        f"/admin/sessions/?cursor={fixture.tenth_page_cursor}"
        if fixture.tenth_page_cursor
        else "/admin/sessions/"
    )
    admin = "/bench-admin/sync/transactionsyncstate/"
    pairs = [
        ("sessions: unfiltered", "/admin/sessions/", admin, TARGET_SESSIONS_MS, {}),
        (
            "sessions: status=active",
            "/admin/sessions/?status=active",
            f"{admin}?is_finalized__exact=0",
            TARGET_SESSIONS_MS,
            {},
        ),
        (
            "sessions: one month",
            f"/admin/sessions/?from={month_from}&to={month_to}",
            f"{admin}?updated_at__year={month[0]}&updated_at__month={month[1]}",
            TARGET_SESSIONS_MS,
            {},
        ),
        (
            "sessions: tag substring",
            f"/admin/sessions/?tag={fixture.tag_fragment}",
            f"{admin}?q={fixture.tag_fragment}",
            TARGET_TAG_MS,
            {},
        ),
        (
            "sessions: 10th load-more page",
            page10,
            f"{admin}?p=10",
            TARGET_SESSIONS_MS,
            {"HX-Request": "true"},
        ),
        (
            "transaction detail",
            f"/admin/sessions/{fixture.detail_id}/",
            f"{admin}{fixture.detail_pk}/change/",
            TARGET_SESSIONS_MS,
            {},
        ),
    ]
    cases = []
    # bench/asgi.py's requests name the host "testserver", as the test Client's do.
    hosts = [*django_settings.ALLOWED_HOSTS, "testserver"]
    with override_settings(ROOT_URLCONF="bench.admin_baseline", ALLOWED_HOSTS=hosts):
        for name, url, baseline_url, target, headers in pairs:
            samples = timed(get_ok(staff, url, **headers), settings)
            baseline = timed(get_ok(staff, baseline_url), settings)
            cases.append(make_case(name, samples, target_ms=target, baseline=baseline))
        cases.append(
            make_case(
                "stat strip",
                timed(lambda: selectors.session_stats(now=timezone.now()), settings),
                target_ms=TARGET_STATS_MS,
            )
        )
        customer = AsgiClient.signed_in(handler, fixture.customer)
        for period in ("current", "year"):
            cases.append(
                make_case(
                    f"dashboard: heaviest customer, period={period}",
                    timed(get_ok(customer, f"/?period={period}"), settings),
                    target_ms=TARGET_DASHBOARD_MS,
                )
            )
        api = AsgiClient(handler)
        cases.append(
            make_case(
                "GET /api/v1/sessions",
                timed(
                    get_ok(
                        api,
                        "/api/v1/sessions",
                        Authorization=f"Bearer {fixture.api_token_raw}",
                    ),
                    settings,
                ),
                target_ms=TARGET_API_MS,
            )
        )
    return cases


class _Rollback(Exception):
    pass


def sync_case(settings: Settings) -> Case:
    """One sync run with `sync_active` active transactions against the stand-in.

    The stand-in hands out pks after the seeded ones: a seeded row under one of
    its pks is another charge, which the sync leaves alone. Every run happens
    inside a transaction that is rolled back, so the seeded history stays as it
    was. The first run (it creates the rows) is the warm-up; the measured runs
    each follow a minute of charging, so every active transaction has new meter
    values to write, and each must have written them all.
    """
    from sync.client import SteveClient
    from sync.services.runs import sync_run_transactions
    from sync.standin.testing import StandinProcess

    # Stations have one or two connectors (1.5 on average), and some connectors
    # are charging already: enough stations that `sync_active` fit.
    boxes = settings.sync_active * 7 // 10 + 2
    samples: list[float] = []
    seeded = TransactionSyncState.objects.aggregate(last=Max("steve_transaction_id"))
    with StandinProcess(
        fleet_size=boxes,
        seed=7,
        scenarios=False,
        startup_timeout=SYNC_STARTUP_S,
        first_transaction_pk=(seeded["last"] or 0) + 1,
    ) as steve:
        _start_transactions(steve, settings.sync_active)
        steve.tick(60)
        client = SteveClient(
            base_url=steve.base_url, username=steve.username, password=steve.password
        )
        try:
            with transaction.atomic():
                sync_run_transactions(trigger="command", client=client)
                for _ in range(settings.sync_runs):
                    steve.tick(60)
                    began = time.perf_counter()
                    run = sync_run_transactions(trigger="command", client=client)
                    samples.append((time.perf_counter() - began) * 1000)
                    _check_sync_wrote_all(run, settings.sync_active)
                raise _Rollback
        except _Rollback:
            pass
        finally:
            client.close()
    # The rolled-back rows stay in the tables and their indexes until a vacuum,
    # which this database's server may never run: a later bench on it would time
    # pages reading past them (the chargers card took 1.5 times as long).
    vacuum_seeded_tables(analyze=False)
    name = f"sync run, {settings.sync_active} active transactions"
    return make_case(name, samples, target_ms=TARGET_SYNC_MS)


def _check_sync_wrote_all(run: SyncRun, active: int) -> None:
    """A run that skipped or failed some transactions would time less work."""
    if run.status != run.Status.SUCCEEDED or run.updated_count < active:
        raise RuntimeError(
            f"The bench's sync run {run.status} and updated {run.updated_count} of "
            f"{active} active transactions: {run.error or 'no error recorded'}"
        )


def _start_transactions(steve: "StandinProcess", total: int) -> None:
    """Start sessions on idle connectors of online stations until SteVe lists
    exactly `total` active transactions."""
    state = steve.state()
    active = sum(1 for t in state["transactions"] if t["active"])
    idle = [
        (box["chargeBoxId"], connector["connectorId"])
        for box in state["chargeBoxes"]
        if box["online"]
        for connector in box["connectors"]
        if not connector["transactionPk"]
    ]
    missing = total - active
    if missing < 0 or missing > len(idle):
        raise RuntimeError(
            f"The stand-in fleet has {active} active transactions and {len(idle)} "
            f"idle connectors; it cannot have exactly {total} active."
        )
    for number, (box, connector) in enumerate(idle[:missing]):
        steve.add_transaction(box, connector, f"BENCH{number:05d}")


def sse_case(fixture: Fixture, settings: Settings) -> tuple[Case, dict[str, Any]]:
    from bench.sse import sse_load

    cookie = session_key(fixture.staff)
    result = sse_load(clients=settings.sse_clients, session_cookie=cookie)
    case = make_case(
        f"SSE: {settings.sse_clients} clients, one event delivered",
        result.latencies_ms,
        target_ms=TARGET_SSE_MS,
    )
    if result.connected < result.clients:
        case.meets_target = False
    return case, {
        "sse_clients": result.clients,
        "sse_connected": result.connected,
        "sse_rss_mb": result.rss_mb,
    }


def cpu_reference_ms() -> float:
    """Best of three timings of a fixed pure-Python loop: the same code takes
    several times longer on one VM than on another, so a run's figures are read
    beside this one when runs from different machines are compared."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for number in range(2_000_000):
            total += number
        best = min(best, (time.perf_counter() - began) * 1000)
    return round(best, 1)


def scale() -> dict[str, Any]:
    """Row counts of the tables the cases read (estimates for the big ones)."""
    counts: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in [
            "transaction_sync_state",
            "synced_transaction_events",
            "user_mappings",
            "chargers",
            "sync_runs",
        ]:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
        cursor.execute(
            'SELECT count(*) FROM transaction_sync_state WHERE NOT "isFinalized"'
        )
        counts["active_sessions"] = cursor.fetchone()[0]
    return counts
