"""Writes of the portal: starts and reservations (acting as a customer has its own
module, `portal.acting`)."""

import logging
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format

from portal.access import customer_zone
from portal.models import Reservation
from portal.selectors import own_scheduled_start, own_start_at
from portal.signals import reservation_changed
from sessions_app.charging import ApiSessionError, SessionConflict, api_session_create
from sessions_app.charging.holders import ConnectorHolder, held_by_someone_else
from sessions_app.charging.station import not_sent
from sessions_app.charging.tags import card_choice_held
from sessions_app.models import ApiSession
from sync.client import (
    SteveClient,
    SteveError,
    SteveRejected,
    SteveUnanswered,
    given_or_new,
)
from sync.models import Charger, TransactionSyncState, UserMapping

logger = logging.getLogger(__name__)

RESERVATION_MINUTES = (15, 30, 60)

_RESERVE_REFUSALS = {
    # OCPP answers Occupied for a connector charging or reserved for another card.
    "occupied": "The charger is in use or reserved by someone else right now, "
    "so it cannot be reserved.",
    "faulted": "The charger reports a fault; please pick another one.",
    "unavailable": "The charger is unavailable at the moment.",
    "rejected": "The charger declined the reservation.",
}


class PortalError(Exception):
    """A request the portal refuses; `message` is a sentence for the customer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AlreadyStarting(PortalError):
    """The Start was refused because this customer's own charge is starting,
    under way or scheduled there: a Start sent twice (a double click) is no
    failure."""


def charge_start(
    *, customer: User, charger: Charger, client: SteveClient | None = None
) -> ApiSession:
    """The portal's Start: a Sessions API session for `customer` on `charger`.

    Raises AlreadyStarting when the connector is refused as held by the
    customer's own session, else ApiSessionError as `api_session_create` does.
    """
    try:
        return api_session_create(
            user=customer,
            charge_box_id=charger.charge_box_id,
            connector_id=charger.connector_id,
            client=client,
        ).session
    except ApiSessionError as error:
        now = timezone.now()
        if own_start_at(customer=customer, charger=charger, now=now):
            raise AlreadyStarting(
                f"Your charge at {charger} is already starting or under way."
            ) from None
        scheduled = own_scheduled_start(customer=customer, charger=charger, now=now)
        if scheduled is not None:
            starts = local_time(scheduled, customer=customer, now=now)
            raise AlreadyStarting(
                f"Your charge at {charger} is already scheduled to start at {starts}."
            ) from None
        if isinstance(error, SessionConflict):
            # OCPP's refusal gives no reason, and the API's speaks to integrators;
            # what Polaris last saw may: another driver's charge, Start or
            # reservation since the page was shown.
            holder = _someone_elses_hold(customer, charger, now)
            if holder is not None:
                raise SessionConflict(
                    _hold_sentence(holder, customer, charger, now)
                ) from None
        raise


def _someone_elses_hold(
    customer: User, charger: Charger, now: datetime
) -> ConnectorHolder | None:
    """What Polaris last saw holding `charger` for someone other than
    `customer` (held_by_someone_else)."""
    return held_by_someone_else(
        user_id=customer.pk,
        charge_box_id=charger.charge_box_id,
        connector_id=charger.connector_id,
        now=now,
    )


def _hold_sentence(
    holder: ConnectorHolder, customer: User, charger: Charger, now: datetime
) -> str:
    """`holder` as a sentence for `customer`, with times in their zone."""
    clause = holder.clause(
        str(charger), lambda at: local_time(at, customer=customer, now=now)
    )
    return f"{clause[:1].upper()}{clause[1:]}."


def reservation_create(
    *,
    customer: User,
    charger: Charger,
    minutes: int,
    client: SteveClient | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Reserve `charger` for `customer` from now for `minutes` via ReserveNow.

    The station's answer decides: Accepted stores a reservation, without
    SteVe's reservation id, which its API does not return (see Reservation). So
    does an answer that never came back (lost, or the station's too late for
    SteVe), as not `confirmed`: the station may hold the charger for the card,
    and a Reserve sent again would be refused as someone else's.
    A charger the customer holds already gives back that reservation: a Reserve
    sent twice (a double click, a page from before) must not read as refused
    because the first one was accepted.

    Each card holds one reservation at a time: the reservation takes one of the
    customer's active cards that holds none that has not ended
    (`_card_to_reserve_with`), so a customer with one card holds one reservation
    and a fleet one per card. Without that, as a reservation cannot be cancelled
    early, one customer could hold every free connector, renewing each hourly.

    Raises PortalError (a hold on the connector the station does not know of:
    someone else's session starting or scheduled there; no active card; every
    card holding a reservation; SteVe or the station refusing; no answer); the
    first three before SteVe is asked.

    No transaction is open while SteVe is asked: ReserveNow can take up to
    STEVE_OPERATION_TIMEOUT, and a transaction held that long keeps a pooled
    connection from other requests. The customer's card choice is held instead
    (`card_choice_held`, a lock without a transaction), from the look at their
    cards until the reservation is saved: two Reserves sent together would
    otherwise both find the same card free, and a double click's second Reserve
    finds the first one's reservation.
    """
    with card_choice_held(customer):
        now = now or timezone.now()
        held = _held_for(customer, charger, now)
        if held is not None:
            return held
        holder = _someone_elses_hold(customer, charger, now)
        if holder is not None and holder.unknown_to_the_station:
            raise PortalError(_hold_sentence(holder, customer, charger, now))
        tag = _card_to_reserve_with(customer, now)
        reservation = Reservation(
            user=customer,
            charger=charger,
            id_tag=tag,
            starts_at=now,
            ends_at=now + timedelta(minutes=minutes),
        )
        reservation.full_clean()
        reservation.confirmed = _reserve_at_the_station(reservation, client)
        reservation.save()
        _announce(reservation)
    logger.info("reservation=%s created user=%s", reservation.pk, customer.pk)
    return reservation


