"""Polaris Express settings: every value comes from an environment variable.

`.env.example` lists them all. With DATABASE_URL or REDIS_URL unset, Polaris runs
in *local mode* on an embedded PostgreSQL / Valkey (see polaris/embedded.py), and
the few values a production deployment must set get local defaults.
"""

import logging
import re
import secrets
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from psycopg_pool import ConnectionPool

from polaris import embedded
from polaris.env import (
    application_name,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    env_time_zone,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Services
_database_url = env_url("DATABASE_URL", schemes=("postgres", "postgresql"))
_redis_url = env_url("REDIS_URL", schemes=("redis", "rediss"))
LOCAL_MODE = _database_url is None
DATABASE_URL = _database_url or embedded.postgres_url()
REDIS_URL = _redis_url or embedded.redis_url()


def _local_secret_key() -> str:
    key_file = embedded.data_dir() / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# Core
DEBUG = env_bool("DEBUG", False)
# Server-Timing on every response (polaris/timing.py): off by default, as it tells
# anyone how long the server worked; the load test turns it on.
SERVER_TIMING = env_bool("SERVER_TIMING", False)
SECRET_KEY = env_secret("SECRET_KEY") or (_local_secret_key() if LOCAL_MODE else None)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when DATABASE_URL points at a real database."
    )
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if LOCAL_MODE else []
)
for _host in ALLOWED_HOSTS:
    # A URL here would match no Host header: every request would be a 400.
    if "/" in _host:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must list host names, such as polaris.example.com, "
            f"without a scheme or path: not {_host!r}."
        )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "django_eventstream",
    "ninja",
    "sync",
    "sessions_app",
    "portal",
]

MIDDLEWARE = [
    # Before the host check and the HTTPS redirect, which a load balancer's
    # plain-http probe of one process's address would fail.
    "polaris.health.HealthCheckMiddleware",
    # Next, so that it sees every answer: API errors made outside the API's own
    # endpoints (unknown path, wrong method, Django's error pages) become JSON.
    "sessions_app.api.middleware.ApiJsonErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "polaris.http.SignedOutTabMiddleware",
    "polaris.http.DjangoAdminNulMiddleware",
]

ROOT_URLCONF = "polaris.urls"
ASGI_APPLICATION = "polaris.asgi.application"
WSGI_APPLICATION = "polaris.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
except ValueError:
    raise ImproperlyConfigured(
        "DATABASE_URL is not a URL PostgreSQL can be reached at; quote special "
        "characters in the user name and password (%40 for @, %3A for :)."
    ) from None
# A socket directory given as ?host= (the embedded server) belongs in HOST.
_database_options = DATABASES["default"].get("OPTIONS", {})
if "host" in _database_options:
    DATABASES["default"]["HOST"] = _database_options.pop("host")
# PostgreSQL's JIT compiles a plan whose estimated cost passes jit_above_cost: the
# year of hourly rollups behind a heavy customer's dashboard, the tag search. For
# these short reads compiling costs more than it saves (a 35 ms dashboard took 150
# ms on a server with JIT on). Off for Polaris's sessions, whatever the server says.
_database_options.setdefault("options", "")
_database_options["options"] = f"{_database_options['options']} -c jit=off".strip()
# Each process's connections say which process they are (a name given in the URL
# or in libpq's PGAPPNAME stays).
if not env_str("PGAPPNAME"):
    _database_options.setdefault("application_name", application_name(sys.argv))
DATABASES["default"]["OPTIONS"] = _database_options
# Under ASGI every request runs in a fresh thread; persistent connections would pile up.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Under overload those threads are unbounded, and each opens its own connection until
# Postgres refuses more ("too many clients"). A pool caps them per process: a request
# then waits up to DATABASE_POOL_TIMEOUT s for one of DATABASE_POOL_SIZE connections.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10, minimum=0, maximum=1000)
if DATABASE_POOL_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_SIZE,
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0, maximum=3600),
        # A connection is checked before it is handed out, so after a database
        # restart requests get fresh connections instead of dead ones.
        "check": ConnectionPool.check_connection,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }
}

# Authentication
LOGIN_URL = "/accounts/login/"
AUTHENTICATION_BACKENDS = ["polaris.auth_backends.EmailCaseBackend"]
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
_VALIDATION = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_VALIDATION}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_VALIDATION}.MinimumLengthValidator"},
    {"NAME": f"{_VALIDATION}.CommonPasswordValidator"},
    {"NAME": f"{_VALIDATION}.NumericPasswordValidator"},
]

