"""Writes of the portal: starts, reservations and acting-as."""

import logging
from collections.abc import MutableMapping
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from portal.access import ACTING_AS_KEY
from portal.models import Reservation
from portal.selectors import own_start_at
from sessions_app.charging import ApiSessionError, api_session_create
from sessions_app.models import ApiSession, AuditEntry
from sessions_app.services import audit_entry_create
from sync.client import SteveClient, SteveError, SteveRejected, given_or_new
from sync.models import Charger, UserMapping

logger = logging.getLogger(__name__)

RESERVATION_MINUTES = (15, 30, 60)

_RESERVE_REFUSALS = {
    # OCPP answers Occupied for a connector charging or reserved for another card.
    "occupied": "The charger is in use or reserved by someone else right now, "
    "so it cannot be reserved.",
    "faulted": "The charger reports a fault; please pick another one.",
    "unavailable": "The charger is unavailable at the moment.",
    "rejected": "The charger declined the reservation.",
    "timeout": "The charger did not answer; try again in a moment.",
}


class PortalError(Exception):
    """A request the portal refuses; `message` is a sentence for the customer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AlreadyStarting(PortalError):
    """The Start was refused because this customer's own charge is starting or
    under way there: a Start sent twice (a double click) is no failure."""


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
    except ApiSessionError:
        if own_start_at(customer=customer, charger=charger, now=timezone.now()):
            raise AlreadyStarting(
                f"Your charge at {charger.friendly_name} is already starting or "
                "under way."
            ) from None
        raise


def reservation_create(
    *,
    customer: User,
    charger: Charger,
    minutes: int,
    client: SteveClient | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Reserve `charger` for `customer` from now for `minutes` via ReserveNow.

    The station's answer decides: only Accepted stores a reservation, without
    SteVe's reservation id, which its API does not return (see Reservation).
    A charger the customer holds already gives back that reservation: a Reserve
    sent twice (a double click, a page from before) must not read as refused
    because the first one was accepted. Raises PortalError (no tag, refused,
    offline, no answer).

    No transaction is open while SteVe is asked: ReserveNow can take up to
    STEVE_OPERATION_TIMEOUT, and a transaction held that long keeps a pooled
    connection from other requests. Nothing here needs a lock: the station, not
    our rows, decides whether the charger can still be reserved.
    """
    now = now or timezone.now()
    held = _held_for(customer, charger, now)
    if held is not None:
        return held
    # Only the reserved tag may start charging on the reserved connector, so it
    # should be one that is free to charge.
    tag = UserMapping.objects.tag_to_charge_with(customer)
    if tag is None:
        raise PortalError(
            "Your account has no active charging card to reserve with; "
            "ask your operator."
        )
    reservation = Reservation(
        user=customer,
        charger=charger,
        id_tag=tag,
        starts_at=now,
        ends_at=now + timedelta(minutes=minutes),
    )
    reservation.full_clean()
    try:
        with given_or_new(client) as steve:
            result = steve.reserve_now(
                charge_box_id=charger.charge_box_id,
                connector_id=charger.connector_id,
                expiry=reservation.ends_at,
                id_tag=tag,
            )
    except SteveRejected as error:
        logger.warning("reserve charger=%s refused: %s", charger.pk, error.message)
        raise PortalError(_reserve_refusal(error)) from error
    except SteveError as error:
        logger.warning("reserve charger=%s failed: %s", charger.pk, error.message)
        raise PortalError("The charging network did not answer; try again.") from error
    if not result.accepted(charger.charge_box_id):
        status = result.status_of(charger.charge_box_id)
        logger.info("reserve charger=%s answered %s", charger.pk, status)
        # The station refuses a connector it holds for this customer's own
        # reservation, which a request sent alongside this one may have just made.
        held = _held_for(customer, charger, timezone.now())
        if held is not None:
            return held
        raise PortalError(
            _RESERVE_REFUSALS.get(
                status.lower(), "The charger could not take the reservation."
            )
        )
    with transaction.atomic():
        reservation.save()
    logger.info("reservation=%s created user=%s", reservation.pk, customer.pk)
    return reservation


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
    except SteveError as error:
        logger.warning("reservation=%s cancel failed: %s", reservation.pk, error)
        raise PortalError("The charging network did not answer; try again.") from error
    else:
        if not result.accepted(charger.charge_box_id):
            raise PortalError("The charger declined the cancellation.")
    reservation.status = Reservation.Status.CANCELLED
    reservation.cancelled_at = now
    reservation.full_clean()
    reservation.save(update_fields=["status", "cancelled_at"])
    logger.info("reservation=%s cancelled", reservation.pk)
    return reservation


def _cancel_refusal(error: SteveRejected) -> str:
    """Why a reservation the station still holds could not be cancelled."""
    if error.no_station_connected:
        reason = "The charger is offline, so the reservation cannot be cancelled now"
    else:
        reason = "The charging network refused to cancel this reservation"
    return f"{reason}; it ends by itself at its end time."


@transaction.atomic
def act_as_start(
    *,
    agent: User,
    customer: User,
    session: MutableMapping[str, Any],
) -> None:
    """Open the portal for `agent` as `customer` (this browser session) and audit it."""
    previous = session.get(ACTING_AS_KEY)
    if previous is not None and previous != customer.pk:
        act_as_end(agent=agent, session=session)
    audit_entry_create(
        actor=agent,
        action=AuditEntry.Action.IMPERSONATION_STARTED,
        object_type="user",
        object_id=customer.pk,
        after={"customer": customer.get_username()},
        source="portal",
    )
    session[ACTING_AS_KEY] = customer.pk


@transaction.atomic
def act_as_end(*, agent: User, session: MutableMapping[str, Any]) -> None:
    """Stop acting as a customer and audit it; nothing happens when not acting."""
    customer_id = session.pop(ACTING_AS_KEY, None)
    if customer_id is None:
        return
    audit_entry_create(
        actor=agent,
        action=AuditEntry.Action.IMPERSONATION_ENDED,
        object_type="user",
        object_id=customer_id,
        source="portal",
    )
