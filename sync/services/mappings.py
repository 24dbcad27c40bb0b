"""User mappings: which portal user owns which SteVe idTag.

Every change goes through these services so that it is validated the same way from
the console, the CSV import (`sync.services.imports`) and the command line, and
always lands in the audit log.
"""

import logging
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Field, Max, QuerySet
from django.db.models.functions import Upper

from sessions_app.models import AuditEntry
from sessions_app.services import audit_entry_create
from sync.locks import TAG_SPELLING_LOCK
from sync.models import TransactionSyncState, UserMapping

if TYPE_CHECKING:
    from django.db.models.query import RawQuerySet
    from django_stubs_ext import WithAnnotations

logger = logging.getLogger(__name__)

# SteVe's @IdTag validation (CONTRACT §4): 1-40 of these characters.
ID_TAG_MAX_LENGTH = 40
ID_TAG_PATTERN = re.compile(rf"^[a-zA-Z0-9.:_#-]{{1,{ID_TAG_MAX_LENGTH}}}$")

Actor = User | AnonymousUser | None


def mapping_snapshot(mapping: UserMapping) -> dict[str, Any]:
    """The mapping as its audit entries record it, before and after a change."""
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
    if not tag:
        raise ValidationError("The idTag is missing.")
    if len(tag) > ID_TAG_MAX_LENGTH:
        raise ValidationError(
            f"An idTag is at most {ID_TAG_MAX_LENGTH} characters long; this one "
            f"has {len(tag)}."
        )
    if not ID_TAG_PATTERN.match(tag):
        raise ValidationError(
            "An idTag is 1 to 40 letters, digits or . : _ # - characters."
        )
    return tag


def is_mappable_id_tag(tag: str) -> bool:
    """Whether a mapping may hold `tag`: a station may send SteVe any idTag, but
    SteVe's API takes only these (`@IdTag`), in filters and remote starts."""
    return bool(ID_TAG_PATTERN.fullmatch(tag))


def validate_tag_is_free(tag: str, *, mapping: UserMapping | None = None) -> None:
    """Raise ValidationError when a mapping other than `mapping` has this tag in
    any letter case.

    OCPP idTags are case-insensitive (CiString), so TAG-0005 and tag-0005 are one
    card: a second mapping for it would split the card's sessions between two
    customers.
    """
    others = UserMapping.objects.select_related("user").filter(
        steve_ocpp_id_tag__iexact=tag
    )
    if mapping is not None:
        others = others.exclude(pk=mapping.pk)
    taken = others.first()
    if taken is not None:
        raise ValidationError(
            f"The idTag {taken.steve_ocpp_id_tag} is already mapped to "
            f"{taken.user.get_username()}."
        )


def id_tag_spellings(tags: Collection[str]) -> dict[str, list[str]]:
    """The spellings synced sessions have for the cards of `tags`, by upper-case
    tag, the one of the newest session first (index tss_tag_upper). idTags are
    ASCII (ID_TAG_PATTERN), so Python's upper case is PostgreSQL's."""
    rows = (
        TransactionSyncState.objects.annotate(tag_upper=Upper("ocpp_id_tag"))
        .filter(tag_upper__in=sorted({tag.upper() for tag in tags}))
        .values_list("tag_upper", "ocpp_id_tag")
        .annotate(newest=Max("started_at"))
        .order_by("tag_upper", "-newest")
    )
    spellings: dict[str, list[str]] = {}
    for upper, spelling, _ in rows:
        spellings.setdefault(upper, []).append(spelling)
    return spellings


def id_tags_as_steve_writes(tags: Collection[str]) -> dict[str, str]:
    """How SteVe writes each of `tags`, by upper-case tag: as typed if a synced
    session has it so, else the newest such session's spelling. Tags no synced
    session has are left out.

    Sessions link to their mapping by the exact tag, which keeps those joins on
    their indexes at a million sessions; so a mapping stores the tag as SteVe
    writes it.
    """
    spellings = id_tag_spellings(tags)
    return {
        tag.upper(): tag if tag in found else found[0]
        for tag in tags
        if (found := spellings.get(tag.upper()))
    }


def _as_steve_writes(tag: str) -> str:
    return id_tags_as_steve_writes([tag]).get(tag.upper(), tag)


