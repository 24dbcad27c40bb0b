"""Services of the Sessions API: start a charge remotely and follow it to the end.

Lifecycle: created → started → ended, or created → cancelled.

- `api_session_create` stores the session as `created` and sends
  RemoteStartTransaction (at once, after the session is committed, or at the
  target's `energy_start_time`); a refused start deletes it again.
- `api_session_advance` is run for every open session right after each scheduled
  transactions sync (`sessions_app.tasks.api_sessions_advance_all`, linked to the
  sync's beat entry in polaris/celery.py). SteVe never returns the new
  transaction id (CONTRACT §7), so a session starts when the sync has stored the
  transaction its remote start began (`api_session_matching_transaction`); it ends
  when that transaction is finalized. It is cancelled when charging did not start
  within API_SESSION_START_TIMEOUT_SECONDS, which only a sync run that read SteVe
  after that deadline can show; a start whose send never returned (its worker
  or request killed or cut off after the claim) is sent again instead. While started,
  it refreshes the live readings from SteVe and stops the charge before a target
  would be passed, sending the stop
  again if the charge still runs `stop_resend_after()` later.
- `api_session_stop` sends RemoteStopTransaction, with no transaction open while
  the station answers: the stop is claimed first, so one goes out however many
  come at once, and another stop meanwhile is a 409 (`charging/stop.py`).

Both take the `caller` when it is not the session's user: only staff who
`may_manage_any_session` may start or stop sessions for someone else, and each
such write goes to the audit log.

Every status change sends `api_session_changed` after commit, which refreshes the
owner's live dashboard banner.
"""

from sessions_app.charging.create import (
    REQUEST_FIELDS,
    SCHEDULE_HORIZON,
    TARGET_STEP,
    CreatedSession,
    SessionTarget,
    api_session_create,
)
from sessions_app.charging.errors import (
    ApiSessionError,
    SessionConflict,
    SessionForbidden,
    SessionInvalid,
    SessionNotFound,
    StartUnconfirmed,
    StationError,
    StopUnconfirmed,
    StopUnderWay,
)
from sessions_app.charging.lifecycle import (
    api_session_advance,
    api_sessions_advance_all,
    stop_resend_after,
)
from sessions_app.charging.station import CHARGING_PAST_MANUAL_STOP
from sessions_app.charging.stop import api_session_stop

__all__ = [
    "CHARGING_PAST_MANUAL_STOP",
    "REQUEST_FIELDS",
    "SCHEDULE_HORIZON",
    "TARGET_STEP",
    "ApiSessionError",
    "CreatedSession",
    "SessionConflict",
    "SessionForbidden",
    "SessionInvalid",
    "SessionNotFound",
    "SessionTarget",
    "StartUnconfirmed",
    "StationError",
    "StopUnconfirmed",
    "StopUnderWay",
    "api_session_advance",
    "api_session_create",
    "api_session_stop",
    "api_sessions_advance_all",
    "stop_resend_after",
]
