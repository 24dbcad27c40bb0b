"""Following open sessions to the end: run after each transactions sync."""

import logging
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sessions_app.api.selectors.matching import (
    CLOCK_SKEW,
    api_session_matching_transaction,
    transactions_synced_since,
)
from sessions_app.charging.errors import (
    ApiSessionError,
    SessionInvalid,
    StartUnconfirmed,
    StationError,
    StopUnconfirmed,
)
from sessions_app.charging.station import (
    CHARGING_PAST_MANUAL_STOP,
    remote_start,
    remote_stop,
)
from sessions_app.charging.tags import tag_for
from sessions_app.charging.targets import reached_target
from sessions_app.models import (
    ApiSession,
    as_status_message,
    operation_answer_window,
)
from sessions_app.readings import (
    charging_activity,
    energy_report,
    with_stop_reading,
)
from sessions_app.signals import api_session_changed
from sync.client import SteveClient, SteveError, given_or_new
from sync.energy import readings_due_until
from sync.models import Charger, TransactionSyncState, UserMapping

logger = logging.getLogger(__name__)

Status = ApiSession.Status


CANCELLED_BY_STOP = "Cancelled before its scheduled start."
CANCELLED_BY_EARLY_STOP = "Cancelled: the stop came before charging began."


def api_sessions_advance_all(
    *, now: datetime | None = None, client: SteveClient | None = None
) -> int:
    """Advance every created or started session, and every ended one whose charge
    changed since it ended; returns how many were looked at.

    One session's failure is logged and does not hold up the others. The task's
    soft time limit ends the loop: every step commits on its own, so what was done
    stays done, and the next run (a sync interval later) takes up the rest.
    """
    with given_or_new(client) as steve:
        ids = list(
            ApiSession.objects.open().order_by("id").values_list("pk", flat=True)
        )
        ids += (
            ApiSession.objects.resettling(now or timezone.now())
            .order_by("id")
            .values_list("pk", flat=True)
        )
        for done, pk in enumerate(ids):
            try:
                # Each at its own moment (unless one is given): a session before
                # it may have waited up to STEVE_OPERATION_TIMEOUT for a station,
                # and a start or stop claimed at the loop's moment would have its
                # window counted from before it went out.
                api_session_advance(session_id=pk, client=steve, now=now)
            except SoftTimeLimitExceeded:
                logger.warning(
                    "api_session=%s advance cut off by the soft time limit; %s of "
                    "%s sessions left for the next run",
                    pk,
                    len(ids) - done,
                    len(ids),
                )
                return done
            except ApiSession.DoesNotExist:
                # Deleted since the ids were read: its start was refused.
                continue
            except Exception:
                logger.exception("api_session=%s could not advance", pk)
        return len(ids)


def api_session_advance(
    *, session_id: int, client: SteveClient, now: datetime | None = None
) -> ApiSession:
    """Move one session along its lifecycle and refresh its live readings.

    Deliberately not one database transaction: each step commits on its own, so
    none stays open while SteVe answers (operations block up to 30 s). Every step is
    a conditional UPDATE, so two workers advancing the same session cannot make the
    same change (or send the same remote start or target stop) twice.

    Returns the session as stored afterwards. Raises ApiSession.DoesNotExist.
    """
    now = now or timezone.now()
    session = ApiSession.objects.select_related("transaction").get(pk=session_id)
    if session.status == Status.CREATED:
        session = _advance_created(session, client, now)
    if session.status == Status.STARTED:
        session = _advance_started(session, client, now)
    elif session.status == Status.ENDED:
        session = _resettle_ended(session, client, now)
    return session


