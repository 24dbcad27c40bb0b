"""Stopping a session: what a caller (the API, the portal) asks for.

No transaction, row lock or database connection is held while the station
answers (up to SteVe's 30 s): the stop is claimed with a conditional UPDATE,
the connection handed back, then the stop sent, and its outcome stored with
conditional UPDATEs, as a create does with its start. Stops of sessions at a
slow site would otherwise each hold one of the process's pooled connections,
and the sync's updates of the session would wait on its row.

A stop of a started session goes through these states (`stop_requested_at`,
`remote_stop_returned_at`):

- none requested (empty, empty): the next stop claims it and is sent;
- sent (claimed at T, empty; `ApiSession.is_sending_stop`): another stop is a
  409 STOP_UNDER_WAY at once, and the sync sends none;
- answered (T, set), accepted or unconfirmed: another stop gets the session as
  it is, and the sync sends the stop again if charging goes on;
- not sent or refused: the claim is released (empty, empty), so the next stop
  is sent again;
- cut off (T, empty, and T older than `operation_answer_window()`): the process
  sending it died; as answered, and the sync sends it again.

A stop of a `created` session whose start went out is kept (T, empty) instead,
and the sync claims and sends it as charging begins.
"""

import logging
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from sessions_app.charging.errors import (
    ApiSessionError,
    SessionConflict,
    SessionNotFound,
    StopUnconfirmed,
    StopUnderWay,
)
from sessions_app.charging.lifecycle import (
    CANCELLED_BY_EARLY_STOP,
    CANCELLED_BY_STOP,
    cancel_scheduled,
    claim_stop,
    clear_message,
    release_stop,
    stop_returned,
)
from sessions_app.charging.on_behalf import audit_on_behalf, check_may_manage
from sessions_app.charging.station import (
    CHARGING_PAST_MANUAL_STOP,
    hand_back_connection,
    remote_stop,
)
from sessions_app.models import ApiSession, AuditEntry, as_status_message
from sync.client import SteveClient, given_or_new
from sync.models import TransactionSyncState

logger = logging.getLogger(__name__)

Status = ApiSession.Status

# While one stop waits for the station, another is answered at once: "Stop
# requested" could promise a stop that then fails, and waiting for the first one's
# outcome would hold a connection for as long as the station takes.
STOP_UNDER_WAY = (
    "Another stop of this session is waiting for the station's answer. If the "
    "session is still started in a moment, send the stop again."
)
STOP_BEFORE_START = (
    "Stop requested before charging began: the charge is stopped as soon as the "
    "station starts it, and the session is cancelled if it does not start."
)


def api_session_stop(
    *,
    session: ApiSession,
    caller: User | None = None,
    client: SteveClient | None = None,
    now: datetime | None = None,
) -> ApiSession:
    """Ask the station to stop charging `session` for `caller` (default its user;
    staff who `may_manage_any_session` may stop another user's, which is
    audited). What to do is decided on the session as stored now, not as the
    caller read it: its scheduled start may have gone out since, or its charge
    begun.

    Returns the session: still `started` (it ends when the sync sees the stop),
    `cancelled` when its scheduled start had not been sent yet, or still `created`
    when its start was sent but charging has not begun: the car may be plugged in
    a moment later, so the stop is kept and sent as soon as the sync sees the
    charge start (`api_session_advance`), and a start that never comes cancels
    the session as usual. A stop whose answer was lost (StopUnconfirmed) counts
    as requested, with a `status_message` saying so: the station may have
    stopped. A stop repeated once the first one's answer is in gets the session
    as it is (`ended`, once the charge that stop ended is over: a retry after a
    lost answer is no conflict), and one sent again after a stop that failed is
    sent.

    Raises SessionForbidden when it is another user's and `caller` may not manage
    it; SessionNotFound when it was deleted meanwhile (its start was refused);
    SessionConflict when it ended without a stop from Polaris or was cancelled,
    another stop of it is waiting for the station's answer (STOP_UNDER_WAY), or
    the station refuses; StationError when SteVe or the station does not answer.
    """
    if caller is not None:
        check_may_manage(caller, session.user_id)
    now = now or timezone.now()
    stored = (
        ApiSession.objects.select_related("transaction").filter(pk=session.pk).first()
    )
    if stored is None:
        raise SessionNotFound(
            "This session no longer exists: the station refused its start."
        )
    found = (stored.status, stored.stop_requested_at)
    stopped = _stop(stored, client, now)
    # A stop repeated after the first one's work was done (its answer lost to
    # the caller) changes nothing, and is no second stop to record.
    if caller is not None and (stopped.status, stopped.stop_requested_at) != found:
        audit_on_behalf(
            caller,
            stopped,
            AuditEntry.Action.API_SESSION_STOPPED_ON_BEHALF,
            before={"status": found[0]},
        )
    return stopped


