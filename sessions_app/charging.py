"""Services of the Sessions API: start a charge remotely and follow it to the end.

Lifecycle: created → started → ended, or created → cancelled.

- `api_session_create` sends RemoteStartTransaction (at once, or at the target's
  `energy_start_time`) and stores the session as `created`.
- `api_session_advance` is run for every open session right after each scheduled
  transactions sync (`sessions_app.tasks.api_sessions_advance_all`, linked to the
  sync's beat entry in polaris/celery.py). SteVe never returns the new
  transaction id (CONTRACT §7), so a session starts when the sync has stored the
  transaction its remote start began (`api_session_matching_transaction`); it ends
  when that transaction is finalized. It is cancelled when charging did not start
  within API_SESSION_START_TIMEOUT_SECONDS, which only a sync run that read SteVe
  after that deadline can show; a scheduled start whose send never returned (its
  worker killed or cut off after the claim) is sent again instead. While started,
  it refreshes the live readings from SteVe and stops the charge before a target
  would be passed, sending the stop
  again if the charge still runs `stop_resend_after()` later.
- `api_session_stop` sends RemoteStopTransaction.

Every status change sends `api_session_changed` after commit, which refreshes the
owner's live dashboard banner.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import Reservation
from sessions_app.api_selectors import (
    CLOCK_SKEW,
    api_session_energy_kwh,
    api_session_matching_transaction,
    api_session_rate,
    transactions_synced_since,
)
from sessions_app.models import ApiSession, Rate
from sessions_app.pricing import RateTerms, session_cost
from sessions_app.readings import (
    charging_activity,
    energy_report,
    with_stop_reading,
)
from sessions_app.signals import api_session_changed
from sync.client import (
    OperationResult,
    SteveClient,
    SteveError,
    SteveRejected,
    SteveUnanswered,
    in_base_unit,
)
from sync.models import Charger, TransactionSyncState, UserMapping

logger = logging.getLogger(__name__)

Status = ApiSession.Status
# A scheduled session holds its connector from the moment it is created, as the
# seed's energy_start_time is for "a connected EV" waiting there. A day reaches the
# next off-peak window from any time of day; a longer wait would close a public
# connector to everyone else for a plan that rarely survives that long.
SCHEDULE_HORIZON = timedelta(hours=24)
# Each target is stored with the decimal places of its ApiSession field; a value
# below one step would be stored as 0.
TARGET_STEP = {
    "time": Decimal("0.01"),
    "cost": Decimal("0.0001"),
    "energy": Decimal("0.001"),
}
W_PER_KW = Decimal(1000)
SECONDS_PER_HOUR = Decimal(3600)
# A repeated Idempotency-Key replays the first session only for the same request.
REQUEST_FIELDS = (
    "charge_box_id",
    "connector_id",
    "target_time_minutes",
    "target_cost",
    "target_energy_kwh",
    "target_start_at",
    "target_stop_at",
    "meta_data",
)


class ApiSessionError(Exception):
    """A request the Sessions API refuses; `message` is a sentence for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SessionNotFound(ApiSessionError):
    """The charger (or user) named does not exist for this caller."""


class SessionConflict(ApiSessionError):
    """The session, connector or station is in a state that forbids the request."""


class SessionInvalid(ApiSessionError):
    """The request is well-formed but cannot be carried out as asked."""


class StationError(ApiSessionError):
    """SteVe or the station failed to answer."""


class StartUnconfirmed(StationError):
    """The remote start reached SteVe, but its answer was lost, or the station's
    answer did not reach SteVe in time: the station may start charging, so the
    session waits for it like any other start."""


class StopUnconfirmed(StationError):
    """The remote stop reached SteVe, but its answer was lost, or the station's
    answer did not reach SteVe in time: the station may have stopped, so the stop
    counts as requested, and it is sent again if the charge goes on."""


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """What ends (or schedules) a session; None means no such target."""

    time_minutes: Decimal | None = None
    cost: Decimal | None = None
    energy_kwh: Decimal | None = None
    start_at: datetime | None = None
    stop_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CreatedSession:
    """The session and whether it was replayed for a repeated Idempotency-Key."""

    session: ApiSession
    replayed: bool


