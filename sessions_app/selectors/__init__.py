"""Reads of the admin console: each page's module builds its read model."""

from sessions_app.selectors.api_tokens import api_token_list
from sessions_app.selectors.session_detail import (
    RESYNC_NOTICE_FOR,
    LastSynced,
    recent_resync,
    session_detail,
    session_energy_series,
    session_last_synced,
    shown_events,
)
from sessions_app.selectors.session_list import (
    MAX_REFRESH_ROWS,
    PAGE_SIZE,
    SESSION_EXPORT_HEADER,
    SessionList,
    SessionPage,
    SessionStats,
    SessionTable,
    SyncFreshness,
    any_sync_completed,
    session_count,
    session_export_rows,
    session_page,
    session_stats,
    session_table,
    sync_freshness,
    tag_only_on_unmapped_cards,
)
from sessions_app.selectors.sync_runs import (
    SYNC_RUNS_SHOWN,
    sync_run_list,
    sync_run_table,
)
from sessions_app.selectors.user_mappings import (
    MAX_LISTED_MAPPINGS,
    id_tag_has_sessions,
    user_mapping_list,
)

__all__ = [
    "MAX_LISTED_MAPPINGS",
    "MAX_REFRESH_ROWS",
    "PAGE_SIZE",
    "RESYNC_NOTICE_FOR",
    "SESSION_EXPORT_HEADER",
    "SYNC_RUNS_SHOWN",
    "LastSynced",
    "SessionList",
    "SessionPage",
    "SessionStats",
    "SessionTable",
    "SyncFreshness",
    "any_sync_completed",
    "api_token_list",
    "id_tag_has_sessions",
    "recent_resync",
    "session_count",
    "session_detail",
    "session_energy_series",
    "session_export_rows",
    "session_last_synced",
    "session_page",
    "session_stats",
    "session_table",
    "shown_events",
    "sync_freshness",
    "sync_run_list",
    "sync_run_table",
    "tag_only_on_unmapped_cards",
    "user_mapping_list",
]
