from django.urls import path
from django.views.generic import RedirectView

from sessions_app import views

app_name = "sessions_app"

urlpatterns = [
    # The console's front door is its first page.
    path("", RedirectView.as_view(pattern_name="sessions_app:session-list")),
    path("sessions/", views.session_list, name="session-list"),
    path("sessions/export.csv", views.session_export, name="session-export"),
    path(
        "sessions/<int:steve_transaction_id>/",
        views.session_detail,
        name="session-detail",
    ),
    path(
        "sessions/<int:steve_transaction_id>/resync",
        views.session_resync,
        name="session-resync",
    ),
    path("sync-runs/", views.sync_run_list, name="sync-run-list"),
    path("sync-runs/run", views.sync_run_create, name="sync-run-create"),
    path("user-mappings/", views.user_mapping_list, name="user-mapping-list"),
    path(
        "user-mappings/new",
        views.user_mapping_create_view,
        name="user-mapping-create",
    ),
    path("user-mappings/import", views.user_mapping_import, name="user-mapping-import"),
    path("user-mappings/<int:pk>/", views.user_mapping_edit, name="user-mapping-edit"),
    path(
        "user-mappings/<int:pk>/deactivate",
        views.user_mapping_deactivate,
        name="user-mapping-deactivate",
    ),
    path("api-tokens/", views.api_token_list, name="api-token-list"),
    path(
        "api-tokens/<int:pk>/revoke",
        views.api_token_revoke_view,
        name="api-token-revoke",
    ),
    path("live/", views.live_stream, name="live"),
]
