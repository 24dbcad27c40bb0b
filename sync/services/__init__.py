"""Writes of the sync app: sync runs (`runs`), their retention (`retention`), user
mappings (`mappings`) and their CSV import (`imports`); the demo's data (`demo`)
and the bench's (`seeding`) are imported from their own modules."""

from sync.services.imports import MappingImportResult, user_mapping_import_csv
from sync.services.mappings import user_mapping_create, user_mapping_update
from sync.services.retention import sync_runs_prune
from sync.services.runs import (
    SyncBusy,
    sync_run_backfill,
    sync_run_chargers,
    sync_run_reconcile,
    sync_run_transaction,
    sync_run_transactions,
    transactions_sync_under_way,
)

__all__ = [
    "MappingImportResult",
    "SyncBusy",
    "sync_run_backfill",
    "sync_run_chargers",
    "sync_run_reconcile",
    "sync_run_transaction",
    "sync_run_transactions",
    "sync_runs_prune",
    "transactions_sync_under_way",
    "user_mapping_create",
    "user_mapping_import_csv",
    "user_mapping_update",
]
