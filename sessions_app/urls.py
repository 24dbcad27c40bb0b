from django.urls import path
from django.views.generic import RedirectView

from sessions_app.views import api_tokens, sessions, sync_runs, user_mappings

app_name = "sessions_app"

urlpatterns = [
    # The console's front door is its first page.
    path(
        "",
        RedirectView.as_view(pattern_name="sessions_app:session-list"),
        name="console",
    ),
    path("sessions/", sessions.session_list, name="session-list"),
    path("sessions/export.csv", sessions.session_export, name="session-export"),
    path(
        "sessions/<int:steve_transaction_id>/",
        sessions.session_detail,
        name="session-detail",
    ),
    path(
        "sessions/<int:steve_transaction_id>/resync",
        sessions.session_resync,
        name="session-resync",
    ),
    path("sync-runs/", sync_runs.sync_run_list, name="sync-run-list"),
    path("sync-runs/run", sync_runs.sync_run_create, name="sync-run-create"),
    path("user-mappings/", user_mappings.user_mapping_list, name="user-mapping-list"),
    path(
        "user-mappings/new",
        user_mappings.user_mapping_create_view,
        name="user-mapping-create",
    ),
    path(
        "user-mappings/import",
        user_mappings.user_mapping_import,
        name="user-mapping-import",
    ),
    path(
        "user-mappings/<int:pk>/",
        user_mappings.user_mapping_edit,
        name="user-mapping-edit",
    ),
    path(
        "user-mappings/<int:pk>/deactivate",
        user_mappings.user_mapping_deactivate,
        name="user-mapping-deactivate",
    ),
    path("api-tokens/", api_tokens.api_token_list, name="api-token-list"),
    path(
        "api-tokens/<int:pk>/revoke",
        api_tokens.api_token_revoke_view,
        name="api-token-revoke",
    ),
    path("live/", sessions.live_stream, name="live"),
]