def id_tags_as_stored(tags: Collection[str]) -> dict[str, str]:
    """The spelling to store each of SteVe's `tags` (oldest first) in, for the
    tags that are to be stored in another.

    OCPP idTags compare case-insensitively (CiString), and stations of two makes
    may give SteVe one card in two letter cases. Sessions link to their mapping
    by the exact tag, so a mapped card's sessions are all stored in one spelling:
    its mapping's, or, while no session has that spelling, SteVe's newest, which
    the sync then respells the mapping to (`user_mappings_spell_as_synced`).
    An unmapped card's sessions keep SteVe's spellings until it is mapped
    (`sessions_respell_for_mappings`).
    """
    by_card: dict[str, list[str]] = {}
    for tag in tags:
        by_card.setdefault(tag.upper(), []).append(tag)
    stored: dict[str, str] = {}
    for upper, mapping in mappings_by_tag(list(by_card)).items():
        spellings = by_card[upper]
        spelling = mapping.steve_ocpp_id_tag
        if any(tag != spelling for tag in spellings):
            if not TransactionSyncState.objects.of_id_tag(spelling).exists():
                spelling = spellings[-1]
            stored.update({tag: spelling for tag in spellings if tag != spelling})
    return stored


def lock_tag_spellings() -> None:
    """Hold TAG_SPELLING_LOCK until the end of the database transaction: a mapping
    saved meanwhile would otherwise miss the sessions a sync batch is writing in
    another spelling, and the batch miss the mapping."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TAG_SPELLING_LOCK])


def sessions_respell(spellings: dict[str, str]) -> int:
    """Store the sessions of each idTag in `spellings` in the card's spelling it
    maps to, with their events and the energy rollup of their tag. Returns how
    many sessions changed.

    Every read is by exact tag (or session) on an index, so a spelling with no
    sessions costs three index probes. Their updatedAt stays: the sessions did
    not change, only the letter case their customer is found by.
    """
    if not spellings:
        return 0
    old, new = zip(*sorted(spellings.items()), strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH respelled AS (
                UPDATE transaction_sync_state AS s SET "ocppIdTag" = f.card
                  FROM unnest(%s::text[], %s::text[]) AS f(spelling, card)
                 WHERE s."ocppIdTag" = f.spelling
             RETURNING s.id, f.card
            ), events AS (
                UPDATE synced_transaction_events AS e SET "ocppIdTag" = r.card
                  FROM respelled AS r WHERE e."transactionId" = r.id
            )
            SELECT count(*) FROM respelled
            """,
            [list(old), list(new)],
        )
        (respelled,) = cursor.fetchone()
        # The rollup the events' insert trigger keeps by tag (migration 0006):
        # the old spelling's hours move to the card's.
        cursor.execute(
            """
            WITH moved AS (
                DELETE FROM tag_energy_by_hour AS r
                 USING unnest(%s::text[], %s::text[]) AS f(spelling, card)
                 WHERE r."ocppIdTag" = f.spelling
             RETURNING f.card, r.hour, r.kwh
            )
            INSERT INTO tag_energy_by_hour AS r ("ocppIdTag", hour, kwh)
            SELECT card, hour, SUM(kwh) FROM moved GROUP BY 1, 2
                ON CONFLICT ("ocppIdTag", hour) DO UPDATE SET kwh = r.kwh + EXCLUDED.kwh
            """,
            [list(old), list(new)],
        )
    if respelled:
        logger.info("%s sessions respelled as their cards' mappings", respelled)
    return int(respelled)


def sessions_respell_for_mappings(tags: Collection[str]) -> None:
    """Store the sessions of the cards of `tags`, mappings' spellings, in those
    spellings, whatever letter case SteVe gave them in (index tss_tag_upper).
    Call it under `lock_tag_spellings`."""
    spellings = id_tag_spellings(tags)
    sessions_respell(
        {
            spelling: tag
            for tag in tags
            for spelling in spellings.get(tag.upper(), [])
            if spelling != tag
        }
    )


