"""The Charging Sessions pages: the list, its CSV export, a session's detail and
resync, and the console's live stream."""

import csv
from collections.abc import Generator, Mapping
from contextlib import closing
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from polaris import live
from polaris.http import (
    AuthenticatedHttpRequest,
    is_fragment_request,
    post_only,
    staff_only,
)
from polaris.queueing import enqueue
from sessions_app import selectors
from sessions_app.charts import cumulative_energy_chart
from sessions_app.forms import SessionFilterForm, parse_session_filters
from sessions_app.views import QUEUE_UNREACHABLE, console_stream_url
from sessions_app.views.user_mappings import may_change_mappings
from sync.models import SyncRun, TransactionSyncState
from sync.services.mappings import is_mappable_id_tag
from sync.tasks import sync_run_transaction as sync_run_transaction_task

SESSION_LIST = "sessions_app/session_list.html"


@staff_only
@vary_on_headers("HX-Request", "HX-Trigger")
def session_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    fragment = is_fragment_request(request)
    # Before the page's reads: an event published meanwhile is replayed.
    live_url = None if fragment else console_stream_url()
    trigger = request.htmx.trigger if fragment else None
    # The table re-reading itself after a sync.
    rereading = trigger == "session-results"
    filters = parse_session_filters(request.GET)
    cursor = request.GET.get("cursor")
    listing = selectors.SessionList(
        filters=filters,
        cursor=cursor,
        rows_before=_row_count(request.GET.get("rows")),
        fragment=fragment,
        now=timezone.now(),
        unmapped_tag_hint=(
            request.GET.get("tag_hint") == "unmapped" if rereading else None
        ),
    )
    context: dict[str, object] = {
        "section": "sessions",
        "filter_query": urlencode(filters.as_query()),
    }
    if fragment and cursor:
        # The address says how many rows the table holds now, as the no-script
        # link does: Back from a session opened below them brings them all back.
        context.update(listing.rows())
        response = render(request, f"{SESSION_LIST}#session-rows", context)
        rows_shown = {**filters.as_query(), "rows": listing.table.rows_shown}
        return push_url(response, _session_list_url(rows_shown))
    if rereading:
        # Only the results: the form keeps what is typed.
        context.update(listing.results())
        return render(request, f"{SESSION_LIST}#session-results", context)
    context.update(form=SessionFilterForm(filters))
    if fragment:
        # New filters: the form, the export link and the address follow them.
        context.update(
            listing.results(),
            filters_oob=True,
            announce_count=trigger == "session-filters",
        )
        response = render(request, f"{SESSION_LIST}#filtered-results", context)
        return push_url(response, _session_list_url(filters.as_query()))
    context.update(listing.whole_page(), live_url=live_url)
    return render(request, SESSION_LIST, context)


def _session_list_url(query: Mapping[str, object]) -> str:
    url = reverse("sessions_app:session-list")
    return f"{url}?{urlencode(query)}" if query else url


def _row_count(raw: str | None) -> int:
    """A row count from the query string; 0 when missing or malformed."""
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0


