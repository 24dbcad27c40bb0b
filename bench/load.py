"""Load test: simulated staff and drivers browse a real uvicorn while the sync runs.

Everything runs as it does in production, on loopback: uvicorn (child process), a
real Celery worker (child) running `sync.tasks.sync_run_transactions` every
`sync_interval` seconds against the SteVe stand-in (child), Postgres and Redis.
The users are coroutines of one asyncio process with aiohttp, each with its own
signed-in session (a real `django_session` row made by `Client.force_login`, see
`bench.asgi.session_key`: signing in through the form would mostly measure the
password hasher). They think 5 to 15 s between requests, as people reading a
page do; some keep the page's SSE
stream open the whole time, reconnecting when the server ends it, as EventSource
does.

The beat is this process, not `celery beat`: it enqueues the same task with the same
`expires` as the beat schedule in polaris/celery.py, but on a queue of its own. A
`celery beat` sends to the shared default queue, where any other worker on the same
Redis (a demo, a parallel test run) would take the runs.

The sync must not touch the seeded history. The stand-in numbers its transactions
from 1, which would land on seeded rows, so it starts numbering above the database's
highest SteVe pk (`--first-transaction-pk`). The sync also closes the seeded
open sessions, which the stand-in does not know, as "deleted in SteVe"; so the load
test snapshots every row a run may change and, at the end, deletes what the runs
created (transactions above the pk, their events, runs, chargers) and restores the
snapshot. Session counts and the energy rollups follow through their triggers.
"""

import asyncio
import logging
import os
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from html import unescape
from typing import Any

import aiohttp
import psutil
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from bench.asgi import session_key
from bench.report import cell, percentile, text_table, verdict
from polaris.testing import (
    CeleryWorker,
    ChildProcess,
    UvicornServer,
    child_environment,
    wait_for_other_connections_to_close,
)
from polaris.timing import server_ms
from sync.models import (
    Charger,
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
    UserMapping,
)
from sync.standin.testing import StandinProcess

logger = logging.getLogger(__name__)

STAFF_USERNAME = "loadtest-staff"
HEAVY_CUSTOMERS = 5
REQUEST_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 1.0
PROGRESS_EVERY_S = 30.0
SSE_RETRY_S = 1.0
ERROR_SAMPLES = 20
# The kind of an SSE stream's opening request: not a page.
SSE_CONNECT = "SSE: connect"

# Page kinds, and the benchmark case (bench/cases.py) each is compared with.
BENCH_CASES = {
    "sessions: unfiltered": "sessions: unfiltered",
    "sessions: status=active": "sessions: status=active",
    "sessions: one month": "sessions: one month",
    "sessions: tag substring": "sessions: tag substring",
    "sessions: load more": "sessions: 10th load-more page",
    "transaction detail": "transaction detail",
    "sync runs": None,
    "dashboard: period=current": "dashboard: heaviest customer, period=current",
    "dashboard: period=previous": None,
    "dashboard: period=year": "dashboard: heaviest customer, period=year",
    SSE_CONNECT: None,
}
STAFF_ACTIONS = [
    ("sessions: unfiltered", 25),
    ("sessions: status=active", 10),
    ("sessions: one month", 10),
    ("sessions: tag substring", 10),
    ("sessions: load more", 20),
    ("transaction detail", 15),
    ("sync runs", 10),
]
CUSTOMER_PERIODS = [("current", 50), ("previous", 25), ("year", 25)]
LOAD_MORE = re.compile(r'hx-get="(/admin/sessions/\?[^"]*cursor=[^"]*)"')
DETAIL = re.compile(r'href="/admin/sessions/(\d+)/"')

Say = Callable[[str], None]


@dataclass
class LoadOptions:
    users: int = 200
    duration: float = 600.0
    sync_interval: float = 10.0
    # Two per core: sync views hold the GIL, so with one worker per core a long
    # page holds up the short ones queued behind it in that process.
    web_workers: int = 2 * (os.cpu_count() or 1)
    fleet_size: int = 20
    staff_share: float = 0.25
    sse_share: float = 0.5
    think_min: float = 5.0
    think_max: float = 15.0
    seed: int = 1