@transaction.atomic
def user_mapping_create(
    *,
    actor: Actor,
    steve_ocpp_id_tag: str,
    user: User,
    label: str = "",
    billing_customer_id: str = "",
    is_active: bool = True,
    source: str = "console",
) -> UserMapping:
    """Map a tag to a user, the tag as SteVe writes it if a synced session has it
    (`id_tags_as_steve_writes`). An unsaved `user` (`new_customer_account`) is
    saved with the mapping, or not at all. The card's sessions SteVe gave in
    another letter case are stored in the mapping's spelling. Raises
    ValidationError (e.g. the tag is already mapped)."""
    lock_tag_spellings()
    tag = _as_steve_writes(validate_id_tag(steve_ocpp_id_tag))
    validate_tag_is_free(tag)
    if user.pk is None:
        _save_new_account(user)
    mapping = UserMapping(
        steve_ocpp_id_tag=tag,
        user=user,
        label=label.strip(),
        billing_customer_id=billing_customer_id.strip(),
        is_active=is_active,
    )
    mapping.full_clean()
    _save_mapping(mapping)
    sessions_respell_for_mappings([mapping.steve_ocpp_id_tag])
    audit_entry_create(
        actor=actor,
        action=AuditEntry.Action.MAPPING_CREATED,
        object_type="user_mapping",
        object_id=mapping.pk,
        after=mapping_snapshot(mapping),
        source=source,
    )
    return mapping


@transaction.atomic
def user_mapping_update(
    *, actor: Actor, mapping: UserMapping, source: str = "console", **changes: Any
) -> UserMapping:
    """Change a mapping's fields; writes an audit entry only when something changed.
    A tag given is stored as SteVe writes it, and an unsaved user saved with the
    change, as `user_mapping_create` does.

    Raises ValidationError.
    """
    customer = changes.get("user")
    if customer is not None and customer.pk is None:
        _save_new_account(customer)
    before = mapping_snapshot(mapping)
    for name, value in changes.items():
        setattr(mapping, name, value.strip() if isinstance(value, str) else value)
    mapping.steve_ocpp_id_tag = validate_id_tag(mapping.steve_ocpp_id_tag)
    if "steve_ocpp_id_tag" in changes:
        lock_tag_spellings()
        mapping.steve_ocpp_id_tag = _as_steve_writes(mapping.steve_ocpp_id_tag)
    after = mapping_snapshot(mapping)
    if after == before:
        return mapping
    retagged = after["steveOcppIdTag"] != before["steveOcppIdTag"]
    if retagged:
        validate_tag_is_free(mapping.steve_ocpp_id_tag, mapping=mapping)
    # The tag's one-spelling constraint is asked only of a new tag: a database
    # stopped by migration 0026 holds cards in two spellings, and staff must be
    # able to deactivate and rename them, as its message says.
    mapping.full_clean(validate_constraints=False)
    mapping.validate_constraints(exclude=None if retagged else {"steve_ocpp_id_tag"})
    _save_mapping(mapping)
    if retagged:
        sessions_respell_for_mappings([mapping.steve_ocpp_id_tag])
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


class _ImportEmail(TypedDict):
    import_email: str


def customers_by_email(emails: Collection[str]) -> dict[str, User]:
    """The accounts whose username or email address is one of `emails` in any
    letter case, by email as given: a username match first, else the oldest
    account with the address. The import and the console's mapping form both
    find customers so."""
    user_model = get_user_model()
    quote = connection.ops.quote_name
    username = user_model._meta.get_field(user_model.USERNAME_FIELD)
    address = user_model._meta.get_field(user_model.get_email_field_name())
    # They are columns of the table (get_field may also return a relation).
    assert isinstance(username, Field) and username.column
    assert isinstance(address, Field) and address.column
    assert user_model._meta.pk.column
    table = quote(user_model._meta.db_table)
    pk = quote(user_model._meta.pk.column)

    def matches(column: str, rank: int) -> str:
        # UPPER on both sides, in PostgreSQL, as `iexact` compares: keys
        # upper-cased in Python could differ for a few letters of an
        # internationalised domain (ß). One equality per join, not an OR of two:
        # Postgres hashes each, where the OR compared every email with every
        # account (minutes for an import into a large customer base).
        return (
            f"SELECT e.email, u.{pk} AS user_id, {rank} AS rank "
            f"FROM unnest(%s::text[]) AS e(email) "
            f"JOIN {table} u ON UPPER(u.{quote(column)}) = UPPER(e.email)"
        )

    users = cast(
        # Each user carries the query's extra column, which no field declares.
        "RawQuerySet[WithAnnotations[User, _ImportEmail]]",
        user_model.objects.raw(
            f"SELECT u.*, m.email AS import_email FROM ({matches(username.column, 0)} "
            f"UNION ALL {matches(address.column, 1)}) AS m "
            f"JOIN {table} u ON u.{pk} = m.user_id ORDER BY m.rank, u.{pk}",
            [sorted(emails)] * 2,
        ),
    )
    found: dict[str, User] = {}
    for user in users:
        found.setdefault(user.import_email, user)
    return found


