"""Celery tasks of the Sessions API: thin wrappers over `sessions_app.charging`."""

import logging

from celery import shared_task

from sessions_app import charging

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def api_sessions_advance_all() -> int:
    """Advance every open API session once. It runs linked to each scheduled
    transactions sync (polaris/celery.py), right after it, because it reads what
    the sync stored.

    Not retried: the run after the next sync picks up whatever this one could not
    do, including the sessions left when the soft time limit ended this one.
    """
    return charging.api_sessions_advance_all()