# People and what they look at


@dataclass
class Person:
    kind: str  # "staff" or "customer"
    cookie: str
    holds_stream: bool
    label: str


@dataclass
class Fixture:
    people: list[Person]
    session_keys: list[str]
    tag_fragments: list[str]
    month: tuple[str, str]
    detail_ids: list[int]
    customers: int


def prepare_people(options: LoadOptions, rng: random.Random) -> Fixture:
    """Sign in one staff session per staff user and one per customer user; pick
    real mapped customers, the heaviest among them."""
    User = get_user_model()
    staff, _ = User.objects.get_or_create(
        username=STAFF_USERNAME, defaults={"is_staff": True}
    )
    n_staff = max(1, round(options.users * options.staff_share))
    n_customers = max(1, options.users - n_staff)
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT m."userId" FROM transaction_sync_state AS t '
            'JOIN user_mappings AS m ON m."steveOcppIdTag" = t."ocppIdTag" '
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT %s",
            [HEAVY_CUSTOMERS],
        )
        heavy = [row[0] for row in cursor.fetchall()]
    mapped = list(
        UserMapping.objects.filter(is_active=True, user__is_active=True)
        .exclude(user__is_staff=True)
        .values_list("user_id", flat=True)
        .distinct()
        .order_by("user_id")[:5000]
    )
    if not mapped:
        raise RuntimeError("No mapped customers in the database; run seed_scale.")
    others = [pk for pk in mapped if pk not in heavy]
    rng.shuffle(others)
    chosen = (heavy + others)[:n_customers]
    chosen = [chosen[i % len(chosen)] for i in range(n_customers)]
    users = {user.pk: user for user in User.objects.filter(pk__in=set(chosen))}
    people: list[Person] = []
    keys: list[str] = []
    for i in range(n_staff + n_customers):
        is_staff = i < n_staff
        user = staff if is_staff else users[chosen[i - n_staff]]
        key = session_key(user)
        keys.append(key)
        people.append(
            Person(
                kind="staff" if is_staff else "customer",
                cookie=key,
                holds_stream=False,
                label=f"{'staff' if is_staff else 'customer'}-{i}",
            )
        )
    for kind in ("staff", "customer"):
        group = [p for p in people if p.kind == kind]
        for person in group[: round(len(group) * options.sse_share)]:
            person.holds_stream = True
    tags = list(
        UserMapping.objects.order_by("?").values_list("steve_ocpp_id_tag", flat=True)[
            :20
        ]
    ) or ["TAG"]
    local = timezone.localtime().date()
    month_end = local.replace(day=1) - timedelta(days=1)
    month_start = month_end.replace(day=1)
    detail_ids = list(
        TransactionSyncState.objects.order_by("-steve_transaction_id").values_list(
            "steve_transaction_id", flat=True
        )[:500]
    )
    return Fixture(
        people=people,
        session_keys=keys,
        tag_fragments=[tag[-6:].lower() for tag in tags],
        month=(month_start.isoformat(), month_end.isoformat()),
        detail_ids=detail_ids,
        customers=len(set(chosen)),
    )


# Keeping the seeded history as it was


@dataclass
class Footprint:
    """What the sync may change, taken before the load starts."""

    first_pk: int
    run_floor: int
    event_floor: int
    charger_floor: int
    open_rows: list[Mapping[str, Any]]
    check_ins: dict[int, Any]


def take_footprint() -> Footprint:
    """Snapshot every row an incremental run may update: open sessions, manual
    stops still in their grace period, chargers' check-in times."""

    def top(model: Any, column: str = "id") -> int:
        return int(model.objects.aggregate(top=Max(column))["top"] or 0)

    open_rows: list[Mapping[str, Any]] = list(
        TransactionSyncState.objects.may_still_change(timezone.now()).values()
    )
    return Footprint(
        first_pk=top(TransactionSyncState, "steve_transaction_id") + 1,
        run_floor=top(SyncRun),
        event_floor=top(SyncedTransactionEvent),
        charger_floor=top(Charger),
        open_rows=open_rows,
        check_ins=dict(Charger.objects.values_list("id", "last_check_in_at")),
    )


