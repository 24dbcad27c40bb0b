"""Who Polaris last saw holding a connector: what a station's refusal to start,
which OCPP gives no reason for, is told as, and what a portal Start or Reserve
at a connector someone else holds is told."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from portal.models import Reservation
from sessions_app.models import ApiSession
from sync.models import TransactionSyncState, UserMapping


@dataclass(frozen=True)
class ConnectorHolder:
    """Someone else's hold on a connector: their charge on it (the default),
    their Start on its way (`starting`), their session scheduled to start at
    `scheduled_at`, or their `reservation` covering now."""

    reservation: Reservation | None = None
    starting: bool = False
    scheduled_at: datetime | None = None

    @property
    def unknown_to_the_station(self) -> bool:
        """Only Polaris keeps this hold: a session scheduled for later, or a Start
        the station may not have taken yet. A reservation sent to the station
        meanwhile would be accepted, and take the connector from that session."""
        return self.starting or self.scheduled_at is not None

    def clause(self, place: str, until: Callable[[datetime], str]) -> str:
        """The hold in words, for after a colon, with `place` for the connector
        and times as `until` writes them."""
        if self.reservation is not None:
            ends = until(self.reservation.ends_at)
            return f"{place} is reserved by someone else until {ends}"
        if self.scheduled_at is not None:
            starts = until(self.scheduled_at)
            return f"{place} is held for someone else's charge starting at {starts}"
        if self.starting:
            return f"someone else is starting to charge at {place} right now"
        return f"someone else is charging at {place} right now"


def held_by_someone_else(
    *, user_id: int, charge_box_id: str, connector_id: int, now: datetime
) -> ConnectorHolder | None:
    """What holds the connector for someone other than the user, as Polaris last
    saw it: a charge on it (a charge of the user's own cards is theirs), else
    another user's portal or API session starting there or scheduled to, else a
    reservation covering now, the one ending last; None when none does."""
    own_tags = UserMapping.objects.filter(user_id=user_id).values("steve_ocpp_id_tag")
    charging = (
        TransactionSyncState.objects.occupying_connector(now)
        .filter(charge_box_id=charge_box_id, connector_id=connector_id)
        .exclude(ocpp_id_tag__in=own_tags)
    )
    if charging.exists():
        return ConnectorHolder()
    sessions = ApiSession.objects.at_connector(charge_box_id, connector_id).exclude(
        user_id=user_id
    )
    if sessions.charging_or_starting(now).exists():
        return ConnectorHolder(starting=True)
    scheduled = sessions.waiting_to_start(now).order_by("target_start_at").first()
    if scheduled is not None:
        return ConnectorHolder(scheduled_at=scheduled.target_start_at)
    held = someone_elses_reservation(
        user_id=user_id,
        charge_box_id=charge_box_id,
        connector_id=connector_id,
        now=now,
    )
    return ConnectorHolder(reservation=held) if held is not None else None


def someone_elses_reservation(
    *, user_id: int, charge_box_id: str, connector_id: int, now: datetime
) -> Reservation | None:
    """The reservation of someone other than the user that holds the connector
    at `now`, the one ending last; None when none does."""
    return (
        Reservation.objects.covering(now)
        .filter(
            charger__charge_box_id=charge_box_id, charger__connector_id=connector_id
        )
        .exclude(user_id=user_id)
        .order_by("-ends_at")
        .first()
    )
