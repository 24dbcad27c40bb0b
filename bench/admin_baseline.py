"""A stock Django admin changelist configured like the Charging Sessions page.

It lives on its own AdminSite, mounted only by the benchmark's URLconf, so the
product's real admin is unaffected. It is the "what Django gives for free" baseline:
list_filter on status, a date hierarchy on updatedAt, search on the tag, and the
default paginator with its counts.
"""

from django.contrib import admin
from django.urls import include, path

from polaris.urls import urlpatterns as product_urlpatterns
from sync.models import TransactionSyncState

site = admin.AdminSite(name="bench_admin")


@admin.register(TransactionSyncState, site=site)
class SessionBaselineAdmin(admin.ModelAdmin):
    list_display = [
        "steve_transaction_id",
        "charge_box_id",
        "connector_id",
        "ocpp_id_tag",
        "started_at",
        "stopped_at",
        "kwh_delivered",
        "is_finalized",
        "updated_at",
    ]
    list_filter = ["is_finalized"]
    date_hierarchy = "updated_at"
    search_fields = ["ocpp_id_tag"]
    ordering = ["-updated_at", "-steve_transaction_id"]
    list_per_page = 15


urlpatterns = [path("bench-admin/", site.urls), path("", include(product_urlpatterns))]