def restore_footprint(footprint: Footprint) -> dict[str, int]:
    """Delete what the load test's sync runs wrote and put the snapshot back."""
    with transaction.atomic():
        events, _ = SyncedTransactionEvent.objects.filter(
            id__gt=footprint.event_floor
        ).delete()
        created, _ = TransactionSyncState.objects.filter(
            steve_transaction_id__gte=footprint.first_pk
        ).delete()
        runs, _ = SyncRun.objects.filter(id__gt=footprint.run_floor).delete()
        chargers, _ = Charger.objects.filter(id__gt=footprint.charger_floor).delete()
        rows = []
        fields = [
            f.attname
            for f in TransactionSyncState._meta.concrete_fields
            if not f.primary_key
        ]
        for values in footprint.open_rows:
            row = TransactionSyncState(**values)
            rows.append(row)
        # bulk_update skips auto_now, so updatedAt gets its snapshot value back.
        TransactionSyncState.objects.bulk_update(rows, fields, batch_size=500)
        for pk, check_in in footprint.check_ins.items():
            Charger.objects.filter(pk=pk).exclude(last_check_in_at=check_in).update(
                last_check_in_at=check_in
            )
    return {
        "events_deleted": events,
        "transactions_deleted": created,
        "runs_deleted": runs,
        "chargers_deleted": chargers,
        "rows_restored": len(rows),
    }


# Child processes


@dataclass
class Services:
    web: UvicornServer
    worker: CeleryWorker
    standin: StandinProcess
    channel_prefix: str


@contextmanager
def services(options: LoadOptions, first_pk: int) -> Iterator[Services]:
    """Stand-in, Celery worker and uvicorn, stopped in reverse order."""
    prefix = f"load-{uuid.uuid4().hex[:8]}-"
    with ExitStack() as stack:
        standin = stack.enter_context(
            StandinProcess(
                first_transaction_pk=first_pk,
                fleet_size=options.fleet_size,
                seed=options.seed,
                live=True,
                scenarios=False,
            )
        )
        env = {
            "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
            "STEVE_URL": standin.base_url,
            "STEVE_USERNAME": standin.username,
            "STEVE_PASSWORD": standin.password,
            "SYNC_INTERVAL_SECONDS": str(max(1, round(options.sync_interval))),
            "LIVE_CHANNEL_PREFIX": prefix,
            # Plain http on loopback: no redirect to https, cookies not Secure-only.
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_COOKIES": "false",
            # The bench measures server time; the pages report theirs to compare.
            "SERVER_TIMING": "true",
        }
        worker = stack.enter_context(CeleryWorker(**env))
        web = stack.enter_context(
            UvicornServer(
                child_environment(**env),
                workers=options.web_workers,
                access_log=False,
                startup_timeout=60,
            )
        )
        yield Services(web=web, worker=worker, standin=standin, channel_prefix=prefix)


# Measuring


@dataclass
class KindStats:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)


@dataclass
class Recorder:
    kinds: dict[str, KindStats] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    sse_open: int = 0
    sse_events: int = 0
    sse_reconnects: int = 0
    connections: list[tuple[float, int, int]] = field(default_factory=list)
    sync_enqueued: int = 0
    began: float = field(default_factory=time.monotonic)
    # Server time of every page, by minute of the run: the same mix of pages each
    # minute, so a median that moves shows the machine's speed moving.
    server_ms_by_minute: dict[int, list[float]] = field(default_factory=dict)

    def record(
        self,
        kind: str,
        ms: float | None,
        error: str | None,
        server_ms: float | None = None,
    ) -> None:
        stats = self.kinds.setdefault(kind, KindStats())
        stats.requests += 1
        if ms is not None:
            stats.latencies_ms.append(ms)
        if server_ms is not None:
            stats.server_ms.append(server_ms)
            minute = int((time.monotonic() - self.began) // 60)
            self.server_ms_by_minute.setdefault(minute, []).append(server_ms)
        if error is not None:
            stats.errors += 1
            if len(self.error_samples) < ERROR_SAMPLES:
                self.error_samples.append(f"{kind}: {error}")

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.kinds.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.kinds.values())


