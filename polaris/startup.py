"""Start-up of every entry point: manage.py, the ASGI and WSGI apps, Celery.

Settings raise ImproperlyConfigured with a sentence naming the variable
(polaris/env.py). Uncaught, that sentence ends a traceback; here it is all the
process prints before it stops.
"""

import sys

import django
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def setup_or_exit(*, set_prefix: bool = True) -> None:
    """Load the settings and the apps (once), or exit with status 1 and the
    sentence saying which setting is wrong."""
    if apps.ready:
        return
    try:
        django.setup(set_prefix=set_prefix)
    except ImproperlyConfigured as error:
        sys.exit(f"Polaris cannot start: {error}")


def setup_web_or_exit() -> None:
    """`setup_or_exit` for the ASGI and WSGI apps, which also need ALLOWED_HOSTS
    (commands and Celery do not): without it, outside local mode and DEBUG, Django
    answers every request 400 while the process looks healthy."""
    setup_or_exit(set_prefix=False)
    if not settings.ALLOWED_HOSTS and not settings.DEBUG:
        sys.exit(
            "Polaris cannot start: ALLOWED_HOSTS must list the host names this "
            "server answers to, comma-separated (e.g. polaris.example.com)."
        )
