"""The report: per page kind what the people saw and what the server took,
compared with the benchmark, the sync runs' summary, and the result the command
prints and writes as JSON."""

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from bench.load.measuring import SSE_CONNECT, KindStats, Recorder
from bench.load.options import LoadOptions
from bench.report import cell, percentile, text_table, verdict
from sync.models import SyncRun

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
