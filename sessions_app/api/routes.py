"""The operations of the Sessions API: thin endpoints over the services and selectors.

Each one refuses query parameters it does not take, calls the selectors or a
service, and answers the envelope; what they raise is answered by the exception
handlers in `app`, which mounts this module's router.
"""

import logging
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Header, Query, Router, Schema, Status
from ninja.errors import HttpError

from sessions_app import charging
from sessions_app.api.auth import ApiRequest
from sessions_app.api.schemas.requests import (
    ChargerListQuery,
    SessionCreateIn,
    SessionListQuery,
    TargetIn,
)
from sessions_app.api.schemas.responses import (
    IDEMPOTENT_REPLAYED_HEADER,
    LOCATION_HEADER,
    WWW_AUTHENTICATE_HEADER,
    ChargerPageEnvelope,
    ErrorEnvelope,
    SessionEnvelope,
    SessionPageEnvelope,
)
from sessions_app.api.selectors.chargers import (
    api_charger_document,
    api_charger_list,
)
from sessions_app.api.selectors.sessions import (
    SessionFilters,
    api_session_document,
    api_session_get_for_user,
    api_session_list,
    api_session_owner,
)
from sessions_app.models import ApiSession
from sync.client import format_timestamp

logger = logging.getLogger(__name__)

# `app` mounts it on the API object, whose auth and error handlers it shares.
router = Router()

# What each operation can answer besides its success. 401 and 422 (a query
# parameter it does not take) are everywhere. 403 is a browser session's write
# without a valid CSRF token (Django checks none on GET), or staff without the
# permission to manage other users' sessions creating or stopping one
# (`SessionForbidden`), and 413 a body
# too large to read: the JSON body of a create, or the form body that the CSRF
# check reads. 400 is a body that is not JSON, and 415 one declared as another
# type: only the create reads one.
READ_ERRORS = frozenset({401, 422})
WRITE_ERRORS = READ_ERRORS | {403, 404, 409, 413, 502}
CREATE_ERRORS = WRITE_ERRORS | {400, 415}
# ninja documents bodies, not headers.
UNAUTHENTICATED = {401: {"headers": {"WWW-Authenticate": WWW_AUTHENTICATE_HEADER}}}
# The message of a plain read (GET), as the seed's envelope gives it.
RESULT = "Result"
STOPPING = "Stop requested; the session ends when the station reports it."


def _refuse_unknown_parameters(
    request: HttpRequest, query: type[Schema] | None = None
) -> None:
    """A 422 for a query parameter the endpoint does not take, or one given twice.

    Left unread, a typo (or a filter the list lacks, such as `user`) would silently
    list every session, and `POST /sessions?dry_run=1` would start a real charge;
    of a repeated one, which value counts would be a guess.
    """
    known = (
        [field.alias or name for name, field in query.model_fields.items()]
        if query
        else []
    )
    unknown = sorted(set(request.GET) - set(known))
    if unknown:
        takes = (
            f"This endpoint takes {', '.join(known)}."
            if known
            else "This endpoint takes none."
        )
        raise HttpError(
            422,
            f"Unknown query parameter{'s' if len(unknown) > 1 else ''}: "
            f"{', '.join(unknown)}. {takes}",
        )
    repeated = sorted(name for name, values in request.GET.lists() if len(values) > 1)
    if repeated:
        raise HttpError(
            422,
            f"Query parameter{'s' if len(repeated) > 1 else ''} given more than "
            f"once: {', '.join(repeated)}. Give each once.",
        )


def _target(target: TargetIn | None) -> charging.SessionTarget:
    if target is None:
        return charging.SessionTarget()

    def number(value: float | None) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    return charging.SessionTarget(
        time_minutes=number(target.time),
        cost=number(target.cost),
        energy_kwh=number(target.energy),
        start_at=target.energy_start_time,
        stop_at=target.energy_stop_time,
    )


