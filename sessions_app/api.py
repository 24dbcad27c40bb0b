"""The Sessions API (`/api/v1/`): thin endpoints over the services and selectors.

Every answer is an envelope: `{"ok": true, "message": ..., "result": ...}`, or
`{"ok": false, "message": ...}` with the status that fits (400 malformed, 401 no or
bad credentials, 404 not yours or unknown, 409 state conflict, 413 body too large,
422 invalid, 502 SteVe or the station failed). Errors raised before or around these
endpoints (an unknown path, a method a path does not take) get the same envelope
from `sessions_app.api_middleware`. The OpenAPI document is at
`/api/v1/openapi.json`, browsable docs at `/api/v1/docs`; each operation in it lists
the statuses it can answer, no more.
"""

import logging
import sys
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Header, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.types import DictStrAny

from sessions_app import charging
from sessions_app.api_auth import ApiRequest, BearerTokenAuth, BrowserSessionAuth
from sessions_app.api_schemas import (
    IDEMPOTENT_REPLAYED_HEADER,
    LOCATION_HEADER,
    META_DATA_MAX_DEPTH,
    METHOD_NOT_ALLOWED_RESPONSE,
    WWW_AUTHENTICATE_HEADER,
    ChargerListQuery,
    ChargerPageEnvelope,
    ErrorEnvelope,
    SessionCreateIn,
    SessionEnvelope,
    SessionListQuery,
    SessionPageEnvelope,
    TargetIn,
)
from sessions_app.api_selectors import (
    InvalidCursor,
    SessionFilters,
    api_charger_document,
    api_charger_list,
    api_session_document,
    api_session_get_for_user,
    api_session_list,
    api_session_owner,
)
from sessions_app.models import ApiSession
from sync.client import format_timestamp

logger = logging.getLogger(__name__)


