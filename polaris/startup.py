"""Start-up of every entry point: manage.py, the ASGI and WSGI apps, Celery.

Settings raise ImproperlyConfigured with a sentence naming the variable
(polaris/env.py). Uncaught, that sentence ends a traceback; here it is all the
process prints before it stops.
"""

import sys

import django
from django.apps import apps
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