# Internationalisation and time
LANGUAGE_CODE = "en-us"
POLARIS_TIME_ZONE = env_time_zone("POLARIS_TIME_ZONE", "UTC")
TIME_ZONE = POLARIS_TIME_ZONE
USE_I18N = False
USE_TZ = True

# Static files
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
# WhiteNoise serves STATIC_ROOT once `collectstatic` has filled it (production,
# docs/operations.md) and the finders always; until then it warns at every start of
# every process (demo, tests, bench) that the folder is missing, which is expected.
warnings.filterwarnings(
    "ignore", message=f"No directory at: {re.escape(str(STATIC_ROOT))}"
)

# SteVe API
_steve_default_url = "http://127.0.0.1:8180/steve" if LOCAL_MODE else ""
_steve_default_credential = "polaris" if LOCAL_MODE else None
STEVE_URL = (
    env_url(
        "STEVE_URL",
        schemes=("http", "https"),
        credentials_in="STEVE_USERNAME and STEVE_PASSWORD",
    )
    or _steve_default_url
)
STEVE_USERNAME = env_str("STEVE_USERNAME") or _steve_default_credential
STEVE_PASSWORD = env_secret("STEVE_PASSWORD", _steve_default_credential)
STEVE_TIMEOUT = env_float("STEVE_TIMEOUT", 10.0, maximum=3600)
# SteVe holds an OCPP operation open until the station answers, up to 30 s; giving
# up earlier would let a station start a charge that Polaris thinks was refused,
# so a value that does is refused at start.
STEVE_OPERATION_TIMEOUT = env_float(
    "STEVE_OPERATION_TIMEOUT", 35.0, minimum=30.0, maximum=3600
)

# Sync
# The upper bounds keep a value that passes here from overflowing later, in a sync
# run's timedelta or the beat's schedule: a day between runs, a year of hours.
DAY_SECONDS = 86_400
YEAR_HOURS = 8_760
SYNC_INTERVAL_SECONDS = env_int(
    "SYNC_INTERVAL_SECONDS", 10, minimum=1, maximum=DAY_SECONDS
)
CHARGER_PROBE_INTERVAL_SECONDS = env_int(
    "CHARGER_PROBE_INTERVAL_SECONDS", 300, minimum=1, maximum=DAY_SECONDS
)
# A reconcile re-reads every transaction started in the last SYNC_RECONCILE_DAYS,
# every SYNC_RECONCILE_INTERVAL_SECONDS, to flag the ones SteVe deleted since (with
# their tag or charge box); the incremental run only sees that for open sessions.
SYNC_RECONCILE_INTERVAL_SECONDS = env_int(
    "SYNC_RECONCILE_INTERVAL_SECONDS", 3600, minimum=1, maximum=DAY_SECONDS
)
SYNC_RECONCILE_DAYS = env_int("SYNC_RECONCILE_DAYS", 7, minimum=1, maximum=366)
# Sync runs that changed nothing are deleted once this many days old (daily, by beat).
SYNC_RUNS_RETENTION_DAYS = env_int(
    "SYNC_RUNS_RETENTION_DAYS", 30, minimum=1, maximum=3650
)
# How long a manual stop in SteVe stays open to replacement by a late station stop.
SYNC_MANUAL_STOP_GRACE_HOURS = env_int(
    "SYNC_MANUAL_STOP_GRACE_HOURS", 48, minimum=0, maximum=YEAR_HOURS
)
# An active transaction with no reading for this long is flagged as suspected stuck.
SYNC_STUCK_AFTER_HOURS = env_int(
    "SYNC_STUCK_AFTER_HOURS", 12, minimum=1, maximum=YEAR_HOURS
)

# Sessions API
# A created session whose station has not started charging this many seconds after
# the remote start is cancelled (the seed's 120 s).
API_SESSION_START_TIMEOUT_SECONDS = env_int(
    "API_SESSION_START_TIMEOUT_SECONDS", 120, minimum=1, maximum=DAY_SECONDS
)

# Billing
# Dotted path of the billing backend (portal.billing.BillingBackend).
BILLING_BACKEND = env_str("BILLING_BACKEND", "portal.billing.LocalBillingBackend")

# Celery
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1, maximum=DAY_SECONDS
)
CELERY_TASK_TIME_LIMIT = env_int(
    "CELERY_TASK_TIME_LIMIT", 150, minimum=1, maximum=DAY_SECONDS
)
# The soft limit raises inside the task, so it can end cleanly; at or past the hard
# limit it would never fire before the worker kills the task.
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT}) must be below "
        f"CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT})."
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True


