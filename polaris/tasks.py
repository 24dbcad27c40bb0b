"""Celery tasks of the project as a whole, beside those of its apps."""

from importlib import import_module

from celery import shared_task
from django.conf import settings


@shared_task(ignore_result=True)
def sign_ins_clear_expired() -> None:
    """Delete the sign-in sessions past their expiry. Django keeps them until
    told (its `clearsessions` command does the same), so without this the table
    would keep a row of every sign-in for good."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
