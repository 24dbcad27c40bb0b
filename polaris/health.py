"""GET /healthz: the web process answers, for load balancers and supervisors."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase

HEALTH_PATH = "/healthz"


class HealthCheckMiddleware:
    """Answer GET and HEAD of HEALTH_PATH with 200 before any other middleware.

    A load balancer asks each web process at its own address over plain http, so
    the host check (ALLOWED_HOSTS) and the HTTPS redirect that every page gets
    would answer it 400 or 301. It touches neither the database nor Redis: a
    process is healthy when it serves, and the sync's health is `sync status`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")
        return self.get_response(request)
