"""Celery tasks: thin wrappers that call the sync services and decide retries.

A failed transactions run is not retried: SteVe faults are recorded on the run and
the next scheduled run, SYNC_INTERVAL_SECONDS later, catches up.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from sync import services
from sync.models import SyncRun

logger = logging.getLogger(__name__)

# Celery ships no type hints, so shared_task and the tasks it makes are untyped;
# each decorator below ignores that, and the bodies are still checked.

# A task that must run, not skip, when another run holds the transactions lock:
# it retries with backoff until the lock is free.
WAITS_FOR_THE_LOCK: dict[str, object] = {
    "ignore_result": True,
    "autoretry_for": (services.SyncBusy,),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "max_retries": 5,
}


@shared_task(ignore_result=True)  # type: ignore[untyped-decorator]
def sync_run_transactions(trigger: str = SyncRun.Trigger.BEAT) -> int | None:
    """One incremental transactions run; skipped when another run holds the lock."""
    try:
        return services.sync_run_transactions(trigger=trigger).pk
    except services.SyncBusy:
        logger.info("Transactions sync skipped: another run is in progress")
        return None


@shared_task(ignore_result=True)  # type: ignore[untyped-decorator]
def sync_runs_prune() -> int:
    """Delete the sync runs that changed nothing, once SYNC_RUNS_RETENTION_DAYS
    old; returns how many."""
    retention = timedelta(days=settings.SYNC_RUNS_RETENTION_DAYS)
    return services.sync_runs_prune(older_than=retention)


@shared_task(ignore_result=True)  # type: ignore[untyped-decorator]
def sync_run_chargers(trigger: str = SyncRun.Trigger.BEAT) -> int | None:
    """Probe the chargers; skipped when another probe holds the lock."""
    try:
        return services.sync_run_chargers(trigger=trigger).pk
    except services.SyncBusy:
        logger.info("Charger probe skipped: another probe is in progress")
        return None


@shared_task(**WAITS_FOR_THE_LOCK)  # type: ignore[untyped-decorator]
def sync_run_reconcile(trigger: str = SyncRun.Trigger.BEAT) -> int:
    """The scheduled reconcile; waits (retries with backoff) while another run holds
    the lock, as the transactions run every few seconds often does: skipped, it
    would wait a whole interval."""
    return services.sync_run_reconcile(trigger=trigger).pk


@shared_task(**WAITS_FOR_THE_LOCK)  # type: ignore[untyped-decorator]
def sync_run_transaction(
    steve_transaction_id: int, trigger: str = SyncRun.Trigger.MANUAL
) -> int:
    """Resync one transaction; waits (retries with backoff) while another run holds
    the lock, because a person asked for it."""
    return services.sync_run_transaction(
        steve_transaction_id=steve_transaction_id, trigger=trigger
    ).pk
