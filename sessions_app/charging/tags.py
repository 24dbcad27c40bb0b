"""Which of a customer's idTags a remote start sends."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from portal.models import Reservation
from sessions_app.charging.errors import SessionConflict, SessionInvalid
from sessions_app.models import ApiSession
from sync.client import format_timestamp
from sync.models import Charger, UserMapping


def tag_for(
    user: User,
    charge_box_id: str,
    connector_id: int,
    *,
    session: ApiSession | None = None,
    scheduled: bool = False,
) -> str:
    """The tag of the user's reservation holding this connector, as the station
    lets only that tag charge there; else one of the user's active tags, the first
    that no charge holds: neither a transaction SteVe runs nor another open session
    of theirs (`session` itself aside), whose start may not have reached SteVe yet;
    then one that holds no reservation elsewhere. Among those, one that has
    charged before: SteVe knows it.
    SteVe lets most tags run one transaction at a time. With every tag held, the
    first; the station then says whether it may charge (a fleet card may run
    many).

    A new `scheduled` session holds its connector before anything reaches the
    station, as a reservation does, and like a reservation takes a card that
    holds no other such session: else one customer could hold every free
    charger for a day.

    Runs inside the transaction that stores the choice, which holds the user's
    card choice until it ends. Raises SessionInvalid when the user has no active
    tag, SessionConflict when every one holds another scheduled session and this
    one is `scheduled`.
    """
    _wait_for_the_users_other_starts(user)
    tags = UserMapping.objects.active().filter(user=user)
    reserved = (
        Reservation.objects.for_user(user)
        .covering(timezone.now())
        .filter(
            charger__charge_box_id=charge_box_id,
            charger__connector_id=connector_id,
        )
        .of_cards(tags.values_list("steve_ocpp_id_tag", flat=True))
        .values_list("id_tag", flat=True)
        .first()
    )
    if reserved is not None:
        return reserved
    candidates: list[str] = list(
        tags.in_order_to_charge_with().values_list("steve_ocpp_id_tag", flat=True)
    )
    if not candidates:
        raise SessionInvalid(
            "This account has no active charging card to start with; ask your "
            "operator to link or reactivate one."
        )
    others = ApiSession.objects.open().filter(user=user)
    if session is not None:
        others = others.exclude(pk=session.pk)
    held = {tag.upper() for tag in others.values_list("id_tag", flat=True)}
    waiting = {
        holder.id_tag.upper(): holder
        for holder in others.waiting_to_start(timezone.now()).order_by("pk")
    }
    if scheduled and all(tag.upper() in waiting for tag in candidates):
        raise SessionConflict(_every_card_waiting(candidates, waiting))
    # A card holding a reservation elsewhere would be under SteVe's one-charge
    # limit once it charges here, and its holder could not use the reservation.
    reserving = {
        tag.upper()
        for tag in Reservation.objects.not_ended(timezone.now())
        .of_cards(candidates)
        .values_list("id_tag", flat=True)
    }
    # Stable: among equals, the order in_order_to_charge_with gave, so the first
    # is free of all three when any tag is.
    candidates.sort(
        key=lambda tag: (
            tag.upper() in waiting,
            tag.upper() in held,
            tag.upper() in reserving,
        )
    )
    return candidates[0]


def _every_card_waiting(tags: list[str], waiting: dict[str, ApiSession]) -> str:
    """Which scheduled session holds each of `tags`, as a sentence."""
    boxes = {holder.charge_box_id for holder in waiting.values()}
    names = {
        (charger.charge_box_id, charger.connector_id): str(charger)
        for charger in Charger.objects.filter(charge_box_id__in=boxes)
    }
    held = []
    for tag in sorted(tags, key=str.upper):
        holder = waiting[tag.upper()]
        place = (holder.charge_box_id, holder.connector_id)
        name = names.get(place, f"{holder.charge_box_id} connector {place[1]}")
        assert holder.target_start_at is not None  # waiting_to_start has one
        held.append(f"{tag} at {name} from {format_timestamp(holder.target_start_at)}")
    cards = "Your card holds" if len(tags) == 1 else "Each of your cards holds"
    return (
        f"{cards} a scheduled session already ({'; '.join(held)}): a card holds "
        "one at a time, as it holds one reservation. Cancel one to schedule "
        "another, or start now."
    )


# Two-key advisory locks, (this class, a user id), are a space apart from the
# one-key locks of the sync runs. A start (`tag_for`) and a portal reservation
# (`card_choice_held`) take the same one: each chooses one of the user's cards.
CARD_CHOICE_LOCK = 1


@contextmanager
def card_choice_held(user: User) -> Iterator[None]:
    """Hold the user's card choice, as a start does in `tag_for`, until the block
    ends: another start or reservation of theirs waits until then and sees what
    this one stored. Unlike a start's, it needs no transaction (a session-level
    lock), so the block may wait for the station without holding one open."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [CARD_CHOICE_LOCK, user.pk])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock(%s, %s)", [CARD_CHOICE_LOCK, user.pk]
            )


def _wait_for_the_users_other_starts(user: User) -> None:
    """Until the caller's transaction ends, another start of this user's waits
    here: it then sees the session this one stores, and the card it took. (Two
    starts choosing at once would both take the first free card.)"""
    if not connection.in_atomic_block:
        # In autocommit the lock would end with its own statement, before the
        # caller stores the card it chose.
        raise RuntimeError("A card choice must be made inside a transaction.")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [CARD_CHOICE_LOCK, user.pk]
        )
