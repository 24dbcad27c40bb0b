"""Keeping the seeded history as it was: a snapshot of every row the load test's
sync runs may change, taken before the load, and put back after it (see the
package's docstring for why the sync touches seeded rows at all)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sync.models import Charger, SyncedTransactionEvent, SyncRun, TransactionSyncState


@dataclass
class Footprint:
    """What the sync may change, taken before the load starts."""

    first_pk: int
    run_floor: int
    event_floor: int
    charger_floor: int
    open_rows: list[Mapping[str, Any]]
    check_ins: dict[int, Any]


def take_footprint() -> Footprint:
    """Snapshot every row an incremental run may update: open sessions, manual
    stops still in their grace period, chargers' check-in times."""

    def top(model: Any, column: str = "id") -> int:
        return int(model.objects.aggregate(top=Max(column))["top"] or 0)

    open_rows: list[Mapping[str, Any]] = list(
        TransactionSyncState.objects.may_still_change(timezone.now()).values()
    )
    return Footprint(
        first_pk=top(TransactionSyncState, "steve_transaction_id") + 1,
        run_floor=top(SyncRun),
        event_floor=top(SyncedTransactionEvent),
        charger_floor=top(Charger),
        open_rows=open_rows,
        check_ins=dict(Charger.objects.values_list("id", "last_check_in_at")),
    )


def restore_footprint(footprint: Footprint) -> dict[str, int]:
    """Delete what the load test's sync runs wrote and put the snapshot back."""
    with transaction.atomic():
        events, _ = SyncedTransactionEvent.objects.filter(
            id__gt=footprint.event_floor
        ).delete()
        created, _ = TransactionSyncState.objects.filter(
            steve_transaction_id__gte=footprint.first_pk
        ).delete()
        runs, _ = SyncRun.objects.filter(id__gt=footprint.run_floor).delete()
        chargers, _ = Charger.objects.filter(id__gt=footprint.charger_floor).delete()
        rows = []
        fields = [
            f.attname
            for f in TransactionSyncState._meta.concrete_fields
            if not f.primary_key
        ]
        for values in footprint.open_rows:
            row = TransactionSyncState(**values)
            rows.append(row)
        # bulk_update skips auto_now, so updatedAt gets its snapshot value back.
        TransactionSyncState.objects.bulk_update(rows, fields, batch_size=500)
        for pk, check_in in footprint.check_ins.items():
            Charger.objects.filter(pk=pk).exclude(last_check_in_at=check_in).update(
                last_check_in_at=check_in
            )
    return {
        "events_deleted": events,
        "transactions_deleted": created,
        "runs_deleted": runs,
        "chargers_deleted": chargers,
        "rows_restored": len(rows),
    }
