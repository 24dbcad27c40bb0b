"""User mappings: which portal user owns which SteVe idTag.

Every change goes through these services so that it is validated the same way from
the console, the CSV import and the command line, and always lands in the audit log.
"""

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from sessions_app.models import AuditEntry
from sessions_app.services import audit_entry_create
from sync.models import UserMapping

CSV_HEADER = ("steveOcppIdTag", "email", "label")
# SteVe's @IdTag validation (CONTRACT §4): 1-40 of these characters.
ID_TAG_PATTERN = re.compile(r"^[a-zA-Z0-9.:_#-]{1,40}$")

Actor = AbstractBaseUser | AnonymousUser | None


@dataclass
class RejectedRow:
    line: int
    reason: str


@dataclass
class MappingImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    users_created: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)


def _snapshot(mapping: UserMapping) -> dict[str, Any]:
    return {
        "steveOcppIdTag": mapping.steve_ocpp_id_tag,
        "user": mapping.user.get_username(),
        "label": mapping.label,
        "billingCustomerId": mapping.billing_customer_id,
        "isActive": mapping.is_active,
    }


def validate_id_tag(tag: str) -> str:
    """Return the trimmed tag or raise ValidationError with a sentence."""
    tag = tag.strip()
    if not ID_TAG_PATTERN.match(tag):
        raise ValidationError(
            "An idTag is 1 to 40 letters, digits or . : _ # - characters."
        )
    return tag


def validate_tag_is_free(tag: str, *, mapping: UserMapping | None = None) -> None:
    """Raise ValidationError when a mapping other than `mapping` has this tag in
    any letter case.

    OCPP idTags are case-insensitive (CiString), so TAG-0005 and tag-0005 are one
    card: a second mapping for it would split the card's sessions between two
    customers.
    """
    taken = (
        UserMapping.objects.select_related("user")
        .filter(steve_ocpp_id_tag__iexact=tag)
        .exclude(pk=mapping.pk if mapping else None)
        .first()
    )
    if taken is not None:
        raise ValidationError(
            f"The idTag {taken.steve_ocpp_id_tag} is already mapped to "
            f"{taken.user.get_username()}."
        )


@transaction.atomic
def user_mapping_create(
    *,
    actor: Actor,
    steve_ocpp_id_tag: str,
    user: AbstractBaseUser,
    label: str = "",
    billing_customer_id: str = "",
    source: str = "console",
) -> UserMapping:
    """Map a tag to a user. Raises ValidationError (e.g. the tag is already mapped)."""
    tag = validate_id_tag(steve_ocpp_id_tag)
    validate_tag_is_free(tag)
    mapping = UserMapping(
        steve_ocpp_id_tag=tag,
        user=user,
        label=label.strip(),
        billing_customer_id=billing_customer_id.strip(),
    )
    mapping.full_clean()
    mapping.save()
    audit_entry_create(
        actor=actor,
        action=AuditEntry.Action.MAPPING_CREATED,
        object_type="user_mapping",
        object_id=mapping.pk,
        after=_snapshot(mapping),
        source=source,
    )
    return mapping


@transaction.atomic
def user_mapping_update(
    *, actor: Actor, mapping: UserMapping, source: str = "console", **changes: Any
) -> UserMapping:
    """Change a mapping's fields; writes an audit entry only when something changed.

    Raises ValidationError.
    """
    before = _snapshot(mapping)
    for name, value in changes.items():
        setattr(mapping, name, value.strip() if isinstance(value, str) else value)
    mapping.steve_ocpp_id_tag = validate_id_tag(mapping.steve_ocpp_id_tag)
    after = _snapshot(mapping)
    if after == before:
        return mapping
    if after["steveOcppIdTag"] != before["steveOcppIdTag"]:
        validate_tag_is_free(mapping.steve_ocpp_id_tag, mapping=mapping)
    mapping.full_clean()
    mapping.save()
    deactivated = before["isActive"] and not after["isActive"]
    audit_entry_create(
        actor=actor,
        action=(
            AuditEntry.Action.MAPPING_DEACTIVATED
            if deactivated
            else AuditEntry.Action.MAPPING_UPDATED
        ),
        object_type="user_mapping",
        object_id=mapping.pk,
        before=before,
        after=after,
        source=source,
    )
    return mapping


def user_mapping_import_csv(
    *, actor: Actor, lines: Iterable[str], source: str = "import"
) -> MappingImportResult:
    """Import `steveOcppIdTag,email,label` rows; idempotent.

    Creates missing customer accounts (username = email, unusable password). A bad
    row is reported with its line number and reason and the import goes on. Raises
    ValidationError when the header is wrong.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise ValidationError(
            f"The first line must be the header {','.join(CSV_HEADER)}."
        )
    result = MappingImportResult()
    seen_tags: set[str] = set()
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        try:
            with transaction.atomic():
                _import_row(actor, row, seen_tags, result, source)
        except ValidationError as error:
            result.rejected.append(RejectedRow(line, " ".join(error.messages)))
    return result


def user_mapping_import_text(
    *, actor: Actor, text: str, source: str = "import"
) -> MappingImportResult:
    """`user_mapping_import_csv` for an uploaded file's text."""
    return user_mapping_import_csv(
        actor=actor, lines=io.StringIO(text.lstrip("\ufeff"), newline=""), source=source
    )


def _import_row(
    actor: Actor,
    row: list[str],
    seen_tags: set[str],
    result: MappingImportResult,
    source: str,
) -> None:
    if len(row) != len(CSV_HEADER):
        raise ValidationError(f"Expected {len(CSV_HEADER)} columns, found {len(row)}.")
    tag, email, label = (cell.strip() for cell in row)
    tag = validate_id_tag(tag)
    if tag.lower() in seen_tags:
        raise ValidationError(f"The idTag {tag} appears twice in this file.")
    seen_tags.add(tag.lower())
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(
            f"{email or 'An empty value'} is not an email address."
        ) from None
    email = email.lower()
    user, user_created = _customer_for_email(email)
    result.users_created += user_created
    mapping = (
        UserMapping.objects.select_related("user")
        .filter(steve_ocpp_id_tag__iexact=tag)
        .first()
    )
    if mapping is None:
        user_mapping_create(
            actor=actor, steve_ocpp_id_tag=tag, user=user, label=label, source=source
        )
        result.created += 1
        return
    if mapping.user_id != user.pk:
        raise ValidationError(
            f"The idTag {tag} is already mapped to {mapping.user.get_username()}."
        )
    before = _snapshot(mapping)
    user_mapping_update(
        actor=actor, mapping=mapping, label=label, is_active=True, source=source
    )
    if _snapshot(mapping) == before:
        result.unchanged += 1
    else:
        result.updated += 1


def _customer_for_email(email: str) -> tuple[AbstractBaseUser, bool]:
    User = get_user_model()
    user = User.objects.filter(username__iexact=email).first()
    if user is not None:
        return user, False
    user = User(username=email, email=email)
    user.set_unusable_password()
    user.full_clean()
    user.save()
    return user, True
