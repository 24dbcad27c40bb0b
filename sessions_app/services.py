"""Writes of the admin console."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from sessions_app.models import AuditEntry


def audit_entry_create(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    object_type: str,
    object_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str = "console",
) -> AuditEntry:
    """Append one audit entry; `actor` None (or anonymous) means a command did it."""
    entry = AuditEntry(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        before=before,
        after=after,
        source=source,
    )
    entry.full_clean()
    entry.save()
    return entry
