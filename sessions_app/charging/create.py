"""Creating a session: what a caller (the API, the portal) asks for.

A caller may create (or stop, `stop.py`) a session for themselves; for another
user only staff who `may_manage_any_session`, and each such write is audited
(`on_behalf.py`).
"""

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from sessions_app.charging.errors import (
    ApiSessionError,
    SessionConflict,
    SessionInvalid,
    SessionNotFound,
    StartUnconfirmed,
)
from sessions_app.charging.holders import someone_elses_reservation
from sessions_app.charging.lifecycle import (
    announce_status,
    cancel_created,
    lost_start_resent_from,
    start_answer_awaited_until,
    start_returned,
)
from sessions_app.charging.on_behalf import audit_on_behalf, check_may_manage
from sessions_app.charging.station import hand_back_connection, remote_start
from sessions_app.charging.tags import tag_for
from sessions_app.models import ApiSession, AuditEntry, Rate, as_status_message
from sessions_app.pricing import RateTerms, session_cost
from sync.client import (
    SteveClient,
    format_timestamp,
    given_or_new,
)
from sync.models import Charger

logger = logging.getLogger(__name__)

Status = ApiSession.Status

# A scheduled session holds its connector from the moment it is created, as the
# seed's energy_start_time is for "a connected EV" waiting there. A day reaches the
# next off-peak window from any time of day; a longer wait would close a public
# connector to everyone else for a plan that rarely survives that long.
SCHEDULE_HORIZON = timedelta(hours=24)
# A start time a little in the past is a clock running behind or a request that
# waited in a queue: it starts now. Much older, it is a request replayed long after
# it was meant, and starting a charge then would surprise its driver.
SCHEDULE_PAST_TOLERANCE = timedelta(minutes=15)
# Each target is stored with the decimal places of its ApiSession field; a value
# below one step would be stored as 0.
TARGET_STEP = {
    "time": Decimal("0.01"),
    "cost": Decimal("0.0001"),
    "energy": Decimal("0.001"),
}
# How long an Idempotency-Key replays its session (Stripe's window): long enough
# for any retry, after which the key is free for a new request.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# A repeated Idempotency-Key replays the first session only for the same request.
REQUEST_FIELDS = (
    "user_id",
    "charge_box_id",
    "connector_id",
    "target_time_minutes",
    "target_cost",
    "target_energy_kwh",
    "target_start_at",
    "target_stop_at",
    "meta_data",
)


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


def api_session_create(
    *,
    user: User,
    charge_box_id: str,
    connector_id: int,
    client: SteveClient | None = None,
    target: SessionTarget | None = None,
    meta_data: dict[str, Any] | None = None,
    idempotency_key: str = "",
    caller: User | None = None,
    now: datetime | None = None,
) -> CreatedSession:
    """Create a session for `user` and ask the station to start charging.

    With a future `target.start_at` the remote start waits until then. An
    `idempotency_key` is the `caller`'s (default `user`; staff who
    `may_manage_any_session` may create for another user, which is audited):
    repeated within IDEMPOTENCY_WINDOW, it returns the first session (`replayed`)
    if that was asked for with the same user, charger, targets and meta_data;
    after the window the key is free again.

    The session is stored before its start goes out, and no transaction waits
    for the station (up to SteVe's 30 s): meanwhile it holds the connector, so
    another create for it is a SessionConflict at once, as is a retry with the
    same key. Nothing is kept when SteVe or the station refuses: the session is
    deleted (or cancelled, when it was stopped meanwhile: that stop's answer said
    so). A start whose answer was lost, or that the station did not answer
    in time (StartUnconfirmed), is kept with a `status_message` saying so, as
    the station may start.

    Raises SessionForbidden (another user's, without the permission),
    SessionNotFound (unknown charger), SessionConflict (connector busy, station
    offline or Rejected, the key's first request still starting), SessionInvalid
    (no tag, tag not eligible, a charger the user may not use, bad target, key
    reused for another request) or StationError (not sent, or the station
    answered with an error).
    """
    now = now or timezone.now()
    target = _in_steps(target or SessionTarget())
    caller = caller or user
    created = _store_new_session(
        user=user,
        charge_box_id=charge_box_id,
        connector_id=connector_id,
        target=target,
        meta_data=meta_data,
        idempotency_key=idempotency_key,
        caller=caller,
        now=now,
    )
    if created.replayed:
        return created
    session = created.session
    if session.remote_start_sent_at is not None:
        session = _send_first_start(session, client)
    logger.info("api_session=%s created for user=%s", session.pk, user.pk)
    announce_status(session)
    return CreatedSession(session, replayed=False)