class Browser:
    """One person's tab: a cookie, a connection pool, what the last page showed."""

    def __init__(
        self, person: Person, base_url: str, recorder: Recorder, deadline: float
    ) -> None:
        self.person = person
        self.recorder = recorder
        self.deadline = deadline
        self.http = aiohttp.ClientSession(
            base_url=base_url,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={person.cookie}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )
        self.next_page: str | None = None
        self.detail_ids: list[int] = []

    async def get(self, kind: str, url: str, *, htmx: bool = False) -> str | None:
        headers = {"HX-Request": "true"} if htmx else {}
        began = time.perf_counter()
        try:
            async with self.http.get(
                url, headers=headers, allow_redirects=False
            ) as response:
                body = await response.text()
                status = response.status
                server = server_ms(response.headers.get("Server-Timing"))
        except (aiohttp.ClientError, TimeoutError) as error:
            self.recorder.record(kind, None, f"GET {url}: {error!r}")
            return None
        ms = (time.perf_counter() - began) * 1000
        if not 200 <= status < 300:
            self.recorder.record(kind, ms, f"GET {url}: {status}")
            return None
        self.recorder.record(kind, ms, None, server)
        return body

    async def stream(self, url: str) -> None:
        """Hold the SSE stream open until the deadline, reconnecting as EventSource
        does when the server ends it."""
        while time.monotonic() < self.deadline:
            began = time.perf_counter()
            try:
                async with self.http.get(
                    url,
                    headers={"Accept": "text/event-stream"},
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                ) as response:
                    ms = (time.perf_counter() - began) * 1000
                    if response.status != 200:
                        self.recorder.record(
                            SSE_CONNECT, ms, f"GET {url}: {response.status}"
                        )
                        await asyncio.sleep(SSE_RETRY_S)
                        continue
                    self.recorder.record(SSE_CONNECT, ms, None)
                    self.recorder.sse_open += 1
                    try:
                        async for line in response.content:
                            if line.startswith(b"event:"):
                                self.recorder.sse_events += 1
                    finally:
                        self.recorder.sse_open -= 1
                self.recorder.sse_reconnects += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                self.recorder.record(SSE_CONNECT, None, f"GET {url}: {error!r}")
            await asyncio.sleep(SSE_RETRY_S)

    async def close(self) -> None:
        await self.http.close()


async def staff_session(
    browser: Browser, fixture: Fixture, rng: random.Random, think: Callable[[], float]
) -> None:
    kinds, weights = zip(*STAFF_ACTIONS, strict=True)
    while time.monotonic() < browser.deadline:
        kind = rng.choices(kinds, weights)[0]
        if kind == "sessions: load more" and browser.next_page:
            body = await browser.get(kind, browser.next_page, htmx=True)
        elif kind == "transaction detail":
            pool = browser.detail_ids or fixture.detail_ids
            if not pool:
                continue
            body = await browser.get(kind, f"/admin/sessions/{rng.choice(pool)}/")
        elif kind == "sync runs":
            body = await browser.get(kind, "/admin/sync-runs/")
        else:
            if kind == "sessions: load more":
                kind = "sessions: unfiltered"
            body = await browser.get(kind, _list_url(kind, fixture, rng))
        if body is not None and kind.startswith("sessions:"):
            found = LOAD_MORE.search(body)
            browser.next_page = unescape(found.group(1)) if found else None
            ids = [int(pk) for pk in DETAIL.findall(body)]
            if ids:
                browser.detail_ids = ids
        await asyncio.sleep(think())


def _list_url(kind: str, fixture: Fixture, rng: random.Random) -> str:
    if kind == "sessions: status=active":
        return "/admin/sessions/?status=active"
    if kind == "sessions: one month":
        return f"/admin/sessions/?from={fixture.month[0]}&to={fixture.month[1]}"
    if kind == "sessions: tag substring":
        return f"/admin/sessions/?tag={rng.choice(fixture.tag_fragments)}"
    return "/admin/sessions/"


