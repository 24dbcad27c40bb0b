from django.contrib import admin
from django.http import HttpRequest

from sessions_app.admin import ReadOnlyAdmin
from sessions_app.models import ApiSession
from sync.models import Charger, SyncRun, TransactionSyncState, UserMapping

# ModelAdmin is generic only in django-stubs; Django's own class cannot be
# subscripted, so each admin below leaves its model out with type-arg ignored.


@admin.register(Charger)
class ChargerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "friendly_name",
        "charge_box_id",
        "connector_id",
        "connector_type",
        "max_power_kw",
        "is_public",
        "last_check_in_at",
    ]
    list_editable = ["connector_type", "max_power_kw", "is_public"]
    search_fields = ["friendly_name", "charge_box_id"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Charger | None = None
    ) -> list[str]:
        # A charger is its SteVe connector (chargeBoxId + connectorId): changed,
        # the row would name a connector SteVe does not have, keeping the
        # sessions, name, visibility and rate, while the sync brought the real
        # connector back as a new public charger.
        # Its last check-in is what the sync and the probe saw: set by hand (a
        # day ahead), the charger would read online until then.
        if obj is None:
            return ["last_check_in_at"]
        return ["charge_box_id", "connector_id", "last_check_in_at"]

    def has_delete_permission(
        self, request: HttpRequest, obj: Charger | None = None
    ) -> bool:
        # Deleted, a charger that has had sessions or reservations would come
        # back from the sync as a new public, unnamed charger without its rate
        # or group, and its past sessions would lose it: it leaves the portal by
        # being made private instead. One added by hand that nobody has used (a
        # mistyped chargeBoxId) may go.
        if obj is None or not super().has_delete_permission(request, obj):
            return False
        return not (
            obj.transactions.exists()
            or obj.reservations.exists()
            or ApiSession.objects.at_connector(
                obj.charge_box_id, obj.connector_id
            ).exists()
        )


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    """Read-only: each row records what a run did."""

    list_display = ["id", "kind", "trigger", "status", "started_at", "finished_at"]
    list_filter = ["kind", "status", "trigger"]


@admin.register(TransactionSyncState)
class TransactionSyncStateAdmin(ReadOnlyAdmin):
    """Read-only: SteVe is the source of truth, and the next sync would undo or
    double-count an edit."""

    list_display = [
        "steve_transaction_id",
        "charge_box_id",
        "connector_id",
        "ocpp_id_tag",
        "kwh_delivered",
        "is_finalized",
        "updated_at",
    ]
    list_filter = ["is_finalized"]
    search_fields = ["ocpp_id_tag"]


@admin.register(UserMapping)
class UserMappingAdmin(ReadOnlyAdmin):
    """Read-only: mappings change in the console, whose services write the audit log."""

    list_display = ["steve_ocpp_id_tag", "user", "label", "is_active"]
    search_fields = ["steve_ocpp_id_tag", "label"]
