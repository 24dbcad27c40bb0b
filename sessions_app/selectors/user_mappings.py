"""The User mappings page."""

from django.db.models import Q, QuerySet

from sync.models import TransactionSyncState, UserMapping

# The mapping list shows the first matches only; a search narrows it.
MAX_LISTED_MAPPINGS = 200


def user_mapping_list(*, search: str) -> QuerySet[UserMapping]:
    """The first MAX_LISTED_MAPPINGS mappings whose tag, label, billing id or
    customer email contains `search`, active ones first."""
    mappings = UserMapping.objects.select_related("user").order_by(
        "-is_active", "steve_ocpp_id_tag"
    )
    if search:
        mappings = mappings.filter(
            Q(steve_ocpp_id_tag__icontains=search)
            | Q(label__icontains=search)
            | Q(billing_customer_id__icontains=search)
            | Q(user__username__icontains=search)
            | Q(user__email__icontains=search)
        )
    return mappings[:MAX_LISTED_MAPPINGS]


def id_tag_has_sessions(*, tag: str) -> bool:
    """Whether a synced session has exactly this idTag (index tss_tag_started)."""
    return TransactionSyncState.objects.filter(ocpp_id_tag=tag).exists()