def _stop(session: ApiSession, client: SteveClient | None, now: datetime) -> ApiSession:
    """`api_session_stop` once the caller may: send the stop, or keep it."""
    if session.status == Status.CREATED and session.remote_start_sent_at is None:
        session = cancel_scheduled(session, now, CANCELLED_BY_STOP)
    if session.status == Status.CANCELLED and (
        session.stop_requested_at is not None
        or session.status_message in (CANCELLED_BY_STOP, CANCELLED_BY_EARLY_STOP)
    ):
        # A retried stop (its first answer lost) gets what the first one did,
        # whether the stop cancelled the session or the station then refused
        # the start it was kept for.
        return session
    if session.status == Status.CREATED:
        kept = ApiSession.objects.filter(
            pk=session.pk, status=Status.CREATED, stop_requested_at__isnull=True
        ).update(
            stop_requested_at=now, status_message=STOP_BEFORE_START, updated_at=now
        )
        session.refresh_from_db()
        if kept or session.status == Status.CREATED:
            logger.info("api_session=%s stop kept until charging starts", session.pk)
            return session
        # It started (or was cancelled) meanwhile: stop it as such.
    if session.status == Status.ENDED and session.stop_requested_at is not None:
        # Ended after Polaris sent its stop: a retried stop (its first answer
        # lost, or slow) gets the session that stop ended, not an error.
        return session
    if session.status != Status.STARTED or session.transaction is None:
        raise SessionConflict(f"This session is already {session.status}.")
    if session.transaction.is_stopped_manually:
        raise SessionConflict(CHARGING_PAST_MANUAL_STOP)
    return _send_stop(session, session.transaction, client, now)


def _send_stop(
    session: ApiSession,
    tx: TransactionSyncState,
    client: SteveClient | None,
    now: datetime,
) -> ApiSession:
    """Claim the stop of the started session's charge `tx`, send it and store its
    outcome.

    Claimed first, as the sync's stops are: one stop goes out however many come
    at once, and the claim tells the others that one is under way."""
    if not claim_stop(session, now, Q(stop_requested_at__isnull=True), updated_at=now):
        session.refresh_from_db()
        if session.is_sending_stop or session.stop_requested_at is None:
            # Sent and not answered yet; or its claim was released in between:
            # it failed just now, and the caller may send the stop again.
            raise StopUnderWay(STOP_UNDER_WAY)
        logger.info("api_session=%s stop already requested", session.pk)
        return session
    hand_back_connection()
    try:
        with given_or_new(client) as steve:
            remote_stop(session, tx, steve)
    except StopUnconfirmed as error:
        logger.warning("api_session=%s stop unconfirmed: %s", session.pk, error)
        stop_returned(
            session,
            now,
            status_message=as_status_message(error.message),
            updated_at=now,
        )
    except ApiSessionError:
        # Not sent, or refused: nothing is under way, so the next stop is sent.
        release_stop(session, now, updated_at=now)
        raise
    else:
        stop_returned(session, now)
        clear_message(session, now)
        logger.info("api_session=%s stop requested", session.pk)
    session.refresh_from_db()
    return session
