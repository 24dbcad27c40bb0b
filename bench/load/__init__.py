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

This module puts the parts together and runs them (`run_load`); they live in
`options` (what the test is asked to do), `people` (who browses and what),
`footprint` (the snapshot that keeps the seeded history as it was), `processes`
(the stand-in, the Celery worker and uvicorn), `measuring` (the people, the sync
schedule and what they recorded) and `report` (per page kind, against the bench).
"""

import asyncio
import logging
import random

import psutil
from django.contrib.sessions.models import Session

from bench.load.footprint import restore_footprint, take_footprint
from bench.load.measuring import connection_limits, database_connections, drive
from bench.load.options import LoadOptions, Say
from bench.load.people import prepare_people
from bench.load.processes import services
from bench.load.report import (
    KindReport,
    LoadResult,
    kind_reports,
    minute_medians,
    read_bench,
    sync_summary,
    table,
)
from polaris.testing import ChildProcess, wait_for_other_connections_to_close

__all__ = [
    "KindReport",
    "LoadOptions",
    "LoadResult",
    "Say",
    "minute_medians",
    "read_bench",
    "run_load",
    "table",
]

logger = logging.getLogger(__name__)


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
