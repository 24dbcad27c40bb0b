"""Starts and stops made for another user's session: who may, and their audit.

A caller may create or stop a session for themselves; for another user only
staff who `may_manage_any_session`, and each such write is audited.
"""

from typing import Any

from django.contrib.auth.models import User

from sessions_app.api.selectors.sessions import may_manage_any_session
from sessions_app.charging.errors import SessionForbidden
from sessions_app.models import ApiSession, AuditEntry
from sessions_app.services import audit_entry_create

FORBIDDEN_ON_BEHALF = (
    "Your account may not start or stop other customers' sessions: it needs the "
    'permission "Can start and stop any customer\'s API sessions" '
    f"({ApiSession.MANAGE_ANY_PERMISSION}), which an administrator grants in "
    "Django admin."
)


def check_may_manage(caller: User, owner_id: int) -> None:
    """Raise SessionForbidden when `caller` starts or stops a session of another
    user without being allowed to."""
    if caller.pk != owner_id and not may_manage_any_session(caller):
        raise SessionForbidden(FORBIDDEN_ON_BEHALF)


def audit_on_behalf(
    caller: User,
    session: ApiSession,
    action: AuditEntry.Action,
    *,
    before: dict[str, Any] | None,
) -> None:
    """Record in the audit log a start or stop `caller` made for another user's
    `session`: who did it, for whom, on which session and what it led to. A
    caller's writes on their own sessions are not audited (they are the
    session's own history)."""
    if caller.pk == session.user_id:
        return
    audit_entry_create(
        actor=caller,
        action=action,
        object_type="api_session",
        object_id=session.pk,
        before=before,
        after={
            "customer": session.user.get_username(),
            "customer_id": session.user_id,
            "chargestation": session.charge_box_id,
            "connector": session.connector_id,
            "status": session.status,
        },
        source="api",
    )
