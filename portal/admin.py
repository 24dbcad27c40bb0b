"""Staff manage customer profiles, charger groups, plans and subscriptions in
Django admin, and give reservations their SteVe id."""

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from portal.models import ChargerGroup, CustomerProfile, Plan, Reservation, Subscription
from sessions_app.admin import ChargersNamedInFull, charger_in_full


@admin.register(CustomerProfile)
class CustomerProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "time_zone"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]


@admin.register(ChargerGroup)
class ChargerGroupAdmin(ChargersNamedInFull, admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name"]
    filter_horizontal = ["chargers", "members"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "currency", "monthly_fee", "included_kwh"]
    search_fields = ["name"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["user", "plan", "anchor_day", "started_on", "ended_on"]
    list_filter = ["plan"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    """Reservations are the station's (ReserveNow): customers make and cancel them
    in the portal. Here staff only copy in the id from SteVe's web interface,
    which its REST API never returns, so that the driver gets a Cancel button."""

    list_display = [
        "charger_named_in_full",
        "user",
        "starts_at",
        "ends_at",
        "status_now",
        "confirmed",
        "steve_reservation_id",
    ]
    list_filter = ["status", "confirmed"]
    search_fields = ["user__username", "charger__friendly_name"]
    raw_id_fields = ["user", "charger"]
    list_select_related = ["charger", "user"]

    @admin.display(description="charger", ordering="charger__friendly_name")
    def charger_named_in_full(self, reservation: Reservation) -> str:
        return charger_in_full(reservation.charger)

    @admin.display(description="status", ordering="status")
    def status_now(self, reservation: Reservation) -> str:
        # An active one past its end holds nothing any more: an id copied into
        # it would give its driver a Cancel for a reservation that is over.
        status = reservation.get_status_display()
        if (
            reservation.status == Reservation.Status.ACTIVE
            and reservation.ends_at <= timezone.now()
        ):
            return f"{status} (ended)"
        return status

    def get_readonly_fields(
        self, request: HttpRequest, obj: Reservation | None = None
    ) -> list[str]:
        return [
            field.name
            for field in Reservation._meta.fields
            if field.name not in ("id", "steve_reservation_id")
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A row written here would hold nothing at the station.
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Reservation | None = None
    ) -> bool:
        return False
