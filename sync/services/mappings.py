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
from django.db.models import Field, QuerySet
from django.db.models.functions import Upper

from sessions_app.models import AuditEntry
from sessions_app.services import audit_entry_create
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


def id_tags_as_steve_writes(tags: Collection[str]) -> dict[str, str]:
    """How SteVe writes each of `tags`, by upper-case tag: the idTag of a synced
    session equal to it in any letter case (of the newest such session, should
    SteVe have used two). Tags no synced session has are left out.

    Sessions link to their mapping by the exact tag, which keeps those joins on
    their indexes at a million sessions; so a mapping stores the tag as SteVe
    writes it. A tag found as typed costs an index lookup; the others that hold
    letters, one read of every session's idTag (no index holds them upper-cased),
    which a mapping's rare save can afford.
    """
    quote = connection.ops.quote_name
    table = quote(TransactionSyncState._meta.db_table)
    tag_field = TransactionSyncState._meta.get_field("ocpp_id_tag")
    # A column of the table (get_field may also return a relation).
    assert isinstance(tag_field, Field) and tag_field.column
    tag_column = quote(tag_field.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT typed.tag FROM unnest(%s::text[]) AS typed(tag) WHERE EXISTS "
            f"(SELECT 1 FROM {table} s WHERE s.{tag_column} = typed.tag)",
            [sorted(tags)],
        )
        found = {tag.upper(): tag for (tag,) in cursor.fetchall()}
    # A tag without letters has one spelling. idTags are ASCII (ID_TAG_PATTERN),
    # so Python's upper case is PostgreSQL's.
    other_cases = {
        tag.upper()
        for tag in tags
        if tag.upper() not in found and tag.upper() != tag.lower()
    }
    if other_cases:
        spellings = (
            TransactionSyncState.objects.annotate(tag_upper=Upper("ocpp_id_tag"))
            .filter(tag_upper__in=sorted(other_cases))
            .order_by("tag_upper", "-started_at")
            .distinct("tag_upper")
            .values_list("tag_upper", "ocpp_id_tag")
        )
        found.update(spellings)
    return found


def _as_steve_writes(tag: str) -> str:
    return id_tags_as_steve_writes([tag]).get(tag.upper(), tag)


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
    saved with the mapping, or not at all. Raises ValidationError (e.g. the tag
    is already mapped)."""
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
        mapping.steve_ocpp_id_tag = _as_steve_writes(mapping.steve_ocpp_id_tag)
    after = mapping_snapshot(mapping)
    if after == before:
        return mapping
    if after["steveOcppIdTag"] != before["steveOcppIdTag"]:
        validate_tag_is_free(mapping.steve_ocpp_id_tag, mapping=mapping)
    mapping.full_clean()
    _save_mapping(mapping)
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