@transaction.atomic
def _store_new_session(
    *,
    user: User,
    charge_box_id: str,
    connector_id: int,
    target: SessionTarget,
    meta_data: dict[str, Any] | None,
    idempotency_key: str,
    caller: User,
    now: datetime,
) -> CreatedSession:
    """Check the request and store its session (or find the one its key
    replays). A start due now is claimed as sent at `now`: it goes out once this
    commits."""
    check_may_manage(caller, user.pk)
    if idempotency_key:
        asked = ApiSession(
            user=user, **_session_fields(charge_box_id, connector_id, target, meta_data)
        )
        _release_expired_key(caller, idempotency_key, now)
        replay = _replay(caller, idempotency_key, _request_of(asked))
        if replay is not None:
            return CreatedSession(replay, replayed=True)
    _check_charger(user, charge_box_id, connector_id, caller)
    rate = Rate.objects.for_charger(charge_box_id, connector_id)
    _check_target(target, rate, now)
    if target.start_at is not None and target.start_at > now:
        _check_no_reservation_of_someone_else(user, charge_box_id, connector_id, now)
    session = _new_session(
        user, charge_box_id, connector_id, rate, target, meta_data, idempotency_key, now
    )
    if idempotency_key:
        session.idempotency_caller = caller
    session.created_at = session.updated_at = now
    if target.start_at is None or target.start_at <= now:
        session.remote_start_sent_at = now
    replay = _insert(session)
    if replay is not None:
        return CreatedSession(replay, replayed=True)
    # meta_data as stored, so the answer shows it as every later GET will: jsonb
    # keeps each number's value but not its spelling (1e20, -0.0) or key order.
    session.refresh_from_db(fields=["meta_data"])
    # With the session, not after the station's answer: a process that dies
    # while the station answers leaves a session the sync may see start.
    audit_on_behalf(
        caller, session, AuditEntry.Action.API_SESSION_CREATED_ON_BEHALF, before=None
    )
    return CreatedSession(session, replayed=False)


def _send_first_start(session: ApiSession, client: SteveClient | None) -> ApiSession:
    """Send the start `_store_new_session` claimed and store its outcome. A
    refusal deletes the session and raises, as nothing was started; one that was
    stopped meanwhile (its caller was told it would be cancelled) is cancelled
    instead. A worker that dies before the outcome is stored leaves the claim to
    the sync, which sends the start again once its window has passed with no
    charge."""
    message = ""
    hand_back_connection()
    try:
        with given_or_new(client) as steve:
            remote_start(session, steve)
    except StartUnconfirmed as error:
        logger.warning("api_session=%s start unconfirmed: %s", session.pk, error)
        message = as_status_message(error.message)
    except ApiSessionError as error:
        if not _forget_refused(session):
            now = timezone.now()
            # Its key is freed as a deleted session's is: the create was refused,
            # so a retry with it starts again rather than replay a refusal as 201.
            cancel_created(
                session,
                now,
                as_status_message(error.message),
                remote_start_returned_at=now,
                idempotency_key="",
            )
        announce_status(session)  # another tab may have shown it starting
        raise
    start_returned(session, timezone.now(), status_message=message)
    session.refresh_from_db()
    return session


