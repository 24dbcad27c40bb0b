"""The User mappings page."""

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from sync.models import TransactionSyncState, UserMapping

# The mapping list shows the first matches only; a search narrows it.
MAX_LISTED_MAPPINGS = 200


@dataclass(frozen=True)
class MappingList:
    """The mappings listed, and how many match in all (counted only when the
    list is cut short)."""

    rows: list[UserMapping]
    total: int


def user_mapping_list(*, search: str) -> MappingList:
    """The first MAX_LISTED_MAPPINGS mappings whose tag, label, billing id or
    customer email contains `search`, active ones first."""
    matching = _matching(search).select_related("user")
    rows = list(
        matching.order_by("-is_active", "steve_ocpp_id_tag")[:MAX_LISTED_MAPPINGS]
    )
    total = len(rows) if len(rows) < MAX_LISTED_MAPPINGS else matching.count()
    return MappingList(rows=rows, total=total)


def _matching(search: str) -> QuerySet[UserMapping]:
    mappings = UserMapping.objects.all()
    if search:
        mappings = mappings.filter(
            Q(steve_ocpp_id_tag__icontains=search)
            | Q(label__icontains=search)
            | Q(billing_customer_id__icontains=search)
            | Q(user__username__icontains=search)
            | Q(user__email__icontains=search)
        )
    return mappings


def id_tag_has_sessions(*, tag: str) -> bool:
    """Whether a synced session has exactly this idTag."""
    return TransactionSyncState.objects.of_id_tag(tag).exists()
