"""Live banner of the portal: the sync's and the Sessions API's signals re-rendered
with the dashboard's own partial and sent on each affected customer's channel.
Broadcast only."""

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils import timezone

from polaris import live
from portal import selectors
from portal.access import customer_zones
from portal.models import Reservation
from portal.signals import reservation_changed
from sessions_app.models import ApiSession
from sessions_app.signals import api_session_changed
from sync.models import SyncRun, TransactionSyncState, UserMapping
from sync.signals import run_finished, sessions_changed

EVENT = "active-session"
BANNER = "portal/dashboard.html#active-banner"


def banners_html(
    *, tags_by_customer: dict[int, list[str]], now: datetime
) -> dict[int, str]:
    """The active-session partial of each customer (by user id, for the idTags
    given), times in their zone, from the same few queries."""
    active = selectors.active_sessions_by_customer(
        tags_by_customer=tags_by_customer, now=now
    )
    notices = selectors.start_notices_by_customer(
        customer_ids=list(tags_by_customer), now=now
    )
    zones = customer_zones(list(tags_by_customer))
    reads = SyncRun.objects.latest_reads() if any(active.values()) else None
    html: dict[int, str] = {}
    for pk, sessions in active.items():
        check = (
            selectors.sync_check(active=sessions, reads=reads, now=now)
            if reads and sessions
            else None
        )
        with timezone.override(zones[pk]):
            html[pk] = render_to_string(
                BANNER,
                {
                    "active": sessions,
                    "start_notices": notices[pk],
                    "sync_check": check,
                },
            )
    return html


def publish_active_sessions(*, tags_by_customer: dict[int, list[str]]) -> None:
    banners = banners_html(tags_by_customer=tags_by_customer, now=timezone.now())
    for pk, html in banners.items():
        live.publish(live.customer_channel(pk), EVENT, html)


@receiver(sessions_changed)
def publish_sessions_changed(
    sender: type[SyncRun], run: SyncRun, transaction_ids: list[int], **kwargs: Any
) -> None:
    """Refresh the banner of every customer whose tag a changed session carries.

    The sync changes every charging session each run, so this reads all of their
    customers' banners at once rather than a few queries per customer."""
    tags = TransactionSyncState.objects.filter(pk__in=transaction_ids).values(
        "ocpp_id_tag"
    )
    mappings = UserMapping.objects.filter(steve_ocpp_id_tag__in=tags)
    publish_active_sessions(
        tags_by_customer=selectors.tags_by_customer(mappings=mappings)
    )


@receiver(run_finished)
def publish_sync_failing(sender: type[SyncRun], run: SyncRun, **kwargs: Any) -> None:
    """Tell every customer charging now when the figures fall behind, and when
    they catch up: a failing run changes no session, so no banner would say it.

    A banner no run refreshes reads itself again (SyncCheck.recheck_seconds), so
    this only spares a charging customer the wait."""
    if not run.turns_failing_on_or_off:
        return
    # As the banner counts them: a station charging on past a manual stop too.
    charging = TransactionSyncState.objects.occupying_connector(timezone.now()).values(
        "ocpp_id_tag"
    )
    mappings = UserMapping.objects.filter(steve_ocpp_id_tag__in=charging)
    publish_active_sessions(
        tags_by_customer=selectors.tags_by_customer(mappings=mappings)
    )


@receiver(api_session_changed)
def publish_api_session_changed(
    sender: type[ApiSession], session: ApiSession, **kwargs: Any
) -> None:
    """Refresh the owner's banner: a session that started has a Stop to offer,
    and one that was cancelled before charging says so."""
    _publish_for(session.user)


@receiver(reservation_changed)
def publish_reservation_changed(
    sender: type[Reservation], reservation: Reservation, **kwargs: Any
) -> None:
    """Refresh the customer's pages: the event re-reads their next reservation
    and chargers in every tab, not only the one that reserved or cancelled."""
    _publish_for(reservation.user)


def _publish_for(customer: User) -> None:
    tags = selectors.customer_tags(customer=customer)
    publish_active_sessions(tags_by_customer={customer.pk: tags})
