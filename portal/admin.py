"""Staff manage customer profiles, charger groups, plans and subscriptions in
Django admin, and read reservations."""

from django.contrib import admin

from portal.models import ChargerGroup, CustomerProfile, Plan, Reservation, Subscription
from sessions_app.admin import ReadOnlyAdmin


@admin.register(CustomerProfile)
class CustomerProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "time_zone"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]


@admin.register(ChargerGroup)
class ChargerGroupAdmin(admin.ModelAdmin):
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
class ReservationAdmin(ReadOnlyAdmin):
    """Read-only: a reservation is the station's (ReserveNow, CancelReservation),
    which a row written here would never ask; customers make and cancel them."""

    list_display = [
        "charger",
        "user",
        "starts_at",
        "ends_at",
        "status",
        "confirmed",
        "steve_reservation_id",
    ]
    list_filter = ["status", "confirmed"]
    search_fields = ["user__username", "charger__friendly_name"]
    raw_id_fields = ["user", "charger"]