@transaction.atomic
def _forget_refused(session: ApiSession) -> bool:
    """Delete a session whose start was refused, with its on-behalf audit entry
    (nothing was started, as for a stop that fails); False when a stop came
    meanwhile, whose answer said it would be cancelled."""
    refused = ApiSession.objects.filter(
        pk=session.pk, status=Status.CREATED, stop_requested_at__isnull=True
    )
    if not refused.delete()[0]:
        return False
    AuditEntry.objects.filter(
        action=AuditEntry.Action.API_SESSION_CREATED_ON_BEHALF,
        object_type="api_session",
        object_id=session.pk,
    ).delete()
    return True


def _release_expired_key(caller: User, key: str, now: datetime) -> None:
    """Free `key` of the session `caller` created with it more than
    IDEMPOTENCY_WINDOW before `now`, so that it can name a new one."""
    ApiSession.objects.filter(
        idempotency_caller=caller,
        idempotency_key=key,
        created_at__lt=now - IDEMPOTENCY_WINDOW,
    ).update(idempotency_key="", idempotency_caller=None)


def _replay(caller: User, key: str, request: tuple[Any, ...]) -> ApiSession | None:
    """The session `caller` created with `key`, or None. Raises SessionInvalid when
    that session was asked for with another request (`_request_of`): returning it
    would silently drop the targets or data this one asked for."""
    existing = (
        ApiSession.objects.select_related("transaction")
        .filter(idempotency_caller=caller, idempotency_key=key)
        .first()
    )
    if existing is None:
        return None
    if _request_of(existing) != request:
        raise SessionInvalid(
            "This Idempotency-Key was already used for a different request."
        )
    if existing.is_sending_first_start:
        # Its outcome is not known yet: a refusal would delete the session
        # this retry was given.
        raise SessionConflict(_first_start_unanswered(existing))
    return existing


def _first_start_unanswered(session: ApiSession) -> str:
    """Why a retry must wait: the first request still waits for the station, or
    it stopped before storing the answer, which the sync then settles."""
    sent_at = session.remote_start_sent_at
    assert sent_at is not None
    if timezone.now() <= start_answer_awaited_until(sent_at):
        return (
            "The first request with this Idempotency-Key is still waiting for the "
            "station to answer its start; retry in a few seconds."
        )
    settled_by = lost_start_resent_from(sent_at)
    return (
        "The first request with this Idempotency-Key sent its start at "
        f"{format_timestamp(sent_at)} and stopped before "
        "storing the station's answer; if charging has not started by "
        f"{format_timestamp(settled_by)}, the next sync after it sends the start "
        "again. Retry after that."
    )


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
        "target_time_minutes": target.time_minutes,
        "target_cost": target.cost,
        "target_energy_kwh": target.energy_kwh,
        "target_start_at": target.start_at,
        "target_stop_at": target.stop_at,
        "meta_data": meta_data or {},
    }


def _request_of(session: ApiSession) -> tuple[Any, ...]:
    """What makes two create requests the same request: the fields they set, with
    meta_data's numbers as their decimal text says (`_exact_numbers`)."""
    fields = {name: getattr(session, name) for name in REQUEST_FIELDS}
    fields["meta_data"] = _exact_numbers(fields["meta_data"])
    return tuple(fields.values())


