"""Writes shared by the console, the portal and the Sessions API: API tokens and
the audit log."""

import logging
import secrets
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from sessions_app.api.auth import TOKEN_PREFIX, VISIBLE_CHARS, token_hash
from sessions_app.models import ApiToken, AuditEntry

logger = logging.getLogger(__name__)

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
    person = actor if actor is not None and actor.is_authenticated else None
    return AuditEntry(
        actor=person,
        actor_username=person.get_username() if person is not None else "",
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


@transaction.atomic
def api_token_create(
    *, user: User, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `user`, working until `expires_at` (None: until revoked).

    Returns the saved token and the raw token string, which is shown once and never
    stored. Raises ValidationError when `name` is too long.
    """
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        prefix=raw[:VISIBLE_CHARS],
        key_hash=token_hash(raw),
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    logger.info("api_token=%s created for user=%s", token.pk, user.pk)
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke `token` (idempotent: an already revoked token keeps its revoked_at).

    Returns the token as stored.
    """
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db()
    logger.info("api_token=%s revoked", token.pk)
    return token