async def customer_session(
    browser: Browser, rng: random.Random, think: Callable[[], float]
) -> None:
    periods, weights = zip(*CUSTOMER_PERIODS, strict=True)
    while time.monotonic() < browser.deadline:
        period = rng.choices(periods, weights)[0]
        await browser.get(f"dashboard: period={period}", f"/?period={period}")
        await asyncio.sleep(think())


async def drive(
    options: LoadOptions,
    fixture: Fixture,
    base_url: str,
    queue: str,
    say: Say,
) -> tuple[Recorder, float]:
    """Run the users, the sync schedule and the connection sampler until the
    duration is over; returns what was recorded and the seconds it took."""
    recorder = Recorder()
    rng = random.Random(options.seed)
    began = recorder.began
    deadline = began + options.duration
    loop = asyncio.get_running_loop()
    # One thread, so database work of this process holds one connection.
    db = ThreadPoolExecutor(max_workers=1)

    def think() -> float:
        # Never past the deadline: the run ends on time, not a think later.
        pause = rng.uniform(options.think_min, options.think_max)
        return max(0.0, min(pause, deadline - time.monotonic()))

    async def person(p: Person) -> None:
        browser = Browser(p, base_url, recorder, deadline)
        streams = []
        try:
            # Arrivals spread over the first think time, as people open tabs.
            await asyncio.sleep(rng.uniform(0, options.think_max))
            if p.holds_stream:
                url = "/admin/live/" if p.kind == "staff" else "/live/"
                streams.append(asyncio.create_task(browser.stream(url)))
            if p.kind == "staff":
                await staff_session(browser, fixture, rng, think)
            else:
                await customer_session(browser, rng, think)
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            await browser.close()

    async def schedule_sync() -> None:
        from sync.tasks import sync_run_transactions

        expires = options.sync_interval
        while time.monotonic() < deadline:
            await loop.run_in_executor(
                None,
                lambda: sync_run_transactions.apply_async(queue=queue, expires=expires),
            )
            recorder.sync_enqueued += 1
            # An interval longer than what is left of the run must not outlast it.
            await asyncio.sleep(min(options.sync_interval, deadline - time.monotonic()))

    async def sample_connections() -> None:
        while True:
            count = await loop.run_in_executor(db, database_connections)
            recorder.connections.append(
                (round(time.monotonic() - began, 1), count, recorder.sse_open)
            )
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            say(progress_line(recorder, time.monotonic() - began))

    helpers = [
        asyncio.create_task(sample_connections()),
        asyncio.create_task(progress()),
    ]
    try:
        await asyncio.gather(schedule_sync(), *(person(p) for p in fixture.people))
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await loop.run_in_executor(db, lambda: connection.close())
        db.shutdown()
    return recorder, time.monotonic() - began


def database_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def connection_limits() -> dict[str, int]:
    """max_connections and the slots ordinary roles cannot use."""
    limits = {}
    with connection.cursor() as cursor:
        for name in ("max_connections", "superuser_reserved_connections"):
            cursor.execute(f"SHOW {name}")
            limits[name] = int(cursor.fetchone()[0])
    return limits


def progress_line(recorder: Recorder, elapsed: float) -> str:
    samples = [ms for s in recorder.kinds.values() for ms in s.latencies_ms]
    p95 = f"{percentile(samples, 0.95):.0f} ms" if samples else "-"
    conns = recorder.connections[-1][1] if recorder.connections else "-"
    peak = max((c for _, c, _ in recorder.connections), default="-")
    return (
        f"{elapsed:5.0f} s: {recorder.requests} requests "
        f"({recorder.requests / max(elapsed, 1):.1f}/s), {recorder.errors} errors, "
        f"p95 {p95}, SSE open {recorder.sse_open}, "
        f"DB connections {conns} (max {peak}), syncs enqueued {recorder.sync_enqueued}"
    )


# The report


@dataclass
class KindReport:
    """Per page kind: latency as the simulated person saw it (p50/p95, network and
    the load generator's own event loop included) and the server's time (from its
    Server-Timing header), which is what the bench measures and what is compared."""

    name: str
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    server_p50_ms: float | None
    server_p95_ms: float | None
    bench_case: str | None
    bench_p95_ms: float | None
    limit_ms: float | None
    within_limit: bool | None


