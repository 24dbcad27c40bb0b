"""User mappings: which portal user owns which SteVe idTag.

Every change goes through these services so that it is validated the same way from
the console, the CSV import and the command line, and always lands in the audit log.
"""

import csv
import io
import re
from collections.abc import Callable, Sequence
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
# An import calls its progress callback every this many lines.
PROGRESS_EVERY = 1000
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
    *,
    actor: Actor,
    lines: Sequence[str],
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> MappingImportResult:
    """Import `steveOcppIdTag,email,label` rows; idempotent.

    Creates missing customer accounts (username = email, unusable password). A bad
    row is reported with its line number and reason and the import goes on; each
    good row is saved on its own. Every line is one row: a tag, an email and a
    label never span lines, so a quote left open rejects its own line instead of
    swallowing the lines after it. `progress(line, total)` is called every
    PROGRESS_EVERY lines. Raises ValidationError when the header is wrong.
    """
    try:
        header = _parse_line(lines[0]) if lines else None
    except ValidationError:
        header = None
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise ValidationError(
            f"The first line must be the header {','.join(CSV_HEADER)}."
        )
    result = MappingImportResult()
    seen_tags: set[str] = set()
    for number, text in enumerate(lines[1:], start=2):
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(number, len(lines))
        if not text.strip():
            continue
        try:
            row = _parse_line(text)
            with transaction.atomic():
                outcome, user_created = _import_row(actor, row, seen_tags, source)
        except ValidationError as error:
            result.rejected.append(RejectedRow(number, " ".join(error.messages)))
            continue
        # Counted once the row is saved: a rejected row created no account.
        setattr(result, outcome, getattr(result, outcome) + 1)
        result.users_created += user_created
    return result


def user_mapping_import_text(
    *,
    actor: Actor,
    text: str,
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> MappingImportResult:
    """`user_mapping_import_csv` for a file's text (a leading BOM is ignored)."""
    lines = io.StringIO(text.removeprefix("\ufeff"), newline="").readlines()
    return user_mapping_import_csv(
        actor=actor, lines=lines, source=source, progress=progress
    )


def user_mapping_import_bytes(
    *,
    actor: Actor,
    data: bytes,
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> MappingImportResult:
    """`user_mapping_import_text` for a file's bytes, which must be UTF-8.

    Raises ValidationError, naming the first line that is not UTF-8, before any
    row is imported.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start : error.start + 1].hex()
        raise ValidationError(
            f"Line {line} is not UTF-8 text (byte 0x{byte}), so nothing was "
            'imported: save the file as UTF-8 ("CSV UTF-8" in a spreadsheet) and '
            "import it again."
        ) from None
    return user_mapping_import_text(
        actor=actor, text=text, source=source, progress=progress
    )


def _parse_line(text: str) -> list[str]:
    """One CSV line's cells. Raises ValidationError with a sentence."""
    if "\x00" in text:
        raise ValidationError(
            "The line holds a NUL character, which no tag, email or label can contain."
        )
    try:
        return next(csv.reader([text.rstrip("\r\n")], strict=True), [])
    except csv.Error as error:
        raise ValidationError(
            f"The line is not valid CSV ({error}): a value holding a comma or a "
            'quote goes in double quotes, with each quote inside doubled ("").'
        ) from None


def _import_row(
    actor: Actor, row: list[str], seen_tags: set[str], source: str
) -> tuple[str, bool]:
    """Save one row; return its outcome (created, updated or unchanged) and whether
    a customer account was created. Raises ValidationError."""
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
    _check_length("email address", email, get_user_model(), "username")
    _check_length("label", label, UserMapping, "label")
    email = email.lower()
    user, user_created = _customer_for_email(email)
    mapping = (
        UserMapping.objects.select_related("user")
        .filter(steve_ocpp_id_tag__iexact=tag)
        .first()
    )
    if mapping is None:
        user_mapping_create(
            actor=actor, steve_ocpp_id_tag=tag, user=user, label=label, source=source
        )
        return "created", user_created
    if mapping.user_id != user.pk:
        raise ValidationError(
            f"The idTag {tag} is already mapped to {mapping.user.get_username()}."
        )
    before = _snapshot(mapping)
    user_mapping_update(
        actor=actor, mapping=mapping, label=label, is_active=True, source=source
    )
    return ("unchanged" if _snapshot(mapping) == before else "updated"), user_created


def _check_length(what: str, value: str, model: Any, field_name: str) -> None:
    limit = model._meta.get_field(field_name).max_length
    if len(value) > limit:
        raise ValidationError(
            f"The {what} is {len(value)} characters long; at most {limit} fit."
        )


def _customer_for_email(email: str) -> tuple[AbstractBaseUser, bool]:
    User = get_user_model()
    user = User.objects.filter(username__iexact=email).first()
    if user is not None:
        return user, False
    user = User(username=email, email=email)
    user.set_unusable_password()
    try:
        user.full_clean()
    except ValidationError as error:
        if "username" not in error.message_dict:
            raise
        raise ValidationError(
            f"{email} cannot be a customer's sign-in name, which holds only "
            "letters, digits and @ . + - _."
        ) from None
    user.save()
    return user, True