class SessionsApi(NinjaAPI):
    """NinjaAPI whose document also holds the answer to a method a path does not
    take (405, `MethodNotAllowed`), which belongs to no operation, and lists HEAD
    under no path: every GET operation takes HEAD too (RFC 9110 expects it wherever
    GET works), and listed, HEAD would repeat its GET's operationId, which must be
    unique. The description says so instead.

    HEAD runs the GET's view; the server leaves out the body (uvicorn sends none for
    HEAD and keeps the GET's Content-Length, as Django's test client does)."""

    def get_openapi_schema(
        self,
        *,
        path_prefix: str | None = None,
        path_params: DictStrAny | None = None,
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(
            path_prefix=path_prefix, path_params=path_params
        )
        schema["components"]["responses"] = {
            "MethodNotAllowed": METHOD_NOT_ALLOWED_RESPONSE
        }
        for operations in schema["paths"].values():
            operations.pop("head", None)
        return schema


api = SessionsApi(
    title="Polaris Express Sessions API",
    version="1",
    description=(
        "Start a charge remotely and follow it to the end. Authenticate with "
        "`Authorization: Bearer <token>` (`manage.py create_api_token USERNAME`). "
        "Lifecycle: created → started → ended, or created → cancelled when the "
        "station does not start charging in time. Every answer is a JSON envelope "
        '(`{"ok", "message", "result"}`); a method a path does not take answers '
        "405 in the same envelope, with `Allow` naming the methods it does "
        "(`components.responses.MethodNotAllowed` in this document). HEAD works "
        "wherever GET does: the GET's status and headers, without the body."
    ),
    urls_namespace="api-v1",
    auth=[BearerTokenAuth(), BrowserSessionAuth()],
)

# What each operation can answer besides its success. 401 and 422 (a query
# parameter it does not take) are everywhere. 403 is a browser session's write
# without a valid CSRF token (Django checks none on GET), and 413 a body too large
# to read: the JSON body of a create, or the form body that the CSRF check reads.
# 400 is a body that is not JSON: only the create reads one.
READ_ERRORS = frozenset({401, 422})
WRITE_ERRORS = READ_ERRORS | {403, 404, 409, 413, 502}
CREATE_ERRORS = WRITE_ERRORS | {400}
# ninja documents bodies, not headers.
UNAUTHENTICATED = {401: {"headers": {"WWW-Authenticate": WWW_AUTHENTICATE_HEADER}}}
# The message of a plain read (GET), as the seed's envelope gives it.
RESULT = "Result"
ERROR_STATUS: dict[type[charging.ApiSessionError], int] = {
    charging.SessionNotFound: 404,
    charging.SessionConflict: 409,
    charging.SessionInvalid: 422,
    charging.StationError: 502,
}


def _error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    response = api.create_response(
        request, {"ok": False, "message": message}, status=status
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(charging.ApiSessionError)
def _service_error(request: HttpRequest, exc: charging.ApiSessionError) -> HttpResponse:
    return _error(request, ERROR_STATUS.get(type(exc), 422), exc.message)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        # A token was sent: say it is the token, not its absence, that is wrong.
        return _error(
            request,
            401,
            "This bearer token is not valid: it is unknown or revoked, or its "
            "user is inactive. Send Authorization: Bearer <token> with a valid one.",
        )
    return _error(
        request, 401, "Authentication required: send Authorization: Bearer <token>."
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        return _error(
            request,
            400,
            "The request body is nested too deeply to read: send a JSON object "
            f"at most {META_DATA_MAX_DEPTH} levels deep.",
        )
    cause = exc.__cause__
    if (
        exc.status_code == 400
        and type(cause) is ValueError
        and "integer string conversion" in str(cause)
    ):
        # Valid JSON, but Python reads no integer longer than its digit limit.
        return _error(
            request,
            400,
            "The request body has a number too long to read: send integers of at "
            f"most {sys.get_int_max_str_digits():,} digits.",
        )
    if exc.status_code == 400 and cause is not None:
        # Ninja's "Cannot parse request body" says neither what was wrong nor what
        # it wants: the body failed to decode as JSON.
        return _error(request, 400, "The request body is not JSON: send a JSON object.")
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, str(exc) or "Not found.")


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return _error(request, 422, _validation_message(exc.errors))


@api.exception_handler(TooManyFieldsSent)
def _too_many_fields(request: HttpRequest, exc: TooManyFieldsSent) -> HttpResponse:
    # Django's own answer is a bare 400; a thousand parameters are as unknown to
    # an endpoint as one (`_refuse_unknown_parameters`).
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return _error(
        request,
        422,
        f"The request has more than {limit} query parameters or form fields; "
        "send only those the endpoint takes.",
    )


@api.exception_handler(RequestDataTooBig)
def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _error(request, 413, f"The request body is larger than {limit} bytes.")


@api.exception_handler(InvalidCursor)
def _bad_cursor(request: HttpRequest, exc: InvalidCursor) -> HttpResponse:
    # 422 as for a cursor of the wrong shape: both are a query parameter that
    # is not what this API gave out.
    return _error(request, 422, str(exc))


# What a value that does not match its field's pattern must be, in words: the
# pattern itself (a regular expression) means nothing to most integrators.
PATTERN_WORDS = {
    "chargestation": "must be a chargeBoxId: 1 to 255 characters, without control "
    "characters or = / ( ) < >",
    "user": "must be a user id or username: 1 to 150 characters, without control "
    "characters",
    "cursor": "must be a next_cursor this API gave",
    "Idempotency-Key": "must be 1 to 255 visible ASCII characters, without spaces",
}


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


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """The first few problems, e.g. `Invalid request: connector: Input should be
    greater than or equal to 1.` (the location without its body/query prefix)."""
    parts = []
    for error in errors[:3]:
        location = list(error.get("loc", ()))
        # ("body", "payload", "target", "time"): the body's parameter name is ours,
        # not the integrator's; they sent {"target": {"time": ...}}. With no body
        # at all the location is ("body", "payload"): that is the body.
        in_body = location[:1] == ["body"]
        where = ".".join(str(part) for part in location[2 if in_body else 1 :])
        where = where or ("body" if in_body else "")
        # A ValueError raised by a validator is our sentence; pydantic's
        # "Value error, " before it is not.
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "string_pattern_mismatch" and location:
            message = PATTERN_WORDS.get(str(location[-1]), message)
        parts.append(f"{where}: {message}" if where else message)
    return f"Invalid request: {'; '.join(parts)}." if parts else "Invalid request."


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


@api.post(
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
        "same key with another user, charger, target or meta_data is a 422. After "
        "24 hours the key is free for a new session.",
    ),
) -> Status[dict[str, Any]]:
    """Send RemoteStartTransaction with one of the user's tags; the session is
    `created` until the station reports charging. When SteVe took the start but
    its answer was lost, or the station did not answer within SteVe's own station
    timeout (30 s), the session is still created (the station may start) and the
    message says so; it is cancelled if charging does not start in time. 502 means
    the start was not sent, or the station answered with an error."""
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


@api.api_operation(
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


@api.api_operation(
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
    _refuse_unknown_parameters(request)
    session = api_session_get_for_user(user=request.auth, session_id=session_id)
    return _current_envelope(session)


@api.post(
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
    begin in time; one whose scheduled start was not sent yet is cancelled."""
    _refuse_unknown_parameters(request)
    session = api_session_get_for_user(user=request.auth, session_id=session_id)
    session = charging.api_session_stop(session=session)
    message = session.status_message or (
        "Stop requested; the session ends when the station reports it."
    )
    return _envelope(session, message)


@api.api_operation(
    ["GET", "HEAD"],
    "/chargers",
    response={200: ChargerPageEnvelope, READ_ERRORS: ErrorEnvelope},
    summary="List chargers",
    tags=["chargers"],
    openapi_extra={"responses": UNAUTHENTICATED},
)
def charger_list(request: ApiRequest, query: Query[ChargerListQuery]) -> dict[str, Any]:
    """The chargers you may start a session on, by name: customers the public ones
    and those of their charger groups (the portal's chargers card), staff every
    charger. Each gives the `chargestation` and `connector` to create a session
    with, and the `rate` it would apply."""
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
    """The session as GET gives it: its status message, else the plain one."""
    return _envelope(session, session.status_message or RESULT)
