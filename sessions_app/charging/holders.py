"""Who Polaris last saw holding a connector: what a station's refusal to start,
which OCPP gives no reason for, is told as."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from portal.models import Reservation
from sync.models import TransactionSyncState, UserMapping


@dataclass(frozen=True)
class ConnectorHolder:
    """Someone else's hold on a connector: their reservation covering now, or
    (None) their charge on it."""

    reservation: Reservation | None

    def clause(self, place: str, until: Callable[[datetime], str]) -> str:
        """The hold in words, for after a colon: someone else charging at
        `place`, or `place` reserved until its end, as `until` writes it."""
        if self.reservation is None:
            return f"someone else is charging at {place} right now"
        ends = until(self.reservation.ends_at)
        return f"{place} is reserved by someone else until {ends}"


def held_by_someone_else(
    *, user_id: int, charge_box_id: str, connector_id: int, now: datetime
) -> ConnectorHolder | None:
    """What holds the connector for someone other than the user, as Polaris last
    saw it: a charge on it (a charge of the user's own cards is theirs), else a
    reservation covering now, the one ending last; None when neither."""
    own_tags = UserMapping.objects.filter(user_id=user_id).values("steve_ocpp_id_tag")
    charging = (
        TransactionSyncState.objects.occupying_connector(now)
        .filter(charge_box_id=charge_box_id, connector_id=connector_id)
        .exclude(ocpp_id_tag__in=own_tags)
    )
    if charging.exists():
        return ConnectorHolder(reservation=None)
    held = (
        Reservation.objects.covering(now)
        .filter(
            charger__charge_box_id=charge_box_id, charger__connector_id=connector_id
        )
        .exclude(user_id=user_id)
        .order_by("-ends_at")
        .first()
    )
    return ConnectorHolder(reservation=held) if held is not None else None
