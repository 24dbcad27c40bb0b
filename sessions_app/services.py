"""Writes of the admin console."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from sessions_app.models import AuditEntry

Actor = User | AnonymousUser | None


def audit_entry_create(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str = "console",
) -> AuditEntry:
    """Append one audit entry; `actor` None (or anonymous) means a command did it."""
    entry = audit_entry_build(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=before,
        after=after,
        source=source,
    )
    entry.full_clean()
    entry.save()
    return entry


def audit_entry_build(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str = "console",
) -> AuditEntry:
    """An unsaved audit entry, for `audit_entries_create`."""
    return AuditEntry(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        before=before,
        after=after,
        source=source,
    )


def audit_entries_create(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Append entries from `audit_entry_build` in one INSERT. Raises
    ValidationError.

    Validated like `audit_entry_create` except for the actor's existence, which
    would cost a query per entry: the actor is the signed-in user making the change.
    """
    for entry in entries:
        entry.full_clean(exclude=["actor"])
    return AuditEntry.objects.bulk_create(entries)
