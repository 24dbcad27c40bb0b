"""The CSV import of user mappings: `steveOcppIdTag,email,label` rows, each saved
as `user_mapping_create`/`user_mapping_update` would save it, a chunk at a time.

Kept apart from `sync.services.mappings`, whose validation and lookups it reuses:
reading the file, reporting each rejected line and the chunked bulk writes are a
module's worth of code of their own.
"""

import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from sessions_app.models import AuditEntry
from sessions_app.services import audit_entries_create, audit_entry_build
from sync.models import UserMapping
from sync.services.mappings import (
    Actor,
    customers_by_email,
    id_tags_as_steve_writes,
    lock_tag_spellings,
    mapping_snapshot,
    mappings_by_tag,
    new_customer_account,
    sessions_respell_for_mappings,
    validate_id_tag,
)

logger = logging.getLogger(__name__)

CSV_HEADER = ("steveOcppIdTag", "email", "label")
# An import calls its progress callback every this many lines.
PROGRESS_EVERY = 1000


@dataclass
class RejectedRow:
    line: int
    reason: str


@dataclass
class MappingImportResult:
    created: int = 0
    updated: int = 0
    # Of the updated: deactivated mappings the file switched back on (a row in the
    # file is an active mapping), said aloud because staff switched them off.
    reactivated: int = 0
    unchanged: int = 0
    users_created: int = 0
    # Of the created and updated: tags stored as SteVe writes them, not as the
    # file did (sessions link to mappings by the exact tag).
    respelled: int = 0
    # Of the created: tags no synced session has yet, so their letter case could
    # not be checked.
    never_synced: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """How many rows the file had under its header (blank lines aside)."""
        return self.created + self.updated + self.unchanged + len(self.rejected)

    def counts(self) -> str:
        """'3 created, 2 updated (1 reactivated), 0 unchanged, 1 skipped'."""
        again = f" ({self.reactivated} reactivated)" if self.reactivated else ""
        return (
            f"{self.created:,} created, {self.updated:,} updated{again}, "
            f"{self.unchanged:,} unchanged, {len(self.rejected):,} skipped"
        )

    def tag_notes(self) -> str:
        """What the import did with the tags' letter case, as sentences each led
        by a space; "" when there is nothing to say. Sessions link to mappings by
        the exact tag, which is SteVe's, not always the file's."""
        notes = ""
        if self.respelled:
            n = self.respelled
            notes += (
                f" {n:,} idTag{pluralize(n)} {pluralize(n, 'was,were')} stored in "
                "the letter case SteVe uses, not the file's."
            )
        if self.never_synced:
            n = self.never_synced
            which = "this idTag" if n == self.rows == 1 else f"{n:,} of the new idTags"
            notes += (
                f" No session with {which} has synced yet; the sync stores "
                f"{pluralize(n, 'it,them')} in SteVe's letter case with the first one."
            )
        return notes