def kind_reports(
    recorder: Recorder, bench: dict[str, float] | None
) -> list[KindReport]:
    reports = []
    for name, case in BENCH_CASES.items():
        stats = recorder.kinds.get(name, KindStats())
        p50, p95 = _p50_p95(stats.latencies_ms)
        server_p50, server_p95 = _p50_p95(stats.server_ms)
        bench_p95 = bench.get(case) if bench is not None and case else None
        limit = round(2 * bench_p95, 1) if bench_p95 is not None else None
        within = (
            server_p95 <= limit
            if limit is not None and server_p95 is not None
            else None
        )
        reports.append(
            KindReport(
                name,
                stats.requests,
                stats.errors,
                p50,
                p95,
                server_p50,
                server_p95,
                case if bench is not None else None,
                bench_p95,
                limit,
                within,
            )
        )
    return reports


def minute_medians(by_minute: dict[int, list[float]]) -> list[float | None]:
    """The median server time of each minute of the run, in order."""
    return [
        round(statistics.median(by_minute[minute]), 1) if minute in by_minute else None
        for minute in range(max(by_minute, default=-1) + 1)
    ]


def _p50_p95(samples: list[float]) -> tuple[float | None, float | None]:
    if not samples:
        return None, None
    return round(statistics.median(samples), 1), round(percentile(samples, 0.95), 1)


def read_bench(document: Any) -> dict[str, float]:
    """Benchmark p95 by case name, from `manage.py bench --output`'s JSON.

    Raises ValueError with a sentence when the document is not such a JSON.
    """
    cases = document.get("cases") if isinstance(document, dict) else None
    try:
        p95 = {
            str(case["name"]): float(case["p95_ms"])
            for case in cases or []
            if case.get("p95_ms") is not None
        }
    except (AttributeError, KeyError, TypeError, ValueError):
        p95 = {}
    if not p95:
        raise ValueError(
            "it holds no bench cases with a p95; give the JSON that "
            "`manage.py bench --output` wrote"
        )
    return p95


def table(reports: list[KindReport]) -> str:
    header = [
        "page",
        "requests",
        "errors",
        "p50 ms",
        "p95 ms",
        "server p50",
        "server p95",
        "bench p95",
        "2x",
        "ok",
    ]
    return text_table(
        header,
        [
            [
                r.name,
                str(r.requests),
                str(r.errors),
                cell(r.p50_ms),
                cell(r.p95_ms),
                cell(r.server_p50_ms),
                cell(r.server_p95_ms),
                cell(r.bench_p95_ms),
                cell(r.limit_ms),
                verdict(r.within_limit),
            ]
            for r in reports
        ],
    )


def sync_summary(run_floor: int) -> dict[str, Any]:
    """The runs the load test's worker finished, by status, and their durations."""
    runs = list(
        SyncRun.objects.filter(id__gt=run_floor, finished_at__isnull=False).values(
            "status", "started_at", "finished_at", "created_count", "events_count"
        )
    )
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run["status"]] = by_status.get(run["status"], 0) + 1
    # Every run here has finished_at (the filter), which its type cannot tell.
    seconds = [
        (r["finished_at"] - r["started_at"]).total_seconds()
        for r in runs
        if r["finished_at"] is not None
    ]
    return {
        "runs": len(runs),
        "by_status": by_status,
        "p50_s": round(statistics.median(seconds), 2) if seconds else None,
        "max_s": round(max(seconds), 2) if seconds else None,
        "transactions_created": sum(r["created_count"] for r in runs),
        "events_written": sum(r["events_count"] for r in runs),
    }


