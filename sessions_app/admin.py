"""Django admin (`/django-admin/`): the staff UI for rates, rate assignments, API
tokens and a read-only view of API sessions and of the audit log."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize

from portal.models import Plan
from sessions_app.models import ApiSession, ApiToken, AuditEntry, ChargerRate, Rate
from sessions_app.services import api_token_revoke
from sync.models import Charger

# Django's admin under the product's name (it says "Django administration").
admin.site.site_header = "Polaris Express admin"
admin.site.site_title = "Polaris Express admin"
admin.site.index_title = "Data the console does not edit"


class ReadOnlyAdmin(admin.ModelAdmin):
    """A list and detail to read; rows are written by the services only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def charger_in_full(charger: Charger) -> str:
    """A charger as staff pick it: a site's boxes may share one friendly name,
    so its chargeBoxId too."""
    return f"{charger} ({charger.charge_box_id})"


class ChargersNamedInFull:
    """A ModelAdmin mixin: its forms offer chargers by `charger_in_full`."""

    def formfield_for_dbfield(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        if getattr(db_field, "related_model", None) is Charger and field is not None:
            field.label_from_instance = charger_in_full
        return field


class RateForm(forms.ModelForm):
    class Meta:
        model = Rate
        fields = [
            "name",
            "currency",
            "flat_fee",
            "energy_price",
            "time_price",
            "tax_percent",
            "is_default",
        ]

    def clean_currency(self) -> str:
        # People type "EUR"; the API shows ISO codes in lowercase, as the seed does.
        return str(self.cleaned_data["currency"]).strip().lower()


class ChargerRateInline(ChargersNamedInFull, admin.TabularInline):
    model = ChargerRate
    extra = 0


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    form = RateForm
    list_display = [
        "name",
        "currency",
        "flat_fee",
        "energy_price",
        "time_price",
        "tax_percent",
        "is_default",
    ]
    list_filter = ["is_default", "currency"]
    search_fields = ["name"]
    inlines = [ChargerRateInline]

    def save_model(
        self, request: HttpRequest, obj: Rate, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        # Allowed (an operator may sell in two currencies), but most likely a
        # slip: a customer's dashboard would estimate a charge in one currency
        # beside a plan card in another.
        others = sorted(
            {
                currency.upper()
                for currency in Plan.objects.filter(subscriptions__isnull=False)
                .values_list("currency", flat=True)
                .distinct()
            }
            - {obj.currency.upper()}
        )
        if others:
            messages.warning(
                request,
                f"Customers have plans in {', '.join(others)}, not in this rate's "
                f"{obj.currency.upper()}: at chargers with this rate their "
                f"dashboard estimates a charge in {obj.currency.upper()} beside a "
                "plan card in their plan's currency.",
            )


@admin.register(ChargerRate)
class ChargerRateAdmin(ChargersNamedInFull, admin.ModelAdmin):
    list_display = ["charger_named_in_full", "rate", "updated_at"]
    list_select_related = ["charger", "rate"]
    list_filter = ["rate"]

    @admin.display(description="charger", ordering="charger__friendly_name")
    def charger_named_in_full(self, assignment: ChargerRate) -> str:
        return charger_in_full(assignment.charger)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "user",
        "name",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_select_related = ["user"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = ["user", "prefix", "created_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The raw token must be shown once at creation: `manage.py create_api_token`.
        return False

    # Revoking cuts an integration off: staff who may only view tokens do not get
    # the action, and each revoke goes into the token's history.
    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
            self.log_change(request, token, "Revoked.")
            revoked += 1
        self.message_user(
            request, f"Revoked {revoked} token{pluralize(revoked)}.", messages.SUCCESS
        )


@admin.register(ApiSession)
class ApiSessionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "user",
        "charge_box_id",
        "connector_id",
        "status",
        "target_reached",
        "created_at",
    ]
    list_select_related = ["user"]
    list_filter = ["status"]
    search_fields = ["charge_box_id", "user__username", "id_tag"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Read-only: the services write the log (mapping changes, acting as a
    customer, API sessions started or stopped for another user); an entry anyone
    could edit would prove nothing."""

    list_display = [
        "created_at",
        "who",
        "action",
        "object_type",
        "object_id",
        "source",
    ]
    list_filter = ["action", "source"]
    search_fields = ["object_id", "actor_username"]
    date_hierarchy = "created_at"

    @admin.display(description="Actor", ordering="actor_username")
    def who(self, entry: AuditEntry) -> str:
        return entry.actor_username or "A command"
