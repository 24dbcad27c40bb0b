"""Every error under `/api/v1/` answers in the Sessions API's JSON envelope.

The endpoints answer their own errors as `{"ok": false, "message": ...}`. A few
errors are made before or around them, as HTML or plain text: the URL resolver's
404 for an unknown path (a trailing slash included), django-ninja's 405 for a
method a path does not take, Django's 400 and 500 pages. Integrators parse every
answer as JSON, so this middleware rewrites those bodies into the envelope.
"""

import json
import logging
from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import is_valid_path

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"


class ApiJsonErrorsMiddleware:
    """Rewrites non-JSON error answers under API_PREFIX into the API's envelope.

    The response object is changed in place, not replaced, so the headers other
    middleware set (Allow on a 405, the security headers) stay. Listed first in
    MIDDLEWARE, it sees every answer, including those other middleware make.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            request.path_info.startswith(API_PREFIX)
            and response.status_code >= 400
            and isinstance(response, HttpResponse)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            _rewrite(request, response)
        return response


def _rewrite(request: HttpRequest, response: HttpResponse) -> None:
    message = _message(request, response)
    response.content = json.dumps({"ok": False, "message": message}).encode()
    response["Content-Type"] = "application/json; charset=utf-8"
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))


def _message(request: HttpRequest, response: HttpResponse) -> str:
    status = response.status_code
    path = request.path_info
    if status == 404:
        without_slash = path.rstrip("/")
        if path.endswith("/") and is_valid_path(without_slash):
            return (
                f"There is no {path}; API paths have no trailing slash: "
                f"use {without_slash}."
            )
        return f"There is no API endpoint at {path}."
    if status == 405:
        allowed = response.get("Allow", "")
        return f"{request.method} is not allowed on {path}; use {allowed}."
    if status == 413:
        return "The request body is too large."
    if status >= 500:
        # Django has logged the error with its traceback already.
        return "Something went wrong on our side; please try again."
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"{phrase}."