def user_mappings_spell_as_synced(*, tags: Sequence[str]) -> int:
    """Store each mapping typed in another letter case than SteVe's `tags` (the
    idTags of sessions a sync has just stored, oldest first) the way SteVe writes
    it, with an audit entry. Returns how many changed.

    Sessions link to their mapping by the exact tag, and a mapping saved before
    its card's first session synced could not be spelled as SteVe does then
    (`id_tags_as_steve_writes`): without this its sessions would stay unmapped.
    A mapping whose own spelling has sessions keeps it: a card SteVe knows in two
    spellings would otherwise flip between them, each time cutting its customer
    off from the other's sessions. Of two spellings in `tags`, the newest wins.
    """
    synced = {tag.upper(): tag for tag in tags}
    respelled = 0
    for upper, mapping in mappings_by_tag(synced).items():
        spelling = mapping.steve_ocpp_id_tag
        if (
            spelling == synced[upper]
            or TransactionSyncState.objects.of_id_tag(spelling).exists()
        ):
            continue
        try:
            with transaction.atomic():
                user_mapping_update(
                    actor=None,
                    mapping=mapping,
                    source="sync",
                    steve_ocpp_id_tag=synced[upper],
                )
        except Exception:
            # Never a reason to fail the sync (the batch would fail again on every
            # run): the mapping stays as it was.
            logger.exception("mapping=%s not respelled", mapping.pk)
            continue
        logger.info("mapping=%s respelled as SteVe writes it", mapping.pk)
        respelled += 1
    return respelled


class _TagUpper(TypedDict):
    tag_upper: str


def mappings_by_tag(tags: Collection[str]) -> dict[str, UserMapping]:
    """The mappings of `tags` in any letter case, by upper-case tag (idTags are
    ASCII, so Python's upper case is PostgreSQL's); index um_tag_upper_unique."""
    found: dict[str, UserMapping] = {}
    mappings = cast(
        # The Django plugin loses annotate()'s names in the rows of a QuerySet
        # subclass such as UserMappingQuerySet.
        "QuerySet[WithAnnotations[UserMapping, _TagUpper]]",
        UserMapping.objects.select_related("user")
        .annotate(tag_upper=Upper("steve_ocpp_id_tag"))
        .filter(tag_upper__in=sorted(tag.upper() for tag in tags))
        .order_by("steve_ocpp_id_tag"),
    )
    for mapping in mappings:
        found.setdefault(mapping.tag_upper, mapping)
    return found


def _save_mapping(mapping: UserMapping) -> None:
    """Save `mapping`; ValidationError (validate_tag_is_free's) when another
    request mapped its card, in any letter case, since it was checked."""
    try:
        with transaction.atomic():
            mapping.save()
    except IntegrityError:
        validate_tag_is_free(mapping.steve_ocpp_id_tag, mapping=mapping)
        raise


def _save_new_account(user: User) -> None:
    """Save a `new_customer_account`; ValidationError when another request made
    an account with its name since the form looked."""
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise ValidationError(
            f"An account named {user.get_username()} was created a moment ago, "
            "perhaps by a colleague: send the form again to map the tag to it."
        ) from None


def new_customer_account(email: str) -> User:
    """An unsaved customer account for `email`: its username, in lower case as
    the sign-in expects it (polaris.auth_backends), with no password until staff
    set one in Django admin (Polaris sends no email). Raises ValidationError."""
    email = email.strip().lower()
    user = get_user_model()(username=email, email=email)
    user.set_unusable_password()
    try:
        # Unique: `customers_by_email` found no account with this username.
        user.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        if "username" not in error.message_dict:
            raise
        raise ValidationError(
            f"{email} cannot be a customer's sign-in name, which holds only "
            "letters, digits and @ . + - _."
        ) from None
    return user