def _advance_created(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    if session.remote_start_sent_at is None:
        return _send_scheduled_start(session, client, now)
    timeout = settings.API_SESSION_START_TIMEOUT_SECONDS
    deadline = session.remote_start_sent_at + timedelta(seconds=timeout)
    # Charging "did not start within the timeout" is a fact only once a sync has
    # read SteVe after the last moment a matching start could be stamped; until
    # then (SteVe down, the sync behind) the decision waits instead of guessing.
    # Asked before the match below: a run that has finished has committed what it
    # saw, so the match cannot miss a transaction that run stored.
    last_possible_start = deadline + CLOCK_SKEW
    start_ruled_out = now >= last_possible_start and transactions_synced_since(
        last_possible_start
    )
    match = api_session_matching_transaction(session=session, start_deadline=deadline)
    if match is not None:
        # An unconfirmed start is confirmed now: its message no longer holds.
        started = transition(
            session,
            Status.CREATED,
            Status.STARTED,
            now,
            transaction=match,
            status_message="",
        )
        if started.stop_requested_at is not None:
            _send_stop_asked_before_start(started, match, client, now)
            started.refresh_from_db()
        return started
    if start_ruled_out and session.stop_requested_at is not None:
        return cancel_created(session, now, CANCELLED_BY_EARLY_STOP)
    if start_ruled_out and session.remote_start_returned_at is None:
        if now <= lost_start_resent_from(session.remote_start_sent_at):
            return session
        return _resend_lost_start(session, client, now)
    if start_ruled_out:
        return cancel_created(
            session,
            now,
            f"The station did not start charging within {timeout} seconds; create "
            "a new session to try again.",
        )
    return session


def _send_stop_asked_before_start(
    session: ApiSession, tx: TransactionSyncState, client: SteveClient, now: datetime
) -> None:
    """Send the stop asked for while the session waited for its charge to start.

    Claimed by moving `stop_requested_at` to now, so one worker sends it; from
    then on it is a stop like any other, sent again by `_resend_lost_stop` if the
    charge goes on."""
    if not claim_stop(
        session, now, Q(stop_requested_at=session.stop_requested_at), updated_at=now
    ):
        return
    logger.info("api_session=%s started after its stop; stopping", session.pk)
    try:
        remote_stop(session, tx, client)
    except StopUnconfirmed as error:
        # Maybe delivered: `_resend_lost_stop` sends it again if charging goes on.
        stop_returned(session, now, status_message=as_status_message(error.message))
        logger.warning("api_session=%s stop unconfirmed: %s", session.pk, error)
    except StationError as error:
        # Never delivered: due at once, so the next advance sends it again.
        stop_returned(session, now, stop_requested_at=now - stop_resend_after())
        logger.warning("api_session=%s stop failed: %s", session.pk, error)
    except ApiSessionError as error:
        # The station answered; the driver can still stop it at the station.
        stop_returned(session, now, status_message=as_status_message(error.message))
        logger.warning("api_session=%s stop refused: %s", session.pk, error)
    else:
        stop_returned(session, now)


def _send_scheduled_start(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    if session.target_start_at is not None and session.target_start_at > now:
        return session
    # Claim first: the remote start goes out once, however many workers run.
    claimed = ApiSession.objects.filter(
        pk=session.pk, status=Status.CREATED, remote_start_sent_at__isnull=True
    ).update(remote_start_sent_at=now, updated_at=now)
    session.refresh_from_db()
    if not claimed:
        return session
    # Chosen again now: the tag picked hours ago may have started another charge
    # since, which SteVe would refuse this start for. The start goes out after
    # the choice's transaction, which must not wait for the station.
    try:
        with transaction.atomic():
            _check_start_still_allowed(session)
            tag = tag_for(
                session.user,
                session.charge_box_id,
                session.connector_id,
                session=session,
            )
            if tag != session.id_tag:
                ApiSession.objects.filter(pk=session.pk).update(id_tag=tag)
                session.id_tag = tag
    except ApiSessionError as error:
        return _cancel_not_sent(session, now, "The scheduled start was not sent", error)
    return _send_claimed_start(session, client, now)


def _cancel_not_sent(
    session: ApiSession, now: datetime, what: str, error: ApiSessionError
) -> ApiSession:
    """Cancel a session whose start was claimed but not sent: `what` happened,
    and the error's message says why."""
    return cancel_created(
        session,
        now,
        as_status_message(f"{what}. {error.message}"),
        remote_start_returned_at=now,
    )


def _check_start_still_allowed(session: ApiSession, *, card: bool = False) -> None:
    """Raise SessionInvalid when what the create checked no longer holds for a
    start sent later: staff deactivated the account, made the charger private
    to it, or (`card`: the session's own card) deactivated its card. A scheduled
    start chooses its card again (`tag_for`), which says when none is left."""
    user = session.user
    if not user.is_active:
        raise SessionInvalid("This account has been deactivated.")
    place = f"{session.charge_box_id} #{session.connector_id}"
    usable = Charger.objects.filter(
        charge_box_id=session.charge_box_id, connector_id=session.connector_id
    ).usable_by(user)
    if not usable.exists():
        raise SessionInvalid(
            f"{place} is no longer open to this account: it is not a public "
            "charger, and none of the account's charger groups holds it."
        )
    if card and not (
        UserMapping.objects.active()
        .filter(user=user, steve_ocpp_id_tag__iexact=session.id_tag)
        .exists()
    ):
        raise SessionInvalid(
            f"The session's card {session.id_tag} is no longer an active card of "
            "this account."
        )


def start_answer_awaited_until(sent_at: datetime) -> datetime:
    """Until when the request that sent a start at `sent_at` may still be waiting
    for the station's answer."""
    return sent_at + operation_answer_window()


def lost_start_resent_from(sent_at: datetime) -> datetime:
    """From when a start sent at `sent_at` whose answer was never stored is sent
    again (by the first sync after it that finds no charge): once no charge it
    began can still appear, and no request can still be waiting for its answer.
    A start timeout shorter than SteVe's wait would otherwise send a second start
    while the first one's request still waits."""
    window_closed = (
        sent_at
        + timedelta(seconds=settings.API_SESSION_START_TIMEOUT_SECONDS)
        + CLOCK_SKEW
    )
    return max(window_closed, start_answer_awaited_until(sent_at))


def _resend_lost_start(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    """Send a start again whose send never returned (the worker, or the process
    serving the create, was killed or cut off by a time limit after the claim),
    once its whole start window has passed with no charge.

    Whether the first one reached the station is unknown, but it did not start
    a charge within the window, which is what cancels any other start; so, as a
    new session would, the start is sent again, once per window: one send in
    flight at a time, never after a charge began (that starts the session), and
    the station refuses a start while a charge runs on the connector.
    """
    asked_at = session.remote_start_sent_at
    claimed = ApiSession.objects.filter(
        pk=session.pk,
        status=Status.CREATED,
        remote_start_sent_at=asked_at,
        remote_start_returned_at__isnull=True,
    ).update(remote_start_sent_at=now, updated_at=now)
    session.refresh_from_db()
    if not claimed:
        return session
    try:
        _check_start_still_allowed(session, card=True)
    except ApiSessionError as error:
        return _cancel_not_sent(
            session,
            now,
            "No charge began within the start window, and the start was not sent again",
            error,
        )
    logger.warning(
        "api_session=%s start claimed at %s never returned; sending it again",
        session.pk,
        asked_at,
    )
    return _send_claimed_start(
        session,
        client,
        now,
        note="The start was sent again: the first send was cut off "
        "before the charging network answered.",
    )


def _send_claimed_start(
    session: ApiSession, client: SteveClient, now: datetime, *, note: str = ""
) -> ApiSession:
    """Send the start this worker claimed and store its outcome; `note` is the
    message of a start the station took."""
    message = note
    try:
        remote_start(session, client)
    except StartUnconfirmed as error:
        logger.warning("api_session=%s start unconfirmed: %s", session.pk, error)
        message = as_status_message(error.message)
    except ApiSessionError as error:
        return cancel_created(
            session,
            now,
            as_status_message(error.message),
            remote_start_returned_at=timezone.now(),
        )
    start_returned(session, now, status_message=message)
    session.refresh_from_db()
    return session


def _advance_started(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    tx = session.transaction
    if tx is None:  # the synced row is gone; nothing more will be learned
        return transition(
            session,
            Status.STARTED,
            Status.ENDED,
            now,
            ended_at=now,
            status_message="This charge's synced record was removed from Polaris, "
            "so the session ended with the readings it last had.",
        )
    # A manual stop is SteVe's bookkeeping, not the station's stop message that
    # ends a session: while the station goes on charging, so does the session.
    over = (
        tx.is_finalized and not tx.may_charge_past_manual_stop(now)
    ) or tx.is_suspected_stuck
    session = _refresh_readings(session, tx, client, now, over=over)
    if over:
        return transition(
            session,
            Status.STARTED,
            Status.ENDED,
            now,
            ended_at=tx.charge_ended_at(),
            status_message=_end_message(tx),
        )
    if tx.is_stopped_manually:
        # No target can stop it either.
        return _say(session, CHARGING_PAST_MANUAL_STOP, now)
    _enforce_targets(session, tx, client, now)
    return session


DELETED_IN_STEVE = (
    "This charge was deleted in the charging network (with its card or charger), "
    "so the session ended with the readings it last had."
)
STUCK = (
    "The station stopped reporting this charge without a stop the charging network "
    "accepted, so the session ended with the readings it last had."
)


def _end_message(tx: TransactionSyncState) -> str:
    """What an ended session says of its end: nothing when the station stopped it
    (a message about an earlier hiccup, a refused stop, would read as if it still
    held), else why it ended without that."""
    if tx.is_deleted_in_steve:
        return DELETED_IN_STEVE
    if tx.is_finalized:
        return ""
    # SteVe keeps it active forever (a lost or refused StopTransaction), and the
    # session would hold its connector with it.
    return STUCK


def _say(session: ApiSession, message: str, now: datetime) -> ApiSession:
    """Set the session's message, moving updatedAt only when it changes."""
    if session.status_message != message:
        ApiSession.objects.filter(pk=session.pk).update(
            status_message=message, updated_at=now
        )
        session.refresh_from_db()
    return session


def _resettle_ended(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    """Bring an ended session up to its charge, which changed after it ended: the
    station's own stop replaced a manual one (CONTRACT §11), with later readings
    and a later stop time. Its metrics and cost read the charge itself, so only
    what the session keeps of it is written, and updatedAt says it changed."""
    tx = session.transaction
    if tx is None or not tx.is_finalized or tx.updated_at <= session.updated_at:
        return session
    session = _refresh_readings(session, tx, client, now, over=True)
    ApiSession.objects.filter(pk=session.pk).update(
        ended_at=tx.charge_ended_at(), status_message=_end_message(tx), updated_at=now
    )
    session.refresh_from_db()
    logger.info("api_session=%s re-read: its charge changed after it ended", session.pk)
    announce_status(session)
    return session


def _refresh_readings(
    session: ApiSession,
    tx: TransactionSyncState,
    client: SteveClient,
    now: datetime,
    *,
    over: bool,
) -> ApiSession:
    if tx.is_deleted_in_steve:  # SteVe has no readings of it left to give
        return session
    try:
        details = client.transaction_details(
            tx.steve_transaction_id, energy_values_only=False
        )
    except SteveError as error:
        # Best effort: the lifecycle goes on with the last good readings.
        logger.warning(
            "api_session=%s meter values unavailable: %s", session.pk, error.message
        )
        return session
    due_until = readings_due_until(
        now=now, started_at=tx.started_at, first_stored_at=tx.created_at
    )
    readings = with_stop_reading(details, due_until=due_until)
    end = tx.charge_ended_at() if over else None
    report = energy_report(readings, stopped_at=end)
    activity = charging_activity(readings, start=tx.started_at, end=end)
    if report == session.energy_report and activity == session.charging_activity:
        return session
    ApiSession.objects.filter(pk=session.pk).update(
        energy_report=report, charging_activity=activity, updated_at=now
    )
    session.energy_report, session.charging_activity = report, activity
    session.updated_at = now
    return session


def _enforce_targets(
    session: ApiSession, tx: TransactionSyncState, client: SteveClient, now: datetime
) -> None:
    if session.stop_requested_at is not None:
        _resend_lost_stop(session, tx, client, now)
        return
    if session.target_reached:
        return
    reached = reached_target(session, tx, now)
    if reached is None:
        return
    # Claim first: the stop goes out once, however many workers run.
    if not claim_stop(
        session,
        now,
        Q(target_reached="", stop_requested_at__isnull=True),
        target_reached=reached,
        updated_at=now,
    ):
        return
    logger.info("api_session=%s reached its %s target; stopping", session.pk, reached)
    try:
        remote_stop(session, tx, client)
    except StopUnconfirmed as error:
        # Maybe delivered: the claim stays, and `_resend_lost_stop` sends the stop
        # again if the charge goes on.
        stop_returned(session, now)
        logger.warning("api_session=%s target stop unconfirmed: %s", session.pk, error)
    except StationError as error:
        # Never delivered: release the claim so that the next advance sends it.
        release_stop(session, now, target_reached="")
        logger.warning("api_session=%s target stop failed: %s", session.pk, error)
    except ApiSessionError as error:
        # The station answered; asking again every few seconds would not help.
        stop_returned(session, now, status_message=as_status_message(error.message))
        logger.warning("api_session=%s target stop refused: %s", session.pk, error)
    else:
        stop_returned(session, now)


def stop_resend_after() -> timedelta:
    """How long a requested stop may leave the charge running before it is sent
    again: the longest a stop can take to send (SteVe waits for the station),
    then two syncs to see the station's StopTransaction."""
    return timedelta(
        seconds=settings.STEVE_OPERATION_TIMEOUT + 2 * settings.SYNC_INTERVAL_SECONDS
    )


def _resend_lost_stop(
    session: ApiSession, tx: TransactionSyncState, client: SteveClient, now: datetime
) -> None:
    """Send the stop again when the one requested at `stop_requested_at` has not
    stopped the charge within `stop_resend_after()`.

    The request is claimed before the stop goes out, so a worker killed while
    SteVe waits for the station (a restart, a time limit) leaves a claim whose stop
    was never delivered; without a resend the charge would run past its target
    until the driver unplugs. A station that ignored the stop gets it again too.
    """
    asked_at = session.stop_requested_at
    assert asked_at is not None
    if tx.stopped_at is not None or now - asked_at < stop_resend_after():
        return
    # Claim the moment seen: one resend per period, however many workers run.
    if not claim_stop(session, now, Q(stop_requested_at=asked_at)):
        return
    logger.warning(
        "api_session=%s charge still running %s after its stop; sending it again",
        session.pk,
        now - asked_at,
    )
    try:
        remote_stop(session, tx, client)
    except ApiSessionError as error:
        # The next resend comes one period later.
        logger.warning("api_session=%s stop resend failed: %s", session.pk, error)
    else:
        clear_message(session, now)
    stop_returned(session, now)


def claim_stop(session: ApiSession, now: datetime, unclaimed: Q, **fields: Any) -> bool:
    """Claim the sending of a remote stop at `now`, with `fields`, if the session
    is still as `unclaimed` says: False when another claimed it first. From then
    on `ApiSession.is_sending_stop` holds, until `stop_returned` or
    `release_stop`."""
    claimed = bool(
        ApiSession.objects.filter(unclaimed, pk=session.pk).update(
            stop_requested_at=now, remote_stop_returned_at=None, **fields
        )
    )
    if claimed:
        # Every open page of the owner says "Stopping…" from now: a Stop pressed
        # in another tab, an integrator's, a target's or one the sync sends again.
        announce_status(session)
    return claimed


def start_returned(session: ApiSession, now: datetime, *, status_message: str) -> None:
    """Store that the remote start sent has its outcome, and `status_message` (why
    it is unconfirmed, or that it was sent again). Unless the sync has meanwhile
    seen the charge start, which answers it (another worker's advance may, while a
    start waits up to STEVE_OPERATION_TIMEOUT), or a stop was asked for, whose
    message says what happens next."""
    returned = ApiSession.objects.filter(pk=session.pk)
    returned.update(remote_start_returned_at=timezone.now(), updated_at=now)
    returned.filter(status=Status.CREATED, stop_requested_at__isnull=True).update(
        status_message=status_message
    )


def stop_returned(session: ApiSession, sent_at: datetime, **fields: Any) -> None:
    """Store, with `fields`, that the remote stop claimed at `sent_at` has its
    outcome (`ApiSession.is_sending_stop` no longer holds): a stop asked for
    meanwhile was told one is under way, and the next one gets the session as it
    is. Unless another stop was claimed since (this one outlived its answer
    window, and the sync sent it again), whose outcome is still to come."""
    ApiSession.objects.filter(pk=session.pk, stop_requested_at=sent_at).update(
        remote_stop_returned_at=timezone.now(), **fields
    )


def release_stop(session: ApiSession, sent_at: datetime, **fields: Any) -> None:
    """Forget the claim of a stop sent at `sent_at` that was never delivered (or
    that the station refused, for a caller who may ask again), with `fields`: the
    next stop is sent."""
    released = ApiSession.objects.filter(
        pk=session.pk, stop_requested_at=sent_at
    ).update(stop_requested_at=None, **fields)
    if released:
        announce_status(session)  # the owner's pages offer Stop again


def clear_message(session: ApiSession, now: datetime) -> None:
    """Forget a started session's message (a stop the station refused) once the
    station accepted a stop: it no longer describes the session."""
    ApiSession.objects.filter(pk=session.pk).exclude(status_message="").update(
        status_message="", updated_at=now
    )


@transaction.atomic
def transition(
    session: ApiSession,
    from_status: str,
    to_status: str,
    now: datetime,
    *,
    only_if: Q | None = None,
    **fields: Any,
) -> ApiSession:
    """Move `session` from one status to the next with a conditional UPDATE (also
    conditional on `only_if`) and announce the change when this call made it.
    Returns the session as stored."""
    changed = (
        ApiSession.objects.filter(pk=session.pk, status=from_status)
        .filter(only_if or Q())
        .update(status=to_status, updated_at=now, **fields)
    )
    session.refresh_from_db()
    if changed:
        logger.info("api_session=%s %s → %s", session.pk, from_status, to_status)
        announce_status(session)
    return session


def cancel_created(
    session: ApiSession,
    now: datetime,
    message: str,
    *,
    only_if: Q | None = None,
    **fields: Any,
) -> ApiSession:
    """End a session that never started charging: `created` → `cancelled`, with
    `message` for the caller (see `transition`)."""
    return transition(
        session,
        Status.CREATED,
        Status.CANCELLED,
        now,
        only_if=only_if,
        ended_at=now,
        status_message=message,
        **fields,
    )


def cancel_scheduled(session: ApiSession, now: datetime, message: str) -> ApiSession:
    """`cancel_created` for a session whose scheduled start has not gone out, and
    only if it still has not when the UPDATE runs: beat's `_send_scheduled_start`
    may claim the start after the caller read the session, and a session cancelled
    while its start goes out would let the station start a charge nobody follows.
    Returns the session as stored, `created` with its start sent in that case."""
    return cancel_created(
        session, now, message, only_if=Q(remote_start_sent_at__isnull=True)
    )


def announce_status(session: ApiSession) -> None:
    """Send `api_session_changed` after commit."""

    def send() -> None:
        # The owner's dashboard banner offers Stop only once the session has its
        # transaction, which happens here, after the sync already refreshed it.
        api_session_changed.send(sender=ApiSession, session=session)

    transaction.on_commit(send)
