"""Live banner of the portal: the sync's and the Sessions API's signals re-rendered
with the dashboard's own partial and sent on each affected customer's channel.
Broadcast only."""

from typing import Any

from django.contrib.auth import get_user_model
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils import timezone

from polaris import live
from portal import selectors
from portal.access import customer_zone
from sessions_app.models import ApiSession
from sessions_app.signals import api_session_changed
from sync.models import SyncRun, TransactionSyncState, UserMapping
from sync.signals import sessions_changed

EVENT = "active-session"


def banner_html(*, customer: Any, now: Any) -> str:
    """The active-session partial for `customer`, times in their zone."""
    tags = selectors.customer_tags(customer=customer)
    context = {
        "active": selectors.active_sessions(customer=customer, tags=tags, now=now),
    }
    with timezone.override(customer_zone(customer)):
        return render_to_string("portal/dashboard.html#active-banner", context)


def publish_active_session(*, customer: Any) -> None:
    html = banner_html(customer=customer, now=timezone.now())
    live.publish(live.customer_channel(customer.pk), EVENT, html)


@receiver(sessions_changed)
def publish_sessions_changed(
    sender: type[SyncRun], run: SyncRun, transaction_ids: list[int], **kwargs: Any
) -> None:
    """Refresh the banner of every customer whose tag a changed session carries."""
    tags = TransactionSyncState.objects.filter(pk__in=transaction_ids).values(
        "ocpp_id_tag"
    )
    user_ids = set(
        UserMapping.objects.filter(steve_ocpp_id_tag__in=tags).values_list(
            "user_id", flat=True
        )
    )
    for customer in get_user_model().objects.filter(pk__in=user_ids):
        publish_active_session(customer=customer)


@receiver(api_session_changed)
def publish_api_session_changed(
    sender: type[ApiSession], session: ApiSession, **kwargs: Any
) -> None:
    """Refresh the owner's banner: a session that started has a Stop to offer."""
    publish_active_session(customer=session.user)