@router.post(
    "/sessions",
    response={201: SessionEnvelope, CREATE_ERRORS: ErrorEnvelope},
    by_alias=True,
    summary="Start a charging session",
    tags=["sessions"],
    openapi_extra={
        "responses": {
            201: {
                "headers": {
                    "Location": LOCATION_HEADER,
                    "Idempotent-Replayed": IDEMPOTENT_REPLAYED_HEADER,
                }
            },
            **UNAUTHENTICATED,
        }
    },
)
def session_create(
    request: ApiRequest,
    response: HttpResponse,
    payload: SessionCreateIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Yours (the token's user), whoever the session is for: "
        "retrying with the same key within 24 hours returns the same session; the "
        "same key with another user, charger, target or meta_data is a 422. While "
        "the first request still waits for the station's answer to its start, a "
        "retry is a 409 that says when to retry. A start that was refused stored "
        "nothing, so its key is free again at once; otherwise after 24 hours.",
    ),
) -> Status[dict[str, Any]]:
    """Send RemoteStartTransaction with one of the user's tags; the session is
    `created` until the station reports charging. When SteVe took the start but
    its answer was lost, or the station did not answer within SteVe's own station
    timeout (30 s), the session is still created (the station may start) and the
    message says so; it is cancelled if charging does not start in time. A start
    that is refused stores nothing (the session shown meanwhile is deleted, or
    cancelled if it was stopped meanwhile): 409 when the station is offline or
    rejects it (OCPP gives no reason: the message names what Polaris saw there,
    someone else's charge or reservation, when it saw one), or when a scheduled
    session finds every card of the user holding another scheduled session (one
    each, as for reservations) or someone else's reservation holding the
    connector, 422 when the
    charging network does not accept the user's tag, 502 when the start was not
    sent or the station answered with an error. While the station has not
    answered, the session holds its connector (another create for it is a 409)
    and a retry with the same Idempotency-Key is a 409 too. Starting a session
    for another `user` takes staff with the permission "Can start and stop any
    customer's API sessions" (`sessions_app.manage_any_session`), and is recorded
    in the audit log."""
    _refuse_unknown_parameters(request)
    owner = api_session_owner(actor=request.auth, user_ref=payload.user)
    created = charging.api_session_create(
        user=owner,
        charge_box_id=payload.chargestation,
        connector_id=payload.connector,
        target=_target(payload.target),
        meta_data=payload.meta_data,
        idempotency_key=idempotency_key or "",
        caller=request.auth,
    )
    response["Location"] = reverse(
        "api-v1:session-detail", kwargs={"session_id": created.session.pk}
    )
    if created.replayed:
        response["Idempotent-Replayed"] = "true"
        # It may have started or ended since: say what GET says.
        return Status(201, _current_envelope(created.session))
    return Status(201, _envelope(created.session, _created_message(created.session)))


def _created_message(session: ApiSession) -> str:
    if session.status_message:
        return session.status_message
    if session.target_start_at is not None:
        start = format_timestamp(session.target_start_at)
        if session.remote_start_sent_at is None:
            return (
                f"Session created; the remote start is sent at {start} "
                "(energy_start_time), and charging starts when the station "
                "reports it."
            )
        return (
            f"Session created; energy_start_time ({start}) had passed, so the "
            "remote start was sent at once, and charging starts when the station "
            "reports it."
        )
    return "Session created; charging starts when the station reports it."


@router.api_operation(
    ["GET", "HEAD"],
    "/sessions",
    response={200: SessionPageEnvelope, READ_ERRORS: ErrorEnvelope},
    by_alias=True,
    summary="List sessions",
    tags=["sessions"],
    openapi_extra={"responses": UNAUTHENTICATED},
)
def session_list(request: ApiRequest, query: Query[SessionListQuery]) -> dict[str, Any]:
    """Newest first; staff see every session, customers their own."""
    _refuse_unknown_parameters(request, SessionListQuery)
    page = api_session_list(
        user=request.auth,
        filters=SessionFilters(
            status=query.status,
            chargestation=query.chargestation,
            created_from=query.from_,
            created_to=query.to,
        ),
        cursor=query.cursor,
        limit=query.limit,
    )
    return _page_envelope(
        [api_session_document(session) for session in page.items], page.next_cursor
    )


@router.api_operation(
    ["GET", "HEAD"],
    "/sessions/{session_id}",
    response={200: SessionEnvelope, READ_ERRORS | {404}: ErrorEnvelope},
    url_name="session-detail",
    by_alias=True,
    summary="Get a session",
    tags=["sessions"],
    openapi_extra={"responses": UNAUTHENTICATED},
)
def session_detail(request: ApiRequest, session_id: str) -> dict[str, Any]:
    """The session as it stands. `message` is "Result" unless something holds
    that the fields do not say: why it was cancelled, or ended without the
    station's own stop; a start or stop whose answer was lost; or, while a stop
    is under way, "Stop requested; the session ends when the station reports
    it.", after the target that asked for it ("Energy target reached.")."""
    _refuse_unknown_parameters(request)
    session = api_session_get_for_user(user=request.auth, session_id=session_id)
    return _current_envelope(session)