# Create and stop


@transaction.atomic
def api_session_create(
    *,
    user: User,
    charge_box_id: str,
    connector_id: int,
    client: SteveClient,
    target: SessionTarget | None = None,
    meta_data: dict[str, Any] | None = None,
    idempotency_key: str = "",
    now: datetime | None = None,
) -> CreatedSession:
    """Create a session for `user` and ask the station to start charging.

    With a future `target.start_at` the remote start waits until then. A repeated
    `idempotency_key` returns the first session (`replayed`) if it was asked for
    with the same charger, targets and meta_data. Nothing is stored when
    SteVe or the station refuses; a start whose answer was lost, or that the
    station did not answer in time (StartUnconfirmed), is stored with a
    `status_message` saying so, as the station may start.

    Raises SessionNotFound (unknown charger), SessionConflict (connector busy,
    station offline or Rejected), SessionInvalid (no tag, tag not eligible, bad
    target, key reused for another request) or StationError (not sent, or the
    station answered with an error).
    """
    now = now or timezone.now()
    target = target or SessionTarget()
    if idempotency_key:
        asked = ApiSession(
            **_session_fields(charge_box_id, connector_id, target, meta_data)
        )
        replay = _replay(user, idempotency_key, _request_of(asked))
        if replay is not None:
            return CreatedSession(replay, replayed=True)
    _check_charger(user, charge_box_id, connector_id)
    rate = Rate.objects.for_charger(charge_box_id, connector_id)
    _check_target(target, rate, now)
    session = _new_session(
        user, charge_box_id, connector_id, rate, target, meta_data, idempotency_key
    )
    session.created_at = session.updated_at = now
    replay = _insert(session)
    if replay is not None:
        return CreatedSession(replay, replayed=True)
    # meta_data as stored, so the answer shows it as every later GET will: jsonb
    # keeps each number's value but not its spelling (1e20, -0.0) or key order.
    session.refresh_from_db(fields=["meta_data"])
    if target.start_at is None or target.start_at <= now:
        # Still inside this transaction: a refusal rolls the row back (no phantom
        # session), and the uncommitted row holds the connector's unique index
        # entry, so a concurrent request for it waits for this one. A start whose
        # answer was lost is kept: the station may be charging on it.
        try:
            _remote_start(session, client)
        except StartUnconfirmed as error:
            logger.warning("api_session=%s start unconfirmed: %s", session.pk, error)
            session.status_message = error.message[:255]
        session.remote_start_sent_at = now
        session.remote_start_returned_at = timezone.now()
        session.save(
            update_fields=[
                "remote_start_sent_at",
                "remote_start_returned_at",
                "status_message",
            ]
        )
    logger.info("api_session=%s created for user=%s", session.pk, user.pk)
    _announce_status(session)
    return CreatedSession(session, replayed=False)


@transaction.atomic
def api_session_stop(
    *, session: ApiSession, client: SteveClient, now: datetime | None = None
) -> ApiSession:
    """Ask the station to stop charging `session`.

    Returns the session: still `started` (it ends when the sync sees the stop), or
    `cancelled` when its scheduled start had not been sent yet. A stop whose
    answer was lost (StopUnconfirmed) counts as requested, with a `status_message`
    saying so: the station may have stopped. Raises
    SessionConflict when it has not started, has ended or was cancelled, or the
    station refuses; StationError when SteVe or the station does not answer.
    """
    now = now or timezone.now()
    if session.status == Status.CREATED and session.remote_start_sent_at is None:
        return _transition(
            session,
            Status.CREATED,
            Status.CANCELLED,
            now,
            ended_at=now,
            status_message="Cancelled before its scheduled start.",
        )
    if session.status == Status.CREATED:
        raise SessionConflict(
            "Charging has not started yet, so there is nothing to stop; a session "
            "that does not start in time is cancelled automatically."
        )
    if session.status != Status.STARTED or session.transaction is None:
        raise SessionConflict(f"This session is already {session.status}.")
    try:
        _remote_stop(session, session.transaction, client)
    except StopUnconfirmed as error:
        logger.warning("api_session=%s stop unconfirmed: %s", session.pk, error)
        unconfirmed = error.message
    else:
        unconfirmed = ""
    ApiSession.objects.filter(pk=session.pk, stop_requested_at__isnull=True).update(
        stop_requested_at=now, updated_at=now
    )
    if unconfirmed:
        ApiSession.objects.filter(pk=session.pk).update(
            status_message=unconfirmed[:255], updated_at=now
        )
    else:
        _clear_message(session, now)
    session.refresh_from_db()
    logger.info("api_session=%s stop requested", session.pk)
    return session