# Live updates (SSE)
def _redis_kwargs(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    kwargs: dict[str, object] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
    }
    if parts.password:
        kwargs["password"] = parts.password
    if parts.scheme == "rediss":
        kwargs["ssl"] = True
    # The database REDIS_URL names, as the broker and the cache use it: the replay
    # of live events is kept there too, not in database 0 whatever the URL says.
    # (env_url has checked that the path is one.)
    kwargs["db"] = int(parts.path.strip("/") or 0)
    return kwargs


EVENTSTREAM_REDIS = _redis_kwargs(REDIS_URL)
EVENTSTREAM_STORAGE_CLASS = "polaris.live.RedisStorage"
EVENTSTREAM_STORAGE_CONNECTION = EVENTSTREAM_REDIS
EVENTSTREAM_CHANNELMANAGER_CLASS = "polaris.live.ChannelManager"
# Redis pub/sub ignores the database number: environments sharing one Redis (or
# parallel test runs) keep their live channels apart with a prefix. By default it
# names the database: two environments given different Redis databases, as their
# broker queues need anyway, then never see each other's live events.
LIVE_CHANNEL_PREFIX = env_str("LIVE_CHANNEL_PREFIX", f"db{EVENTSTREAM_REDIS['db']}-")
# A stream is authorised when it connects; it ends after at most this many seconds
# (browsers reconnect and replay, and the reconnect checks again who may read), so a
# user deactivated, no longer staff or no longer acting as a customer stops getting
# events by then. Signing out ends a session's streams at once.
LIVE_STREAM_MAX_SECONDS = env_int(
    "LIVE_STREAM_MAX_SECONDS", 300, minimum=1, maximum=DAY_SECONDS
)
# Streams one user may hold open in one web process (tabs and devices together);
# one more ends at once and its browser tries again 30 s later.
LIVE_STREAMS_PER_USER = env_int("LIVE_STREAMS_PER_USER", 20, minimum=1)

# Logging
# uvicorn configures its loggers before it loads the application, and with
# --no-access-log (the demo's, the load test's or an operator's choice) leaves
# its access logger with no handler and not propagating: the setting below
# keeps it so, rather than send every request to the root handler.
_uvicorn_access = logging.getLogger("uvicorn.access")
_UVICORN_ACCESS_LOG_OFF = not _uvicorn_access.handlers and not _uvicorn_access.propagate
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "polaris.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "polaris": {"level": "INFO"},
        "sync": {"level": "INFO"},
        "sessions_app": {"level": "INFO"},
        "portal": {"level": "INFO"},
        # Through the root handler, uvicorn's startup and access lines take our
        # format too.
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": not _UVICORN_ACCESS_LOG_OFF},
    },
}


# Security
# Production (a real DATABASE_URL, DEBUG off, a public host name in ALLOWED_HOSTS)
# is HTTPS-only by default. Local mode (`manage.py demo`) and processes that answer
# only on loopback names (the tests' uvicorn and Celery children) serve plain http
# and must not redirect to https or mark cookies Secure. Behind a proxy the Host
# header is the public name, so a deployment always lists one. Each default can be
# overridden by its variable.
from django.utils.csp import CSP  # noqa: E402

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
_public_host = any(host not in _LOOPBACK_HOSTS for host in ALLOWED_HOSTS)
_https_default = not LOCAL_MODE and not DEBUG and _public_host
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _https_default)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", _https_default)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# Pages send the CSRF token from the template (hx-headers), never from the cookie.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 31_536_000 if _https_default else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _https_default)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The DEBUG error page and error emails show the settings: not the URLs' passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "polaris.error_reports.PasswordMaskingFilter"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# uvicorn --proxy-headers already turns X-Forwarded-Proto into the request scheme;
# set this (e.g. X-Forwarded-Proto) only for a server that does not, and only
# behind a proxy that always sets or strips that header.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header and not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER must be a header name such as X-Forwarded-Proto, "
        f"not {_proxy_ssl_header!r}."
    )
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _proxy_ssl_header.upper().replace("-", "_"),
        "https",
    )
# Origins (scheme://host) allowed to POST besides the site itself, e.g. when the
# proxy's public host differs from the Host header the app sees.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            "CSRF_TRUSTED_ORIGINS must list origins with their scheme, such as "
            f"https://polaris.example.com, not {_origin!r}."
        )
# Content Security Policy (Django's own middleware): scripts and styles only from
# our static files, no inline scripts, no eval; SSE and htmx requests same-origin.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Login throttling (polaris/throttle.py): this many failures for one username from
# one address lock that pair for LOGIN_LOCKOUT_SECONDS, and this many from one
# address, whatever the usernames, lock the address.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 100, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int(
    "LOGIN_LOCKOUT_SECONDS", 900, minimum=1, maximum=365 * DAY_SECONDS
)