def _exact_numbers(value: Any) -> Any:
    """`value` with its floats as the decimals they are written as. PostgreSQL's
    jsonb keeps a number as that decimal, so a stored 1e23 reads back as the
    integer 10**23, which the float 1e23 is not equal to; a Decimal of it is."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _exact_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact_numbers(item) for item in value]
    return value


def _check_charger(
    user: User, charge_box_id: str, connector_id: int, caller: User
) -> None:
    """Raise unless `user` may charge at the connector: SessionNotFound for one
    that does not exist, or that the caller may not know of; SessionInvalid when
    staff name a customer who may not use a charger they see."""
    at_connector = Charger.objects.filter(
        charge_box_id=charge_box_id, connector_id=connector_id
    )
    if at_connector.usable_by(user).exists():
        return
    if caller.pk != user.pk and at_connector.exists():
        raise SessionInvalid(
            f"{user.get_username()} may not charge at {charge_box_id} connector "
            f"{connector_id}: it is not a public charger, and none of their charger "
            "groups holds it."
        )
    raise SessionNotFound(
        f"There is no charger {charge_box_id} with connector {connector_id}."
    )


def _check_no_reservation_of_someone_else(
    user: User, charge_box_id: str, connector_id: int, now: datetime
) -> None:
    """A scheduled session holds its connector from its create, as a reservation
    does: not while someone else's reservation holds it, whose holder's Start
    would then find the connector taken. (An immediate start is the station's
    to refuse: it holds the reservation.) Raises SessionConflict."""
    reservation = someone_elses_reservation(
        user_id=user.pk,
        charge_box_id=charge_box_id,
        connector_id=connector_id,
        now=now,
    )
    if reservation is not None:
        raise SessionConflict(
            f"{charge_box_id} #{connector_id} is reserved by someone else until "
            f"{format_timestamp(reservation.ends_at)}, and a scheduled session "
            "holds its connector from when it is created: create it after then."
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
    if target.start_at is not None and target.start_at < now - SCHEDULE_PAST_TOLERANCE:
        minutes = SCHEDULE_PAST_TOLERANCE / timedelta(minutes=1)
        raise SessionInvalid(
            f"target.energy_start_time is more than {minutes:g} minutes in the "
            "past: leave it out to start now."
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
    now: datetime,
) -> ApiSession:
    session = ApiSession(
        user=user,
        id_tag=tag_for(
            user,
            charge_box_id,
            connector_id,
            scheduled=target.start_at is not None and target.start_at > now,
        ),
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


def _in_steps(target: SessionTarget) -> SessionTarget:
    """`target` as it is stored and checked: each maximum rounded down to its
    step, since rounded up it would let the session go past what was asked."""

    def floor(value: Decimal | None, step: Decimal) -> Decimal | None:
        return None if value is None else value.quantize(step, rounding=ROUND_DOWN)

    return replace(
        target,
        time_minutes=floor(target.time_minutes, TARGET_STEP["time"]),
        cost=floor(target.cost, TARGET_STEP["cost"]),
        energy_kwh=floor(target.energy_kwh, TARGET_STEP["energy"]),
    )


def _insert(session: ApiSession) -> ApiSession | None:
    """Save the new session; returns the earlier session instead when a concurrent
    request with the same Idempotency-Key got there first."""
    try:
        with transaction.atomic():
            session.save()
    except IntegrityError:
        if session.idempotency_key:
            assert session.idempotency_caller is not None
            replay = _replay(
                session.idempotency_caller,
                session.idempotency_key,
                _request_of(session),
            )
            if replay is not None:
                return replay
        raise SessionConflict(_connector_busy(session)) from None
    return None


def _connector_busy(session: ApiSession) -> str:
    """Why `session` cannot take its connector; naming the open session there
    when it is the same user's (a retry without an Idempotency-Key, a second
    app), which the caller may follow or stop."""
    holder = (
        ApiSession.objects.open()
        .at_connector(session.charge_box_id, session.connector_id)
        .first()
    )
    if holder is not None and holder.user_id == session.user_id:
        return (
            f"This connector already has session {holder.pk} of the same user "
            f"({holder.status}): GET /api/v1/sessions/{holder.pk} follows it, and "
            f"POST /api/v1/sessions/{holder.pk}/stop stops it."
        )
    return (
        "This connector already has a session, charging, starting or "
        "scheduled; stop it or wait until it ends."
    )