def _replay(user: User, key: str, request: tuple[Any, ...]) -> ApiSession | None:
    """The session `user` created with `key`, or None. Raises SessionInvalid when
    that session was asked for with another request (`_request_of`): returning it
    would silently drop the targets or data this one asked for."""
    existing = (
        ApiSession.objects.select_related("transaction")
        .filter(user=user, idempotency_key=key)
        .first()
    )
    if existing is None:
        return None
    if _request_of(existing) != request:
        raise SessionInvalid(
            "This Idempotency-Key was already used for a different request."
        )
    return existing


def _session_fields(
    charge_box_id: str,
    connector_id: int,
    target: SessionTarget,
    meta_data: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ApiSession fields a create request sets, as `_new_session` stores them."""
    return {
        "charge_box_id": charge_box_id,
        "connector_id": connector_id,
        "target_time_minutes": _places(target.time_minutes, TARGET_STEP["time"]),
        "target_cost": _places(target.cost, TARGET_STEP["cost"]),
        "target_energy_kwh": _places(target.energy_kwh, TARGET_STEP["energy"]),
        "target_start_at": target.start_at,
        "target_stop_at": target.stop_at,
        "meta_data": meta_data or {},
    }


def _request_of(session: ApiSession) -> tuple[Any, ...]:
    """What makes two create requests the same request: the fields they set."""
    return tuple(getattr(session, name) for name in REQUEST_FIELDS)


def _check_charger(user: User, charge_box_id: str, connector_id: int) -> None:
    chargers = (
        Charger.objects.all()
        if user.is_staff
        else Charger.objects.visible_to_customer(user)
    ).filter(charge_box_id=charge_box_id, connector_id=connector_id)
    if not chargers.exists():
        raise SessionNotFound(
            f"There is no charger {charge_box_id} with connector {connector_id}."
        )


def _check_target(target: SessionTarget, rate: Rate | None, now: datetime) -> None:
    for name, value in (
        ("time", target.time_minutes),
        ("cost", target.cost),
        ("energy", target.energy_kwh),
    ):
        if value is not None and value < TARGET_STEP[name]:
            raise SessionInvalid(f"target.{name} must be at least {TARGET_STEP[name]}.")
    if target.cost is not None and rate is None:
        raise SessionInvalid("A cost target needs a rate, and this charger has none.")
    if target.cost is not None and rate is not None:
        # What the session costs the moment it starts (the flat fee, taxed): a
        # target at or below it would be passed before any energy flows.
        floor = session_cost(rate=rate, kwh=Decimal(0), started_at=now, ended_at=now)
        if target.cost <= floor.amount:
            raise SessionInvalid(
                f"target.cost must be more than {floor.amount.normalize():f} "
                f"{floor.currency.upper()}: this charger's rate charges that as "
                "soon as a session starts."
            )
    if target.start_at is not None and target.start_at > now + SCHEDULE_HORIZON:
        hours = SCHEDULE_HORIZON / timedelta(hours=1)
        raise SessionInvalid(
            f"target.energy_start_time must be at most {hours:g} hours from now: "
            "a scheduled session holds the connector until it starts."
        )
    if target.stop_at is not None and target.stop_at <= now:
        raise SessionInvalid("target.energy_stop_time must be in the future.")
    if target.start_at and target.stop_at and target.stop_at <= target.start_at:
        raise SessionInvalid(
            "target.energy_stop_time must be after target.energy_start_time."
        )


def _new_session(
    user: User,
    charge_box_id: str,
    connector_id: int,
    rate: Rate | None,
    target: SessionTarget,
    meta_data: dict[str, Any] | None,
    idempotency_key: str,
) -> ApiSession:
    session = ApiSession(
        user=user,
        id_tag=_tag_for(user, charge_box_id, connector_id),
        rate=rate,
        rate_terms=RateTerms.of(rate).as_json() if rate else None,
        idempotency_key=idempotency_key,
        **_session_fields(charge_box_id, connector_id, target, meta_data),
    )
    try:
        # The database checks the unique constraints in `_insert`, which also
        # decides between concurrent requests.
        session.full_clean(validate_constraints=False)
    except ValidationError as error:
        raise SessionInvalid(" ".join(error.messages)) from None
    return session


def _places(value: Decimal | None, step: Decimal) -> Decimal | None:
    if value is None:
        return None
    return value.quantize(step, rounding=ROUND_HALF_UP)


def _tag_for(user: User, charge_box_id: str, connector_id: int) -> str:
    """The tag of the user's reservation holding this connector, as the station
    lets only that tag charge there; else one of the user's active tags,
    preferring tags not charging right now (SteVe lets most tags run one
    transaction at a time)."""
    tags = UserMapping.objects.active().filter(user=user)
    reserved = (
        Reservation.objects.for_user(user)
        .covering(timezone.now())
        .filter(
            charger__charge_box_id=charge_box_id,
            charger__connector_id=connector_id,
            id_tag__in=tags.values("steve_ocpp_id_tag"),
        )
        .values_list("id_tag", flat=True)
        .first()
    )
    tag = reserved or UserMapping.objects.tag_to_charge_with(user)
    if tag is None:
        raise SessionInvalid(
            "No charging tag is linked to this account; ask support to link one "
            "before starting a session."
        )
    return tag


def _insert(session: ApiSession) -> ApiSession | None:
    """Save the new session; returns the earlier session instead when a concurrent
    request with the same Idempotency-Key got there first."""
    try:
        with transaction.atomic():
            session.save()
    except IntegrityError:
        if session.idempotency_key:
            replay = _replay(
                session.user,
                session.idempotency_key,
                _request_of(session),
            )
            if replay is not None:
                return replay
        raise SessionConflict(
            "This connector already has a session in progress; stop it or wait "
            "until it ends."
        ) from None
    return None


# Talking to the station


def _remote_start(session: ApiSession, client: SteveClient) -> None:
    """Send RemoteStartTransaction. Raises SessionConflict, SessionInvalid or
    StationError with a sentence for the caller."""
    try:
        result = client.remote_start(
            charge_box_id=session.charge_box_id,
            connector_id=session.connector_id,
            id_tag=session.id_tag,
        )
    except SteveRejected as error:
        raise _start_refusal(session, error) from None
    except SteveUnanswered as error:
        raise _start_unconfirmed(_answer_lost(error)) from None
    except SteveError as error:
        raise StationError(f"The start could not be sent: {error.message}") from None
    _check_answer(
        result,
        session,
        refused="The charge station refused to start charging: the connector may "
        "be in use, reserved or not ready.",
        unconfirmed=_start_unconfirmed,
    )


def _start_unconfirmed(why: str) -> StartUnconfirmed:
    timeout = settings.API_SESSION_START_TIMEOUT_SECONDS
    return StartUnconfirmed(
        f"The start was sent but {why}; the session is cancelled if charging does "
        f"not start within {timeout} seconds."
    )


def _start_refusal(session: ApiSession, error: SteveRejected) -> ApiSessionError:
    text = error.message.lower()
    if "no stations are eligible" in text:
        return SessionConflict(
            "The charge station is offline; try again when it is back online."
        )
    if "tag is not eligible" in text:
        return SessionInvalid(
            "This account's charging tag cannot start a charge: it is blocked, "
            "expired or already charging."
        )
    # A refusal none of the cases above explains. SteVe's own words name its
    # internals: the caller gets ours, the operators the original in the log.
    logger.warning(
        "api_session=%s SteVe refused the start: %s", session.pk, error.message
    )
    return StationError(
        "The charging network refused to start this charge; try again in a few "
        "minutes, and contact support if it keeps happening."
    )


def _remote_stop(
    session: ApiSession, tx: TransactionSyncState, client: SteveClient
) -> None:
    """Send RemoteStopTransaction for the session's SteVe transaction. Raises
    SessionConflict or StationError (StopUnconfirmed when it may have stopped)
    with a sentence for the caller."""
    try:
        result = client.remote_stop(
            charge_box_id=session.charge_box_id,
            transaction_id=tx.steve_transaction_id,
        )
    except SteveRejected as error:
        text = error.message.lower()
        if "not active" in text:
            raise SessionConflict(
                "The station has already stopped this charge; the session ends "
                "at the next sync."
            ) from None
        if "no stations are eligible" in text:
            raise SessionConflict(
                "The charge station is offline, so it cannot be stopped remotely."
            ) from None
        logger.warning(
            "api_session=%s SteVe refused the stop: %s", session.pk, error.message
        )
        raise StationError(
            "The charging network refused to stop this charge; try again in a few "
            "minutes, and contact support if it keeps happening."
        ) from None
    except SteveUnanswered as error:
        raise _stop_unconfirmed(_answer_lost(error)) from None
    except SteveError as error:
        raise StationError(f"The stop could not be sent: {error.message}") from None
    _check_answer(
        result,
        session,
        refused="The charge station refused to stop.",
        unconfirmed=_stop_unconfirmed,
    )


def _stop_unconfirmed(why: str) -> StopUnconfirmed:
    return StopUnconfirmed(
        f"The stop was sent but {why}; the session ends when the station reports "
        "the stop, and the stop is sent again if charging goes on."
    )


def _answer_lost(error: SteveUnanswered) -> str:
    return f"SteVe's answer was lost ({error.message.rstrip('.')})"


def _check_answer(
    result: OperationResult,
    session: ApiSession,
    *,
    refused: str,
    unconfirmed: Callable[[str], StationError],
) -> None:
    if result.accepted(session.charge_box_id):
        return
    status = result.status_of(session.charge_box_id)
    logger.warning(
        "api_session=%s station=%s answered %s",
        session.pk,
        session.charge_box_id,
        status,
    )
    if status.lower() == "rejected":
        raise SessionConflict(refused)
    if status == "Timeout":
        # SteVe sent the operation and stopped waiting for the station (CONTRACT
        # §7: taskFinished=false): the station may have acted on it, and its late
        # answer is dropped, so only the sync can tell what happened.
        raise unconfirmed("the station did not answer SteVe in time")
    raise StationError("The station could not process the request.")


# The lifecycle


def api_sessions_advance_all(
    *, now: datetime | None = None, client: SteveClient | None = None
) -> int:
    """Advance every created or started session; returns how many were looked at.

    One session's failure is logged and does not hold up the others. The task's
    soft time limit ends the loop: every step commits on its own, so what was done
    stays done, and the next run (a sync interval later) takes up the rest.
    """
    steve = client or SteveClient()
    try:
        ids = list(
            ApiSession.objects.open().order_by("id").values_list("pk", flat=True)
        )
        for done, pk in enumerate(ids):
            try:
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
            except Exception:
                logger.exception("api_session=%s could not advance", pk)
        return len(ids)
    finally:
        if client is None:
            steve.close()


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
        return _transition(
            session,
            Status.CREATED,
            Status.STARTED,
            now,
            transaction=match,
            status_message="",
        )
    if start_ruled_out and session.remote_start_returned_at is None:
        return _resend_lost_start(session, client, now)
    if start_ruled_out:
        return _transition(
            session,
            Status.CREATED,
            Status.CANCELLED,
            now,
            ended_at=now,
            status_message=f"The station did not start charging within {timeout} "
            "seconds; create a new session to try again.",
        )
    return session


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
    return _send_claimed_start(session, client, now)


def _resend_lost_start(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    """Send a scheduled start again whose send never returned (the worker was
    killed or cut off by a time limit after the claim), once its whole start
    window has passed with no charge.

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
    logger.warning(
        "api_session=%s start claimed at %s never returned; sending it again",
        session.pk,
        asked_at,
    )
    return _send_claimed_start(
        session,
        client,
        now,
        note="The scheduled start was sent again: the first send was cut off "
        "before SteVe answered.",
    )


def _send_claimed_start(
    session: ApiSession, client: SteveClient, now: datetime, *, note: str = ""
) -> ApiSession:
    """Send the start this worker claimed and store its outcome; `note` is the
    message of a start the station took."""
    message = note
    try:
        _remote_start(session, client)
    except StartUnconfirmed as error:
        logger.warning("api_session=%s start unconfirmed: %s", session.pk, error)
        message = error.message[:255]
    except ApiSessionError as error:
        return _transition(
            session,
            Status.CREATED,
            Status.CANCELLED,
            now,
            ended_at=now,
            remote_start_returned_at=timezone.now(),
            status_message=error.message[:255],
        )
    ApiSession.objects.filter(pk=session.pk).update(
        remote_start_returned_at=timezone.now(),
        status_message=message,
        updated_at=now,
    )
    session.refresh_from_db()
    return session


def _advance_started(
    session: ApiSession, client: SteveClient, now: datetime
) -> ApiSession:
    tx = session.transaction
    if tx is None:  # the synced row is gone; nothing more will be learned
        return _transition(
            session,
            Status.STARTED,
            Status.ENDED,
            now,
            ended_at=now,
            status_message="This charge's synced record was removed from Polaris, "
            "so the session ended with the readings it last had.",
        )
    session = _refresh_readings(session, tx, client, now)
    if tx.is_finalized:
        # The end is the whole story now: a message about an earlier hiccup (a
        # refused stop) would read as if it still held.
        return _transition(
            session,
            Status.STARTED,
            Status.ENDED,
            now,
            ended_at=tx.stopped_at or now,
            status_message="",
        )
    _enforce_targets(session, tx, client, now)
    return session


def _refresh_readings(
    session: ApiSession, tx: TransactionSyncState, client: SteveClient, now: datetime
) -> ApiSession:
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
    readings = with_stop_reading(details)
    report = energy_report(readings)
    activity = charging_activity(
        readings,
        start=tx.started_at,
        end=tx.stopped_at if tx.is_finalized else None,
    )
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
    reached = _reached_target(session, tx, now)
    if reached is None:
        return
    # Claim first: the stop goes out once, however many workers run.
    claimed = ApiSession.objects.filter(
        pk=session.pk, target_reached="", stop_requested_at__isnull=True
    ).update(target_reached=reached, stop_requested_at=now, updated_at=now)
    if not claimed:
        return
    logger.info("api_session=%s reached its %s target; stopping", session.pk, reached)
    try:
        _remote_stop(session, tx, client)
    except StopUnconfirmed as error:
        # Maybe delivered: the claim stays, and `_resend_lost_stop` sends the stop
        # again if the charge goes on.
        logger.warning("api_session=%s target stop unconfirmed: %s", session.pk, error)
    except StationError as error:
        # Never delivered: release the claim so that the next advance sends it.
        ApiSession.objects.filter(pk=session.pk).update(
            target_reached="", stop_requested_at=None
        )
        logger.warning("api_session=%s target stop failed: %s", session.pk, error)
    except ApiSessionError as error:
        # The station answered; asking again every few seconds would not help.
        ApiSession.objects.filter(pk=session.pk).update(
            status_message=error.message[:255]
        )
        logger.warning("api_session=%s target stop refused: %s", session.pk, error)


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
    claimed = ApiSession.objects.filter(
        pk=session.pk, stop_requested_at=asked_at
    ).update(stop_requested_at=now)
    if not claimed:
        return
    logger.warning(
        "api_session=%s charge still running %s after its stop; sending it again",
        session.pk,
        now - asked_at,
    )
    try:
        _remote_stop(session, tx, client)
    except ApiSessionError as error:
        # The next resend comes one period later.
        logger.warning("api_session=%s stop resend failed: %s", session.pk, error)
    else:
        _clear_message(session, now)


def _clear_message(session: ApiSession, now: datetime) -> None:
    """Forget a started session's message (a stop the station refused) once the
    station accepted a stop: it no longer describes the session."""
    ApiSession.objects.filter(pk=session.pk).exclude(status_message="").update(
        status_message="", updated_at=now
    )


def _reached_target(
    session: ApiSession, tx: TransactionSyncState, now: datetime
) -> str | None:
    """The target to stop the charge for now, as an `ApiSession.Target`, or None.

    Time, energy and cost are maxima (the seed's "Max session …"), and targets are
    checked once per advance, SYNC_INTERVAL_SECONDS apart. So a max stops the charge
    at the last check before it would be passed, at the latest power the station
    reported: waiting for the check after would overshoot by up to one interval of
    charging, plus the age of the readings. What remains can pass a max: power
    rising after the latest reading, an advance that runs late, and the moment the
    station takes to act on the stop. The stop time is a moment, not a max, and
    stops at the first check at or after it.
    """
    if session.target_stop_at is not None and now >= session.target_stop_at:
        return ApiSession.Target.STOP_TIME
    next_check = now + timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)
    projected_kwh = _projected_kwh(session, tx, next_check)
    energy = session.target_energy_kwh
    if energy is not None and projected_kwh >= energy:
        return ApiSession.Target.ENERGY
    minutes = session.target_time_minutes
    if minutes is not None and next_check - tx.started_at >= timedelta(
        minutes=float(minutes)
    ):
        return ApiSession.Target.TIME
    rate = api_session_rate(session)
    if session.target_cost is not None and rate is not None:
        cost = session_cost(
            rate=rate,
            kwh=projected_kwh,
            started_at=tx.started_at,
            ended_at=next_check,
        )
        if cost.amount >= session.target_cost:
            return ApiSession.Target.COST
    return None


