"""The tables the SteVe sync writes: a module per part, imported here so that
Django finds every model and callers import from `sync.models`."""

from sync.models.chargers import CHECK_IN_VALID_FOR, Charger
from sync.models.runs import LatestReads, SyncRun, stale_after, stale_before
from sync.models.transactions import (
    SyncedTransactionEvent,
    TransactionSyncState,
    TransactionSyncStateQuerySet,
    UserMapping,
)

__all__ = [
    "CHECK_IN_VALID_FOR",
    "Charger",
    "LatestReads",
    "SyncRun",
    "SyncedTransactionEvent",
    "TransactionSyncState",
    "TransactionSyncStateQuerySet",
    "UserMapping",
    "stale_after",
    "stale_before",
]
