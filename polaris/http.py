"""Request helpers shared by the console and the portal."""

from django.http import HttpRequest


def is_fragment_request(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment.

    A history-restore request also carries HX-Request but wants the whole page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request
