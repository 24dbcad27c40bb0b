"""Measuring: the people's browser tabs (pages and SSE streams over aiohttp), the
sync schedule and the database connection sampler, all driven on one event loop,
and the recorder that keeps what they saw for the report."""

import asyncio
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape

import aiohttp
from django.conf import settings
from django.db import connection

from bench.load.options import LoadOptions, Say
from bench.load.people import Fixture, Person
from bench.report import percentile
from polaris.timing import server_ms

REQUEST_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 1.0
PROGRESS_EVERY_S = 30.0
SSE_RETRY_S = 1.0
ERROR_SAMPLES = 20
# The kind of an SSE stream's opening request: not a page.
SSE_CONNECT = "SSE: connect"
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