def _projected_kwh(
    session: ApiSession, tx: TransactionSyncState, at: datetime
) -> Decimal:
    """Energy delivered by `at` if the EV keeps drawing what the latest reading
    showed: the reported power, or without one the average since the start."""
    delivered = api_session_energy_kwh(session)
    report = session.energy_report
    if not report:
        return delivered
    measured_at = datetime.fromisoformat(report["timestamp"])
    kw = _reported_kw(report.get("power"))
    if kw is None:
        charged_hours = _hours(measured_at - tx.started_at)
        kw = delivered / charged_hours if charged_hours > 0 else Decimal(0)
    return delivered + kw * _hours(at - measured_at)


def _reported_kw(power: dict[str, Any] | None) -> Decimal | None:
    if not power:
        return None
    return in_base_unit(Decimal(str(power["value"])), power["unit"]) / W_PER_KW


def _hours(span: timedelta) -> Decimal:
    return max(Decimal(str(span.total_seconds())), Decimal(0)) / SECONDS_PER_HOUR


@transaction.atomic
def _transition(
    session: ApiSession,
    from_status: str,
    to_status: str,
    now: datetime,
    **fields: Any,
) -> ApiSession:
    """Move `session` from one status to the next with a conditional UPDATE and
    announce the change when this call made it. Returns the session as stored."""
    changed = ApiSession.objects.filter(pk=session.pk, status=from_status).update(
        status=to_status, updated_at=now, **fields
    )
    session.refresh_from_db()
    if changed:
        logger.info("api_session=%s %s → %s", session.pk, from_status, to_status)
        _announce_status(session)
    return session


def _announce_status(session: ApiSession) -> None:
    """Send `api_session_changed` after commit."""

    def send() -> None:
        # The owner's dashboard banner offers Stop only once the session has its
        # transaction, which happens here, after the sync already refreshed it.
        api_session_changed.send(sender=ApiSession, session=session)

    transaction.on_commit(send)
