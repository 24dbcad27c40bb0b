"""Models of the admin console and of the Sessions API: a module per part,
imported here so that Django finds every model and callers import from
`sessions_app.models`."""

from sessions_app.models.api_sessions import (
    ApiSession,
    ApiSessionQuerySet,
    as_status_message,
    operation_answer_window,
)
from sessions_app.models.audit import AuditEntry
from sessions_app.models.rates import ChargerRate, Rate
from sessions_app.models.tokens import ApiToken

__all__ = [
    "ApiSession",
    "ApiSessionQuerySet",
    "ApiToken",
    "AuditEntry",
    "ChargerRate",
    "Rate",
    "as_status_message",
    "operation_answer_window",
]