@staff_only
def session_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    """Every session of the filtered view as CSV, streamed page by page."""
    filters = parse_session_filters(request.GET)
    rows = selectors.session_export_rows(filters=filters)
    response = StreamingHttpResponse(
        _csv_lines(rows), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = (
        f'attachment; filename="charging-sessions-{stamp}.csv"'
    )
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell that starts with one of these as a formula; labels,
# emails and tags come from whoever typed them (OWASP's CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# Excel reads a CSV file as UTF-8 only after a byte order mark; without one it
# garbles every label beyond ASCII.
UTF8_BOM = "\ufeff"


def _csv_lines(rows: Generator[list[str]]) -> Generator[str]:
    writer = csv.writer(_Echo())
    # Closed with the response: the rows' transaction ends with it.
    with closing(rows):
        yield UTF8_BOM + writer.writerow(selectors.SESSION_EXPORT_HEADER)
        for row in rows:
            yield writer.writerow([_as_text(cell) for cell in row])


def _as_text(cell: str) -> str:
    """The cell, with a leading apostrophe where a spreadsheet would see a formula:
    spreadsheets show it as text, as typed."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


@staff_only
@vary_on_headers("HX-Request")
def session_detail(
    request: AuthenticatedHttpRequest, steve_transaction_id: int
) -> HttpResponse:
    fragment = is_fragment_request(request)
    # Before the page's reads: an event published meanwhile is replayed.
    live_url = None if fragment else console_stream_url()
    try:
        session = selectors.session_detail(steve_transaction_id=steve_transaction_id)
    except TransactionSyncState.DoesNotExist:
        raise Http404("No session with this SteVe transaction id.") from None
    series = selectors.session_energy_series(session=session)
    now = timezone.now()
    last_synced = selectors.session_last_synced(session=session, now=now)
    resync, queued_at, answers_press = _resync_notice(
        request, steve_transaction_id, now=now, last_synced_at=last_synced.at
    )
    context = {
        "section": "sessions",
        "session": session,
        "events_count": len(series),
        "shown_events": selectors.shown_events(
            session=session, show_all=request.GET.get("events") == "all"
        ),
        "chart": cumulative_energy_chart(session, series),
        "may_map_tag": may_change_mappings(request.user, "create"),
        "tag_is_mappable": is_mappable_id_tag(session.ocpp_id_tag),
        "last_synced": last_synced,
        "resync": resync,
        "resync_queued_at": queued_at,
        # The page "Resync now" redirected to, its run already under way or done
        # (a worker that quick): the outcome takes the focus, as "queued" would.
        "resync_answers_press": answers_press and not fragment,
    }
    template = "sessions_app/session_detail.html"
    if fragment:
        # A sync tick's re-read: the parts that change, not the page around them.
        return render(request, f"{template}#live-parts", context)
    return render(request, template, {**context, "live_url": live_url})


@staff_only
@post_only("sessions_app:session-detail", "steve_transaction_id")
def session_resync(
    request: AuthenticatedHttpRequest, steve_transaction_id: int
) -> HttpResponse:
    session = get_object_or_404(
        TransactionSyncState, steve_transaction_id=steve_transaction_id
    )
    if enqueue(sync_run_transaction_task, session.steve_transaction_id):
        # The page says it is queued until this run starts, whatever an earlier
        # resync's outcome or a live re-read meanwhile.
        request.session[_resync_key(session.steve_transaction_id)] = (
            timezone.now().isoformat()
        )
    else:
        messages.error(request, f"The resync did not start: {QUEUE_UNREACHABLE}")
    return redirect("sessions_app:session-detail", session.steve_transaction_id)


def _resync_key(steve_transaction_id: int) -> str:
    return f"resync_queued:{steve_transaction_id}"


def _resync_notice(
    request: AuthenticatedHttpRequest,
    steve_transaction_id: int,
    *,
    now: datetime,
    last_synced_at: datetime,
) -> tuple[SyncRun | None, datetime | None, bool]:
    """What the detail page's resync notice shows: the resync run, or when this
    person's "Resync now" was queued while its run has not started; and whether
    the run is the answer to a press this page is the first to show. A queueing
    is forgotten once its run has started, or after RESYNC_NOTICE_FOR (a queue
    with no worker starts it never)."""
    key = _resync_key(steve_transaction_id)
    stamp = request.session.get(key)
    queued_at = datetime.fromisoformat(stamp) if stamp else None
    if queued_at is not None and now - queued_at > selectors.RESYNC_NOTICE_FOR:
        queued_at = None
    run = selectors.recent_resync(
        steve_transaction_id=steve_transaction_id,
        now=now,
        last_synced_at=last_synced_at,
        queued_at=queued_at,
    )
    # Not an expired press's: the run may then be anyone's resync.
    answers_press = queued_at is not None and run is not None
    if stamp and (run is not None or queued_at is None):
        del request.session[key]
        queued_at = None
    return run, queued_at, answers_press


@staff_only
def live_stream(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The console's SSE stream (staff channel)."""
    return live.stream(request, live.staff_channel())
