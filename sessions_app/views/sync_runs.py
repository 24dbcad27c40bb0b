"""The Sync runs page and its "Run sync now"."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.vary import vary_on_headers

from polaris.http import (
    AuthenticatedHttpRequest,
    is_fragment_request,
    post_only,
    staff_only,
    until_event,
)
from polaris.queueing import enqueue
from sessions_app import selectors
from sessions_app.forms import SyncRunFilterForm, parse_sync_run_filters
from sessions_app.live import SYNC_RUNS_EVENT
from sessions_app.views import QUEUE_UNREACHABLE, console_stream_url
from sync.models import SyncRun
from sync.services import transactions_sync_under_way
from sync.tasks import sync_run_transactions as sync_run_transactions_task


@staff_only
@vary_on_headers("HX-Request")
def sync_run_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    fragment = is_fragment_request(request)
    # Before the page's reads: an event published meanwhile is replayed.
    live_url = None if fragment else console_stream_url()
    filters = parse_sync_run_filters(request.GET)
    context = {
        "section": "sync-runs",
        **selectors.sync_run_table(filters=filters),
        "sync_interval": settings.SYNC_INTERVAL_SECONDS,
        "filters": filters,
        "filter_query": urlencode(filters.as_query()),
        "form": SyncRunFilterForm(filters),
        "live_url": live_url,
    }
    if fragment:
        return render(request, "sessions_app/sync_run_list.html#sync-run-rows", context)
    return render(request, "sessions_app/sync_run_list.html", context)


@staff_only
@post_only("sessions_app:sync-run-list")
def sync_run_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    # The advisory lock in the service is the real guard; this spares a queued
    # task that would only find the lock taken. The lock, not a `running` row: a
    # run whose worker died keeps that row until the next run marks it. The
    # charger probe holds a lock of its own, so it never blocks this. The button
    # itself is never disabled: live updates re-render the table, not the header,
    # so a disabled state would outlive the run that caused it.
    # Back to the list as it was filtered (the form sends its filters along).
    filters = parse_sync_run_filters(request.POST)
    if transactions_sync_under_way():
        messages.warning(request, "A sync run is already in progress.")
    elif enqueue(sync_run_transactions_task, SyncRun.Trigger.MANUAL):
        shown_here = filters.shows(
            kind=SyncRun.Kind.TRANSACTIONS, status=SyncRun.Status.RUNNING
        )
        # The table shows the run from its start, and the sentence then goes;
        # where nothing here would show it, the sentence stays.
        where, until = (
            ("below", until_event(SYNC_RUNS_EVENT))
            if shown_here
            else ("among all runs", "")
        )
        messages.success(
            request,
            f"Sync run queued; it appears {where} in a moment.",
            extra_tags=until,
        )
    else:
        messages.error(request, f"The sync run was not queued: {QUEUE_UNREACHABLE}")
    url, query = reverse("sessions_app:sync-run-list"), urlencode(filters.as_query())
    return redirect(f"{url}?{query}" if query else url)
