"""The Celery app: one broker (Redis), one beat schedule, settings from Django."""

import logging.config
import os

from celery import Celery
from celery.signals import setup_logging, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polaris.settings")

app = Celery("polaris")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The project's own tasks: polaris is the project package, not an installed app.
app.conf.include = ["polaris.tasks"]

# By name: the task modules import Django models, which are not ready yet here.
# Immutable: it does not take the sync task's result as an argument.
API_SESSIONS_ADVANCE = app.signature(
    "sessions_app.tasks.api_sessions_advance_all", immutable=True
)


@app.on_configure.connect
def _load_django(sender: Celery, **kwargs: object) -> None:
    # Before Celery reads the settings: a malformed variable then stops `celery
    # worker` and `celery beat` with its sentence, not a traceback.
    from polaris.startup import setup_or_exit

    setup_or_exit()


@worker_init.connect
def _check_redis(**kwargs: object) -> None:
    # The worker would retry a refused database number a hundred times, saying
    # only that it cannot connect. In the worker only: a web process configures
    # Celery at its first queued task, inside a request, and beat's own start
    # signal comes after it has opened its schedule.
    from polaris.startup import check_redis_or_exit

    check_redis_or_exit()


@setup_logging.connect
def _log_as_the_web_does(loglevel: int | str | None = None, **kwargs: object) -> None:
    # Connected, this stops Celery from replacing the root logger's handler with
    # its own text lines: the worker and beat log as settings.LOGGING says (JSON
    # with LOG_FORMAT=json), as every other process does. Celery's own lines
    # (started, ready, each task) keep the --loglevel they were given.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)


@app.on_after_configure.connect
def _schedule_periodic_tasks(sender: Celery, **kwargs: object) -> None:
    # Read the intervals once Django settings are loaded (they come from the env).
    from django.conf import settings

    sender.conf.beat_schedule = {
        # Every schedule is an interval counted from beat's start, set by one
        # variable each; the sync's 10 s default is finer than a crontab can say.
        # Every SYNC_INTERVAL_SECONDS (10 s by default).
        "sync-transactions": {
            "task": "sync.tasks.sync_run_transactions",
            "schedule": float(settings.SYNC_INTERVAL_SECONDS),
            "options": {
                "expires": float(settings.SYNC_INTERVAL_SECONDS),
                # The Sessions API advance reads what the sync stored, so it runs
                # right after each one: on its own schedule it ran beside the sync
                # and saw a stop up to an interval late (a session still "started"
                # with its chargingStop already set).
                "link": API_SESSIONS_ADVANCE,
            },
        },
        # Every CHARGER_PROBE_INTERVAL_SECONDS (5 minutes by default).
        "probe-chargers": {
            "task": "sync.tasks.sync_run_chargers",
            "schedule": float(settings.CHARGER_PROBE_INTERVAL_SECONDS),
            "options": {"expires": float(settings.CHARGER_PROBE_INTERVAL_SECONDS)},
        },
        # Every SYNC_RECONCILE_INTERVAL_SECONDS (an hour by default).
        "reconcile-transactions": {
            "task": "sync.tasks.sync_run_reconcile",
            "schedule": float(settings.SYNC_RECONCILE_INTERVAL_SECONDS),
            "options": {"expires": float(settings.SYNC_RECONCILE_INTERVAL_SECONDS)},
        },
        # Once a day.
        "prune-sync-runs": {
            "task": "sync.tasks.sync_runs_prune",
            "schedule": float(settings.DAY_SECONDS),
            "options": {"expires": float(settings.DAY_SECONDS)},
        },
        # Once a day.
        "clear-expired-sign-ins": {
            "task": "polaris.tasks.sign_ins_clear_expired",
            "schedule": float(settings.DAY_SECONDS),
            "options": {"expires": float(settings.DAY_SECONDS)},
        },
    }
