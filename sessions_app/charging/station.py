"""Talking to the station: RemoteStart and RemoteStop through SteVe, their answers
turned into the Sessions API's errors."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from sessions_app.charging.errors import (
    ApiSessionError,
    SessionConflict,
    SessionInvalid,
    StartUnconfirmed,
    StationError,
    StopUnconfirmed,
)
from sessions_app.charging.holders import held_by_someone_else
from sessions_app.models import ApiSession
from sync.client import (
    OperationResult,
    SteveClient,
    SteveError,
    SteveMisconfigured,
    SteveRejected,
    SteveUnanswered,
    format_timestamp,
)
from sync.models import TransactionSyncState

logger = logging.getLogger(__name__)

TRY_AGAIN = "try again in a few minutes, and contact support if it keeps happening."


def hand_back_connection() -> None:
    """Return this thread's database connection (to the pool) before a wait on
    the station, which can last SteVe's 30 s timeout: ten such waits would
    otherwise hold every pooled connection of a process while doing nothing. The
    next query takes one again. Inside a transaction (a caller's, a test's) the
    connection is kept, as the transaction lives on it."""
    if not connection.in_atomic_block:
        connection.close()


def remote_start(session: ApiSession, client: SteveClient) -> None:
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
        raise _start_unconfirmed(_answer_lost(session, error)) from None
    except SteveError as error:
        raise _not_sent(session, "start", error, "nothing was started") from None
    _check_answer(
        result,
        session,
        refused=lambda: _start_refused(session),
        unconfirmed=_start_unconfirmed,
    )


def _start_refused(session: ApiSession) -> str:
    """Why the station refused the start, as far as Polaris saw it: OCPP's
    Rejected gives no reason."""
    holder = held_by_someone_else(
        user_id=session.user_id,
        charge_box_id=session.charge_box_id,
        connector_id=session.connector_id,
        now=timezone.now(),
    )
    refused = "The charge station refused to start charging"
    place = f"{session.charge_box_id} #{session.connector_id}"
    if holder is None:
        return f"{refused}: the connector may be in use, reserved or not ready."
    return f"{refused}: {holder.clause(place, format_timestamp)}."


def _start_unconfirmed(why: str) -> StartUnconfirmed:
    timeout = settings.API_SESSION_START_TIMEOUT_SECONDS
    return StartUnconfirmed(
        f"The start was sent but {why}; the session is cancelled if charging does "
        f"not start within {timeout} seconds."
    )


def _start_refusal(session: ApiSession, error: SteveRejected) -> ApiSessionError:
    if error.no_station_connected:
        return SessionConflict(
            "The charge station is offline; try again when it is back online."
        )
    if error.tag_not_eligible:
        # SteVe says the same of a tag it does not know: a new card that staff
        # mapped in Polaris but did not register in SteVe.
        return SessionInvalid(
            "This account's charging tag cannot start a charge: the charging "
            "network does not know it yet, or it is blocked, expired or already "
            "charging. Ask your operator to check the card."
        )
    return _unexplained_refusal(session, "start", error)


def _unexplained_refusal(
    session: ApiSession, operation: str, error: SteveRejected
) -> StationError:
    """A refusal none of the known cases explains. SteVe's own words name its
    internals: the caller gets ours, the operators the original in the log."""
    logger.warning(
        "api_session=%s SteVe refused the %s: %s", session.pk, operation, error.message
    )
    return StationError(
        f"The charging network refused to {operation} this charge; {TRY_AGAIN}"
    )


CHARGING_PAST_MANUAL_STOP = (
    "An operator closed this charge in the charging network, which told the "
    "station nothing, so it can no longer be stopped remotely: stop it at the "
    "station. The session ends when the station reports its stop, or its readings "
    "stop."
)


def remote_stop(
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
        if error.transaction_not_active:
            raise SessionConflict(
                "The station has already stopped this charge; the session ends "
                "at the next sync."
            ) from None
        if error.no_station_connected:
            raise SessionConflict(
                "The charge station is offline, so it cannot be stopped remotely."
            ) from None
        raise _unexplained_refusal(session, "stop", error) from None
    except SteveUnanswered as error:
        raise _stop_unconfirmed(_answer_lost(session, error)) from None
    except SteveError as error:
        raise _not_sent(session, "stop", error, "charging goes on") from None
    _check_answer(
        result,
        session,
        refused=lambda: "The charge station refused to stop.",
        unconfirmed=_stop_unconfirmed,
    )


def _stop_unconfirmed(why: str) -> StopUnconfirmed:
    return StopUnconfirmed(
        f"The stop was sent but {why}; the session ends when the station reports "
        "the stop, and the stop is sent again if charging goes on."
    )


def _answer_lost(session: ApiSession, error: SteveUnanswered) -> str:
    logger.warning("api_session=%s answer lost: %s", session.pk, error.message)
    return "the charging network's answer was lost"


def _not_sent(
    session: ApiSession, operation: str, error: SteveError, outcome: str
) -> StationError:
    """Drivers and integrators get a sentence without SteVe's internals (an HTTP
    status, our credentials); the operators get the cause in the log."""
    logger.warning(
        "api_session=%s %s not sent: %s", session.pk, operation, error.operator_message
    )
    return StationError(not_sent(operation, error, outcome))


def not_sent(what: str, error: SteveError, outcome: str = "") -> str:
    """The sentence for a request SteVe never took: `what` was not sent, so
    `outcome` (when said), and what to do. Trying again helps when SteVe is down,
    not when Polaris's settings for it are wrong."""
    so = f", so {outcome}" if outcome else ""
    if isinstance(error, SteveMisconfigured):
        return (
            f"The {what} could not be sent: Polaris's connection to the charging "
            f"network needs fixing by its operators{so}. Please contact support; "
            "trying again will not help until it is fixed."
        )
    return (
        f"The {what} could not be sent: the charging network is not answering "
        f"right now{so}. {TRY_AGAIN.capitalize()}"
    )


def _check_answer(
    result: OperationResult,
    session: ApiSession,
    *,
    refused: Callable[[], str],
    unconfirmed: Callable[[str], StationError],
) -> None:
    """Raise what the station's answer means unless it accepted: `refused` says
    why it refused (asked only then: it may read the database)."""
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
        raise SessionConflict(refused())
    if status == "Timeout":
        # SteVe sent the operation and stopped waiting for the station (CONTRACT
        # §7: taskFinished=false): the station may have acted on it, and its late
        # answer is dropped, so only the sync can tell what happened.
        raise unconfirmed("the station did not answer in time")
    raise StationError("The station could not process the request.")