@dataclass
class LoadResult:
    options: LoadOptions
    seconds: float
    requests: int
    errors: int
    error_samples: list[str]
    kinds: list[KindReport]
    server_p50_by_minute_ms: list[float | None]
    database: dict[str, Any]
    sse: dict[str, Any]
    sync: dict[str, Any]
    cleanup: dict[str, int]
    cpu: dict[str, float]
    logs: dict[str, str]

    @property
    def exhausted(self) -> bool:
        return bool(self.database["exhausted"])

    @property
    def page_interval_per_worker_ms(self) -> float | None:
        """The mean time between two page requests in one web process: the spacing
        `bench --pause` reproduces without load (SSE streams left out)."""
        pages = sum(k.requests for k in self.kinds if k.name != SSE_CONNECT)
        if not pages:
            return None
        return round(self.options.web_workers * self.seconds * 1000 / pages)

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["kinds"] = [asdict(k) for k in self.kinds]
        document["page_interval_per_worker_ms"] = self.page_interval_per_worker_ms
        return document


def run_load(
    options: LoadOptions, say: Say, bench: dict[str, float] | None = None
) -> LoadResult:
    """The whole load test: prepare, start the services, drive, report, clean up.

    `bench` maps benchmark case names to their p95 (see `read_bench`).
    """
    rng = random.Random(options.seed)
    footprint = take_footprint()
    limits = connection_limits()
    say(
        f"{options.users} users for {options.duration:g} s, a sync every "
        f"{options.sync_interval:g} s; stand-in pks from {footprint.first_pk}"
    )
    fixture = prepare_people(options, rng)
    staff = sum(1 for p in fixture.people if p.kind == "staff")
    streams = sum(1 for p in fixture.people if p.holds_stream)
    say(
        f"{staff} staff, {len(fixture.people) - staff} customers "
        f"({fixture.customers} distinct), {streams} holding an SSE stream"
    )
    logs: dict[str, str] = {}
    cleanup: dict[str, int] = {}
    try:
        with services(options, footprint.first_pk) as running:
            logs = {
                "uvicorn": str(running.web.log_path),
                "celery": str(running.worker.log_path),
            }
            idle = database_connections()
            say(f"Services up at {running.web.url}; {idle} DB connections idle")
            recorder, seconds = asyncio.run(
                drive(options, fixture, running.web.url, running.worker.queue, say)
            )
            cpu = {
                "load_generator_s": _own_cpu_seconds(),
                "uvicorn_s": _cpu_seconds(_process(running.web)),
                "celery_s": _cpu_seconds(_process(running.worker)),
            }
            _purge_queue(running.worker.queue)
        wait_for_other_connections_to_close(timeout=10)
        sync = sync_summary(footprint.run_floor)
    finally:
        cleanup = restore_footprint(footprint)
        Session.objects.filter(session_key__in=fixture.session_keys).delete()
    peak = max((c for _, c, _ in recorder.connections), default=0)
    usable = limits["max_connections"] - limits["superuser_reserved_connections"]
    with_streams = [c for _, c, s in recorder.connections if s > 0]
    database = {
        **limits,
        "idle_connections": idle,
        "max_connections_seen": peak,
        "max_connections_seen_while_streams_open": max(with_streams, default=None),
        "samples": len(recorder.connections),
        "exhausted": peak >= usable
        or any("too many clients" in e for e in recorder.error_samples),
    }
    sse = {
        "holders": streams,
        "events_received": recorder.sse_events,
        "reconnects": recorder.sse_reconnects,
    }
    return LoadResult(
        options=options,
        seconds=round(seconds, 1),
        requests=recorder.requests,
        errors=recorder.errors,
        error_samples=recorder.error_samples,
        kinds=kind_reports(recorder, bench),
        server_p50_by_minute_ms=minute_medians(recorder.server_ms_by_minute),
        database=database,
        sse=sse,
        sync=sync,
        cleanup=cleanup,
        cpu=cpu,
        logs=logs,
    )


def _process(child: ChildProcess) -> psutil.Process:
    assert child.process is not None
    return psutil.Process(child.process.pid)


def _own_cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return round(times.user + times.system, 1)


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (uvicorn's workers), so far."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return round(total, 1)


def _purge_queue(queue: str) -> None:
    """Drop sync messages still waiting in this run's private queue."""
    from polaris.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:
        logger.warning("Could not delete the queue %s", queue, exc_info=True)