def _announce(reservation: Reservation) -> None:
    """Send `reservation_changed` after commit: the customer's other open pages
    show it without a reload."""
    transaction.on_commit(
        lambda: reservation_changed.send(sender=Reservation, reservation=reservation)
    )


def _card_to_reserve_with(customer: User, now: datetime) -> str:
    """The idTag of one of the customer's active cards that holds no reservation
    that has not ended, preferring one not charging right now, then one that has
    charged before: only the reserved card may start charging on the reserved
    connector.

    Raises PortalError when they have no active card, or every one of them holds
    a reservation (the sentence names each, with its charger and end).
    """
    cards: list[str] = list(
        UserMapping.objects.active()
        .filter(user=customer)
        .in_order_to_charge_with()
        .values_list("steve_ocpp_id_tag", flat=True)
    )
    if not cards:
        raise PortalError(
            "Your account has no active charging card to reserve with; "
            "ask your operator."
        )
    holding = list(
        Reservation.objects.not_ended(now)
        .of_cards(cards)
        .select_related("charger")
        .order_by("ends_at", "id")
    )
    held_cards = {reservation.id_tag.upper() for reservation in holding}
    free = [card for card in cards if card.upper() not in held_cards]
    if free:
        return free[0]
    raise PortalError(_every_card_holds_one(customer, holding, now))


def reservation_end(reservation: Reservation, *, customer: User, now: datetime) -> str:
    """When `reservation` ends, as local_time says it."""
    return local_time(reservation.ends_at, customer=customer, now=now)


def local_time(moment: datetime, *, customer: User, now: datetime) -> str:
    """`moment` in the customer's time zone: the time today, else the date and
    time."""
    zone = customer_zone(customer)
    local = timezone.localtime(moment, zone)
    today = timezone.localtime(now, zone).date()
    return date_format(local, "H:i" if local.date() == today else "M j, H:i")


def _every_card_holds_one(
    customer: User, holding: list[Reservation], now: datetime
) -> str:
    """Why a customer whose every card holds a reservation cannot reserve: which
    card holds which charger, and until when (in their time zone). `holding` is
    in the order the reservations end."""
    # A card is free once the last of its reservations ends; one made before the
    # rule, or by staff, may share a card with another.
    last_of_card = sorted(
        {r.id_tag.upper(): r for r in holding}.values(), key=lambda r: r.ends_at
    )

    def until(reservation: Reservation) -> str:
        return reservation_end(reservation, customer=customer, now=now)

    if len(last_of_card) == 1:
        (reservation,) = last_of_card
        return (
            f"Your card {reservation.id_tag} already holds the reservation at "
            f"{reservation.charger} until {until(reservation)}; one reservation a "
            "card at a time. You can reserve another charger once it ends, or "
            "once you start charging there."
        )
    held = "; ".join(
        f"{r.id_tag} at {r.charger} until {until(r)}" for r in last_of_card
    )
    return (
        f"Each of your cards already holds a reservation ({held}); one "
        "reservation a card at a time. You can reserve another charger once one "
        "of them ends, or once you start charging at one of them."
    )


def _reserve_at_the_station(
    reservation: Reservation, client: SteveClient | None
) -> bool:
    """Send `reservation`'s ReserveNow: True once the station accepted it, False
    when it went out but no answer came back (the station may hold it).

    Raises PortalError when SteVe refuses to send it or cannot be reached, and
    when the station answers anything but Accepted.
    """
    charger = reservation.charger
    try:
        with given_or_new(client) as steve:
            result = steve.reserve_now(
                charge_box_id=charger.charge_box_id,
                connector_id=charger.connector_id,
                expiry=reservation.ends_at,
                id_tag=reservation.id_tag,
            )
    except SteveRejected as error:
        logger.warning("reserve charger=%s refused: %s", charger.pk, error.message)
        raise PortalError(_reserve_refusal(error)) from error
    except SteveUnanswered as error:
        logger.warning("reserve charger=%s answer lost: %s", charger.pk, error.message)
        return False
    except SteveError as error:
        logger.warning("reserve charger=%s failed: %s", charger.pk, error.message)
        raise PortalError(not_sent("reservation", error)) from error
    if not result.accepted(charger.charge_box_id):
        status = result.status_of(charger.charge_box_id)
        logger.info("reserve charger=%s answered %s", charger.pk, status)
        if status == "Timeout":
            return False
        if status.lower() == "occupied" and _charging_there(reservation):
            # From a page shown before their own charge began: not someone else.
            raise PortalError(
                f"You are charging at {charger} already, so it cannot be reserved."
            )
        raise PortalError(
            _RESERVE_REFUSALS.get(
                status.lower(), "The charger could not take the reservation."
            )
        )
    return True