def user_mapping_import_csv(
    *,
    actor: Actor,
    lines: Sequence[str],
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> MappingImportResult:
    """Import `steveOcppIdTag,email,label` rows; idempotent.

    A row's customer is the account with its email as username or address, in
    any letter case; missing ones are created (username = email, unusable
    password). A bad row is reported with its line number and reason and the
    import goes on. Every line is one row: a tag, an email and a label never span
    lines, so a quote left open rejects its own line instead of swallowing the
    lines after it.

    Rows are saved in chunks of PROGRESS_EVERY lines, each in one transaction with a
    bounded number of queries (see `_import_chunk`); `progress(line, total)` is
    called every PROGRESS_EVERY lines, once every row above `line` is saved. Raises
    ValidationError when the header is wrong.
    """
    try:
        header = _parse_line(lines[0]) if lines else None
    except ValidationError:
        header = None
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise ValidationError(
            f"The first line must be the header {','.join(CSV_HEADER)}"
            + _header_found(lines[0] if lines else "")
        )
    result = MappingImportResult()
    # Each imported tag's line: only a row that is imported claims its tag, so
    # a corrected row after a skipped one is the tag's mapping.
    claimed: dict[str, int] = {}
    chunk: list[_Row] = []
    for number, text in enumerate(lines[1:], start=2):
        if number % PROGRESS_EVERY == 0:
            _import_chunk(actor, chunk, source, result, claimed)
            chunk = []
            if progress is not None:
                progress(number, len(lines))
        if not text.strip():
            continue
        try:
            chunk.append(_checked_row(number, _parse_line(text)))
        except ValidationError as error:
            result.rejected.append(RejectedRow(number, " ".join(error.messages)))
    _import_chunk(actor, chunk, source, result, claimed)
    result.rejected.sort(key=lambda rejected: rejected.line)
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
        if "field larger than field limit" in str(error):
            raise ValidationError(
                f"A value on the line is longer than {csv.field_size_limit():,} "
                "characters, far more than a tag, email or label can hold."
            ) from None
        raise ValidationError(
            f"The line is not valid CSV ({error}): a value holding a comma or a "
            'quote goes in double quotes, with each quote inside doubled ("").'
        ) from None


@dataclass(frozen=True)
class _Row:
    """A row that passed the checks needing no database: its tag is valid, its
    email is an address; the email is lower case."""

    line: int
    tag: str
    email: str
    label: str


def _checked_row(number: int, row: list[str]) -> _Row:
    """The row at line `number`, checked. Raises ValidationError."""
    if len(row) != len(CSV_HEADER):
        raise ValidationError(f"Expected {len(CSV_HEADER)} columns, found {len(row)}.")
    tag, email, label = (cell.strip() for cell in row)
    tag = validate_id_tag(tag)
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(
            f"{email or 'An empty value'} is not an email address."
        ) from None
    _check_length("email address", email, get_user_model(), "username")
    _check_length("label", label, UserMapping, "label")
    return _Row(number, tag, email.lower(), label)


def _check_length(what: str, value: str, model: Any, field_name: str) -> None:
    limit = model._meta.get_field(field_name).max_length
    if len(value) > limit:
        raise ValidationError(
            f"The {what} is {len(value)} characters long; at most {limit} fit."
        )


# Tries of a chunk whose writes collide with a tag or an account another process
# saved after the chunk read them: each try reads again, so it sees the newcomer.
CHUNK_TRIES = 3


def _import_chunk(
    actor: Actor,
    rows: list[_Row],
    source: str,
    result: MappingImportResult,
    claimed: dict[str, int],
) -> None:
    """Save `rows` in one transaction and add their outcome to `result`, and
    their tags to `claimed`."""
    if not rows:
        return
    for attempt in range(1, CHUNK_TRIES + 1):
        try:
            with transaction.atomic():
                chunk, claimed_here = _write_chunk(actor, rows, source, claimed)
        except IntegrityError:
            if attempt == CHUNK_TRIES:
                raise
            logger.info(
                "mapping import: chunk at line %s collided; retrying", rows[0].line
            )
        else:
            break
    # Counted once the chunk is saved: a rejected row created no account.
    claimed.update(claimed_here)
    result.created += chunk.created
    result.updated += chunk.updated
    result.reactivated += chunk.reactivated
    result.unchanged += chunk.unchanged
    result.users_created += chunk.users_created
    result.respelled += chunk.respelled
    result.never_synced += chunk.never_synced
    result.rejected.extend(chunk.rejected)


def _write_chunk(
    actor: Actor, rows: list[_Row], source: str, claimed: Mapping[str, int]
) -> tuple[MappingImportResult, dict[str, int]]:
    """Save `rows`, each decided as `user_mapping_create`/`user_mapping_update`
    would, in a fixed number of queries: two reads (accounts, mappings) and one
    write per table; with the tags they claimed, each not in `claimed` (earlier
    lines) nor claimed by an earlier row. Raises IntegrityError when another
    process saved one of these tags or accounts since the reads."""
    chunk = MappingImportResult()
    claimed_here: dict[str, int] = {}
    lock_tag_spellings()
    users = customers_by_email({row.email for row in rows})
    mappings = mappings_by_tag({row.tag for row in rows})
    spellings = id_tags_as_steve_writes({row.tag for row in rows})
    new_users: dict[str, User] = {}
    needed_users: dict[str, User] = {}
    # (mapping, snapshot before or None when it is new), in the file's order.
    saved: list[tuple[UserMapping, dict[str, Any] | None]] = []
    now = timezone.now()
    for row in rows:
        try:
            first = claimed.get(row.tag.lower()) or claimed_here.get(row.tag.lower())
            if first is not None:
                raise ValidationError(
                    f"The idTag {row.tag} is on line {first} already; a tag maps "
                    "to one customer."
                )
            user = users.get(row.email) or new_users.get(row.email)
            if user is None:
                user = new_users[row.email] = new_customer_account(row.email)
            mapping = mappings.get(row.tag.upper())
            steve_tag = spellings.get(row.tag.upper())
            # Stored as SteVe writes it, not as the file does.
            respelled = steve_tag is not None and steve_tag != row.tag
            if mapping is None:
                mapping = UserMapping(
                    steve_ocpp_id_tag=steve_tag or row.tag, user=user, label=row.label
                )
                before = None
            elif mapping.user_id != user.pk:
                # A file never moves a card: a wrong email in it would hand a
                # customer's sessions to someone else without anyone looking.
                raise ValidationError(
                    f"The idTag {row.tag} is already mapped to "
                    f"{mapping.user.get_username()}; to move it to another customer, "
                    "edit that mapping in the console."
                )
            else:
                before = mapping_snapshot(mapping)
                mapping.label, mapping.is_active = row.label, True
                mapping.steve_ocpp_id_tag = steve_tag or mapping.steve_ocpp_id_tag
                if mapping_snapshot(mapping) == before:
                    chunk.unchanged += 1
                    chunk.respelled += respelled
                    claimed_here[row.tag.lower()] = row.line
                    continue
                mapping.updated_at = now
            # The user may not be saved yet, and the tag was checked above.
            mapping.full_clean(
                exclude=["user"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as error:
            chunk.rejected.append(RejectedRow(row.line, " ".join(error.messages)))
            continue
        if user.pk is None:
            needed_users[row.email] = user
        saved.append((mapping, before))
        claimed_here[row.tag.lower()] = row.line
        chunk.respelled += respelled
        if steve_tag is None and before is None:
            chunk.never_synced += 1
    get_user_model().objects.bulk_create(needed_users.values())
    UserMapping.objects.bulk_create([m for m, before in saved if before is None])
    UserMapping.objects.bulk_update(
        [m for m, before in saved if before is not None],
        ["steve_ocpp_id_tag", "label", "is_active", "updated_at"],
    )
    sessions_respell_for_mappings([m.steve_ocpp_id_tag for m, _ in saved])
    audit_entries_create(
        [
            audit_entry_build(
                actor=actor,
                action=(
                    AuditEntry.Action.MAPPING_CREATED
                    if before is None
                    else AuditEntry.Action.MAPPING_UPDATED
                ),
                object_type="user_mapping",
                object_id=mapping.pk,
                before=before,
                after=mapping_snapshot(mapping),
                source=source,
            )
            for mapping, before in saved
        ]
    )
    chunk.users_created = len(needed_users)
    chunk.created = sum(before is None for _, before in saved)
    chunk.updated = len(saved) - chunk.created
    chunk.reactivated = sum(
        before is not None and not before["isActive"] for _, before in saved
    )
    return chunk, claimed_here


def _header_found(line: str) -> str:
    """The end of the wrong-header sentence: what the first line holds instead."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return "; the file is empty."
    shown = line if len(line) <= 60 else line[:59] + "…"
    if ";" in line and "," not in line:
        return (
            f"; it is {shown!r}, separated by semicolons: save the file as CSV "
            "with commas."
        )
    return f"; it is {shown!r}."
