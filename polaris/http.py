"""Request helpers shared by the console and the portal."""

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponseBase
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


def staff_only[View: Callable[..., HttpResponseBase]](view: View) -> View:
    """The view for active staff only; anyone else goes to the one sign-in page
    (staff_member_required alone would send them to the Django admin's)."""
    # A function, not `staff_member_required(login_url=...)` kept in a variable:
    # django-stubs leave that call's result untyped, and so the views behind it.
    return staff_member_required(view, login_url=settings.LOGIN_URL)


def is_fragment_request(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment.

    A history-restore request also carries HX-Request but wants the whole page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx and not htmx.history_restore_request)
