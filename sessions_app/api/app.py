"""The Sessions API's NinjaAPI object, and how it answers errors.

The operations are in `routes`; this module holds what they share through the
API object: its OpenAPI document's additions, and the exception handlers that turn
every error an operation raises (a service's, ninja's, Django's) into the error
envelope with the status that fits.
"""

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.operation import Operation
from ninja.parser import Parser
from ninja.types import DictStrAny

from sessions_app import charging
from sessions_app.api.auth import (
    BearerTokenAuth,
    BrowserSessionAuth,
    TokenExpired,
    TokenRevoked,
)
from sessions_app.api.routes import router
from sessions_app.api.schemas.requests import META_DATA_MAX_DEPTH
from sessions_app.api.schemas.responses import METHOD_NOT_ALLOWED_RESPONSE
from sessions_app.api.selectors.sessions import AmbiguousUser, InvalidCursor

logger = logging.getLogger(__name__)


class UnsupportedMediaType(ValueError):
    """A request body declared as something other than JSON."""

    def __init__(self, content_type: str) -> None:
        super().__init__(content_type)
        self.content_type = content_type


class RepeatedKey(ValueError):
    """A JSON object in the body that gives one key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of a repeated key: a body naming two
    # chargestations would start a charge at one of them on a guess.
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise RepeatedKey(key)
        found[key] = value
    return found


class JsonParser(Parser):
    """Ninja's parser, reading only a body sent as JSON: one declared as text or a
    form is refused (415) rather than read as JSON all the same, and so is an
    object that gives a key twice (422), since the create it carries starts a
    real charge. A body without a Content-Type is read as JSON, as the one type
    this API takes."""

    def parse_body(self, request: HttpRequest) -> DictStrAny:
        content_type = request.content_type or ""
        if content_type and not (
            content_type == "application/json" or content_type.endswith("+json")
        ):
            raise UnsupportedMediaType(content_type)
        body: DictStrAny = json.loads(
            request.body, object_pairs_hook=_object_without_repeats
        )
        return body


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

    def create_response(
        self,
        request: HttpRequest,
        data: Any,
        *,
        status: int | None = None,
        temporal_response: HttpResponse | None = None,
    ) -> HttpResponse:
        response = super().create_response(
            request, data, status=status, temporal_response=temporal_response
        )
        # Each answer is one caller's, and a session's figures change with every
        # sync: no browser or proxy cache may keep one.
        add_never_cache_headers(response)
        return response

    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The ids the operations had when they were defined in the module
        # `sessions_app.api` (ninja derives them from the view's module): clients
        # generated from the document name their methods after them.
        return f"sessions_app_api_{operation.view_func.__name__}"


def _document_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The OpenAPI document and its docs page take GET and HEAD, and answer
    another method 405 like every path (not CSRF's 403: they change nothing)."""
    return csrf_exempt(require_http_methods(["GET", "HEAD"])(view))


api = SessionsApi(
    title="Polaris Express Sessions API",
    version="1",
    description=(
        "Start a charge remotely and follow it to the end. Authenticate with "
        "`Authorization: Bearer <token>` (create one on your API tokens page, or "
        "with `manage.py create_api_token USERNAME`); a token works until it "
        "expires or is revoked. Lifecycle: created → started → ended, or "
        "created → cancelled when the station does not start charging in time. "
        "A session whose start the station refuses is deleted (its create "
        "answers the refusal), so one listed while its start waited may then be "
        "a 404. Every answer is a JSON "
        'envelope (`{"ok", "message", "result"}`); a method a path does not take '
        "answers 405 in the same envelope, with `Allow` naming the methods it does "
        "(`components.responses.MethodNotAllowed` in this document). HEAD works "
        "wherever GET does: the GET's status and headers, without the body."
    ),
    urls_namespace="api-v1",
    auth=[BearerTokenAuth(), BrowserSessionAuth()],
    parser=JsonParser(),
    docs_decorator=_document_view,
)
api.add_router("", router)

# The status a service's error answers with; any other kind is a 422.
ERROR_STATUS: dict[type[charging.ApiSessionError], int] = {
    charging.SessionForbidden: 403,
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
    # By the nearest class that has a status: StopUnderWay is a SessionConflict.
    status = next(
        (ERROR_STATUS[kind] for kind in type(exc).__mro__ if kind in ERROR_STATUS),
        422,
    )
    return _error(request, status, exc.message)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if isinstance(exc, TokenExpired | TokenRevoked):
        ended, when = (
            ("expired", exc.expires_at)
            if isinstance(exc, TokenExpired)
            else ("was revoked", exc.revoked_at)
        )
        return _error(
            request,
            401,
            f"This bearer token {ended} at {when.astimezone(UTC):%Y-%m-%d %H:%M} "
            "UTC. Create a new one on your API tokens page and send it as "
            "Authorization: Bearer <token>.",
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        # A token was sent: say it is the token, not its absence, that is wrong.
        return _error(
            request,
            401,
            "This bearer token is not valid: it is unknown, or its user is "
            "inactive. Send Authorization: Bearer <token> with a valid one.",
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
    if isinstance(cause, UnsupportedMediaType):
        return _error(
            request,
            415,
            f"The request body is sent as {cause.content_type}, which this API "
            "does not read: send a JSON object with Content-Type: application/json.",
        )
    if isinstance(cause, RepeatedKey):
        return _error(
            request,
            422,
            f'The request body gives "{cause.key}" more than once: give each '
            "field once.",
        )
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
    if any(
        error.get("type") == "missing" and tuple(error.get("loc", ())) == NO_BODY
        for error in exc.errors
    ):
        # Not a field missing from the object: there is no object.
        return _error(request, 400, "The request body is empty: send a JSON object.")
    return _error(request, 422, _validation_message(exc.errors))


# Where pydantic places a request that has no body at all.
NO_BODY = ("body", "payload")


@api.exception_handler(TooManyFieldsSent)
def _too_many_fields(request: HttpRequest, exc: TooManyFieldsSent) -> HttpResponse:
    # Django's own answer is a bare 400; a thousand parameters are as unknown to
    # an endpoint as one (`routes._refuse_unknown_parameters`).
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


@api.exception_handler(AmbiguousUser)
def _ambiguous_user(request: HttpRequest, exc: AmbiguousUser) -> HttpResponse:
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


# pydantic's error types of a date-time it could not read, and what to send.
DATE_TIME_ERRORS = ("datetime_", "date_from_datetime", "timezone_")
DATE_TIME_WORDS = (
    "must be an ISO 8601 date-time such as 2026-03-01T09:00:00Z: a day its month "
    "has, hours 00 to 23, minutes and seconds 00 to 59, and Z or an offset from "
    "-23:59 to +23:59"
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
        if str(error.get("type", "")).startswith(DATE_TIME_ERRORS):
            # pydantic's words ("unexpected extra characters at the end of the
            # input" for an hour of 24) do not say what it wants.
            message = DATE_TIME_WORDS
        parts.append(f"{where}: {message}" if where else message)
    return f"Invalid request: {'; '.join(parts)}." if parts else "Invalid request."