@router.post(
    "/sessions/{session_id}/stop",
    response={200: SessionEnvelope, WRITE_ERRORS: ErrorEnvelope},
    by_alias=True,
    summary="Stop a session",
    tags=["sessions"],
    openapi_extra={"responses": UNAUTHENTICATED},
)
def session_stop(request: ApiRequest, session_id: str) -> dict[str, Any]:
    """Send RemoteStopTransaction; the session ends when the station reports it.
    When SteVe took the stop but its answer was lost, or the station did not answer
    within SteVe's own station timeout (30 s), the stop still counts as requested
    (the station may have stopped; it is sent again if charging goes on) and the
    message says so. 502 means the stop was not sent, or the station answered with
    an error. A `created` session whose start was sent stays `created`: its stop is
    sent as soon as charging begins, and it is cancelled if charging does not
    begin in time; one whose scheduled start was not sent yet is cancelled. A
    stop repeated on a session a stop cancelled answers as the first did, and one
    repeated after the station ended the charge that Polaris stopped (this stop,
    the portal's or a target's) gets the ended session: a retry after a lost
    answer succeeds. A stop of any other ended or cancelled session (the station
    or the driver ended it) is 409, as is one SteVe refuses
    because an operator closed the charge there while the station goes on (the
    message says to stop it at the station). A stop sent while another is waiting
    for the station's answer is 409 at once, saying a stop is under way: send it
    again if the session is still started in a moment (the first one failed, so
    yours is sent). Once that answer is in, a repeated stop gets the session as it
    is.
    Staff may read every session, but stopping another user's takes the
    permission "Can start and stop any customer's API sessions"
    (`sessions_app.manage_any_session`): without it the answer is 403, and with
    it the stop is recorded in the audit log."""
    _refuse_unknown_parameters(request)
    session = api_session_get_for_user(user=request.auth, session_id=session_id)
    session = charging.api_session_stop(session=session, caller=request.auth)
    return _current_envelope(session)


@router.api_operation(
    ["GET", "HEAD"],
    "/chargers",
    response={200: ChargerPageEnvelope, READ_ERRORS: ErrorEnvelope},
    summary="List chargers",
    tags=["chargers"],
    openapi_extra={"responses": UNAUTHENTICATED},
)
def charger_list(request: ApiRequest, query: Query[ChargerListQuery]) -> dict[str, Any]:
    """The chargers you may start a session on, by name ("Bay 4" before "Bay 12"):
    customers the public ones and those of their charger groups (the portal's
    chargers card), staff every charger. Each gives the `chargestation` and
    `connector` to create a session with, and the `rate` it would apply."""
    _refuse_unknown_parameters(request, ChargerListQuery)
    page = api_charger_list(user=request.auth, cursor=query.cursor, limit=query.limit)
    return _page_envelope(
        [api_charger_document(item) for item in page.items], page.next_cursor
    )


def _page_envelope(
    items: list[dict[str, Any]], next_cursor: str | None
) -> dict[str, Any]:
    """A list endpoint's answer: one page of documents and the cursor of the next."""
    return {
        "ok": True,
        "message": RESULT,
        "result": {"items": items, "next_cursor": next_cursor},
    }


def _envelope(session: ApiSession, message: str) -> dict[str, Any]:
    return {"ok": True, "message": message, "result": api_session_document(session)}


def _current_envelope(session: ApiSession) -> dict[str, Any]:
    """The session as GET gives it, with `_current_message`."""
    return _envelope(session, _current_message(session))


def _current_message(session: ApiSession) -> str:
    """What the session's answer says of it: its status message; else, while a
    stop is under way (the session stays started until the station reports the
    end), that, and which target asked for it; else the plain one."""
    if session.status_message:
        return session.status_message
    if session.status == ApiSession.Status.STARTED and session.stop_requested_at:
        if session.target_reached:
            label = ApiSession.Target(session.target_reached).label
            return f"{label} reached. {STOPPING}"
        return STOPPING
    return RESULT
