"""Start-up of every entry point: manage.py, the ASGI and WSGI apps, Celery.

Settings raise ImproperlyConfigured with a sentence naming the variable
(polaris/env.py). Uncaught, that sentence ends a traceback; here it is all the
process prints before it stops.
"""

import sys

import django
import redis
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from polaris.env import without_password


def setup_or_exit(*, set_prefix: bool = True) -> None:
    """Load the settings and the apps (once), or exit with status 1 and the
    sentence saying which setting is wrong."""
    if apps.ready:
        return
    try:
        django.setup(set_prefix=set_prefix)
    except ImproperlyConfigured as error:
        sys.exit(f"Polaris cannot start: {error}")


def check_redis_or_exit() -> None:
    """Exit when Redis answers but refuses what REDIS_URL asks of it (a database
    number it does not have, a wrong password): the process would run with its
    sign-in throttle and live updates failing on every request. A Redis that does
    not answer yet is left to the pages and Celery, which say so and retry."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        if redis_refuses_the_settings(error):
            sys.exit(
                f"Polaris cannot start: Redis at "
                f"{without_password(settings.REDIS_URL)} refused it ({error}): "
                "check REDIS_URL's database number and password."
            )
        # Busy, loading, failing over or down: it may answer soon.
    finally:
        client.close()


def redis_refuses_the_settings(error: redis.RedisError) -> bool:
    """A refusal of REDIS_URL itself, which no retry will change."""
    if isinstance(
        error, redis.AuthenticationError | redis.exceptions.NoPermissionError
    ):
        return True
    return isinstance(error, redis.ResponseError) and "DB index" in str(error)


def setup_web_or_exit() -> None:
    """`setup_or_exit` for the ASGI and WSGI apps, which also need ALLOWED_HOSTS
    and a BILLING_BACKEND that imports (commands and Celery need neither), and
    `check_redis_or_exit`.

    Without ALLOWED_HOSTS, outside local mode and DEBUG, Django answers every
    request 400; with a BILLING_BACKEND that does not import, every dashboard hides
    its plan card. Either way the process would look healthy.
    """
    setup_or_exit(set_prefix=False)
    check_redis_or_exit()
    if not settings.ALLOWED_HOSTS and not settings.DEBUG:
        sys.exit(
            "Polaris cannot start: ALLOWED_HOSTS must list the host names this "
            "server answers to, comma-separated (e.g. polaris.example.com)."
        )
    try:
        backend = import_string(settings.BILLING_BACKEND)
        problem = (
            None
            if isinstance(backend, type) and hasattr(backend, "account_for")
            else "it is not a class with an account_for method"
        )
    except ImportError as error:
        problem = str(error)
    if problem:
        sys.exit(
            f"Polaris cannot start: BILLING_BACKEND must be the dotted path of a "
            f"billing backend class, such as portal.billing.LocalBillingBackend, "
            f"not {settings.BILLING_BACKEND!r} ({problem})."
        )
