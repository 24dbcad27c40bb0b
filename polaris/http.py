"""Request helpers shared by the console and the portal."""

from typing import TYPE_CHECKING

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    # Only for annotations: importing auth's models needs the apps loaded.
    from django.contrib.auth.models import User


class HtmxHttpRequest(HttpRequest):
    """For annotations: every request has passed django-htmx's middleware, which
    sets `htmx`."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """For annotations: the request of a view behind `login_required` or
    `staff_member_required`, whose user has signed in."""

    user: "User"


def is_fragment_request(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment.

    A history-restore request also carries HX-Request but wants the whole page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx and not htmx.history_restore_request)