def _charging_there(reservation: Reservation) -> bool:
    """Whether one of the customer's cards charges on the reservation's charger,
    as Polaris last saw it."""
    cards = UserMapping.objects.filter(user=reservation.user).values(
        "steve_ocpp_id_tag"
    )
    return (
        TransactionSyncState.objects.occupying_connector(timezone.now())
        .filter(charger=reservation.charger, ocpp_id_tag__in=cards)
        .exists()
    )


def _reserve_refusal(error: SteveRejected) -> str:
    """Why SteVe refused to send a ReserveNow, for the customer."""
    if error.no_station_connected:
        return "The charger is offline, so it cannot be reserved now."
    if error.tag_not_eligible:
        return (
            "Your charging card cannot be used for a reservation right now "
            "(it may be blocked or expired); ask your operator."
        )
    return "The charger cannot be reserved right now; try again in a moment."


def _held_for(customer: User, charger: Charger, now: datetime) -> Reservation | None:
    """The customer's reservation holding `charger` at `now`, if any."""
    return (
        Reservation.objects.for_user(customer)
        .covering(now)
        .filter(charger=charger)
        .first()
    )


def reservation_cancel(
    *,
    reservation: Reservation,
    client: SteveClient | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Cancel the reservation at the station (CancelReservation), then here.

    A reservation the station no longer holds (expired, used or cancelled there)
    is simply marked cancelled. Raises PortalError when it has ended, when SteVe's
    reservation id is unknown (see Reservation: marking it cancelled here would
    show the charger free while the station still holds it), and when the station
    refuses or does not answer.
    """
    now = now or timezone.now()
    if reservation.status == Reservation.Status.CANCELLED:
        raise PortalError("This reservation is already cancelled.")
    if reservation.status == Reservation.Status.USED:
        raise PortalError("This reservation was used: a charge started with it.")
    if reservation.ends_at <= now:
        raise PortalError("This reservation has already ended.")
    reservation_id = reservation.steve_reservation_id
    if reservation_id is None:
        raise PortalError(
            "The charging network cannot cancel this reservation early; "
            "it ends by itself at its end time."
        )
    charger = reservation.charger
    try:
        with given_or_new(client) as steve:
            result = steve.cancel_reservation(
                charge_box_id=charger.charge_box_id,
                reservation_id=reservation_id,
            )
    except SteveRejected as error:
        if not error.reservation_not_active:
            # Offline, or a refusal for another reason: the station still holds
            # the charger, so marking it cancelled here would show it free.
            logger.warning("reservation=%s cancel refused: %s", reservation.pk, error)
            raise PortalError(_cancel_refusal(error)) from error
        logger.info("reservation=%s not held: %s", reservation.pk, error.message)
    except SteveUnanswered as error:
        logger.warning("reservation=%s cancel unanswered: %s", reservation.pk, error)
        raise PortalError(CANCEL_UNCONFIRMED) from error
    except SteveError as error:
        logger.warning("reservation=%s cancel failed: %s", reservation.pk, error)
        raise PortalError(not_sent("cancellation", error)) from error
    else:
        if result.status_of(charger.charge_box_id) == "Timeout":
            raise PortalError(CANCEL_UNCONFIRMED)
        if not result.accepted(charger.charge_box_id):
            raise PortalError("The charger declined the cancellation.")
    reservation.status = Reservation.Status.CANCELLED
    reservation.cancelled_at = now
    reservation.full_clean()
    reservation.save(update_fields=["status", "cancelled_at"])
    _announce(reservation)
    logger.info("reservation=%s cancelled", reservation.pk)
    return reservation


# The cancellation went out but its answer never came back: the station may
# have cancelled, and Cancel again finds out (SteVe then says it is not held).
CANCEL_UNCONFIRMED = (
    "The charging network did not confirm the cancellation, so the reservation "
    "is kept for now. Press Cancel again in a moment."
)


def _cancel_refusal(error: SteveRejected) -> str:
    """Why a reservation the station still holds could not be cancelled."""
    if error.no_station_connected:
        reason = "The charger is offline, so the reservation cannot be cancelled now"
    else:
        reason = "The charging network refused to cancel this reservation"
    return f"{reason}; it ends by itself at its end time."
