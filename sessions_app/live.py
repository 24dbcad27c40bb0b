"""Live updates of the console: the sync's signals rendered with the pages' own
partials and sent on the staff channel."""

from typing import Any

from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils import timezone

from polaris import live
from sessions_app import selectors
from sync import rollups
from sync.models import SyncRun
from sync.signals import run_finished, run_started, sessions_changed

# Sync runs pages re-read their table on it, with their filters. It names the
# run, not its table: every console tab gets the staff channel, and the newest
# 50 runs twice a run were a gigabyte a day for each of them.
SYNC_RUNS_EVENT = "sync-runs-updated"
# The Charging Sessions banner alone, when a transactions run that changed no
# session failed, or was the first to succeed after one that did.
SYNC_FAILING_EVENT = "sync-failing"
# The Charging Sessions table and an active session's detail page re-read
# themselves on it: a transactions run that changed no session still moved the
# active ones' Last synced, and an open page showing the time before would say
# a working sync was late.
SESSIONS_READ_EVENT = "sessions-read"
SESSION_LIST = "sessions_app/session_list.html"
# The most sessions an event names. A detail page re-reads itself when the event
# names its session, or names none; a first sync or a backfill changes hundreds
# of thousands, which named would make one event megabytes, stored and sent to
# every console tab.
NAMED_SESSIONS_MAX = 500


@receiver(sessions_changed)
def publish_sessions_changed(
    sender: type[SyncRun], run: SyncRun, transaction_ids: list[int], **kwargs: Any
) -> None:
    """Tick the Charging Sessions banner and refresh the stat strip.

    Open pages re-read their table when the banner ticks (the results section's
    own filters and row count), so every viewer sees new sessions and finished
    ones leave an Active view, whatever their filters.
    """
    now = timezone.now()
    context = {
        "freshness": selectors.sync_freshness(now=now),
        "stats": selectors.session_stats(now=now),
    }
    html = render_to_string(
        f"{SESSION_LIST}#live-banner-body",
        {**context, "changed_sessions": _named(transaction_ids)},
    )
    html += render_to_string(f"{SESSION_LIST}#stat-strip", {**context, "oob": True})
    live.publish(live.staff_channel(), "sessions-updated", html)


def _named(transaction_ids: list[int]) -> str:
    """The changed sessions' ids as the banner's event names them; "" for many."""
    if len(transaction_ids) > NAMED_SESSIONS_MAX:
        return ""
    return " ".join(map(str, transaction_ids))


@receiver(run_started)
def publish_run_started(sender: type[SyncRun], run: SyncRun, **kwargs: Any) -> None:
    """Show a run on open Sync runs pages while it runs: one that SteVe keeps
    waiting would otherwise be missing there until it ends, while Run sync now
    says one is in progress."""
    _publish_sync_runs_changed(run)


@receiver(run_finished)
def publish_run_finished(sender: type[SyncRun], run: SyncRun, **kwargs: Any) -> None:
    """Have open Sync runs pages re-read their table, and the detail pages how a
    resync went (a failed one changes no session)."""
    _publish_sync_runs_changed(run)
    if run.kind == SyncRun.Kind.TRANSACTION:
        live.publish(
            live.staff_channel(), "transaction-resynced", str(run.steve_transaction_id)
        )
    if _turns_sync_failing_on_or_off(run):
        context = {"freshness": selectors.sync_freshness(now=timezone.now())}
        html = render_to_string(f"{SESSION_LIST}#live-banner-body", context)
        live.publish(live.staff_channel(), SYNC_FAILING_EVENT, html)
    elif _read_active_sessions_alone(run):
        live.publish(live.staff_channel(), SESSIONS_READ_EVENT, str(run.pk))


def _publish_sync_runs_changed(run: SyncRun) -> None:
    live.publish(live.staff_channel(), SYNC_RUNS_EVENT, str(run.pk))


def _turns_sync_failing_on_or_off(run: SyncRun) -> bool:
    """Whether `run` changes what the banner says of failing syncs without a
    sessions_changed to say it (a run that changed sessions ticks the banner)."""
    if run.created_count or run.updated_count:
        return False
    return run.turns_failing_on_or_off


def _read_active_sessions_alone(run: SyncRun) -> bool:
    """Whether `run` read the active sessions, moving their Last synced, without
    a sessions_changed to have open pages re-read them."""
    return (
        run.kind == SyncRun.Kind.TRANSACTIONS
        and run.status in SyncRun.READ_STATUSES
        and not (run.created_count or run.updated_count)
        and rollups.sessions_total(states=[False]) > 0
    )
