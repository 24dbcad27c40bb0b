"""Matching an API session to its SteVe transaction: which synced transaction a
remote start began, and whether a sync has read SteVe since a given moment.

SteVe never names the transaction a remote start began, so the session services
(`sessions_app.charging`) recognise it from what the sync stored.
"""

from datetime import datetime, timedelta

from django.db.models import Q

from sessions_app.models import ApiSession
from sync.models import SyncRun, TransactionSyncState

# A station whose clock follows SteVe's (BootNotification and Heartbeat answers
# carry its time) is off from ours by seconds. The margin lets a transaction stamped
# just before our remote start still be the one it started, without reaching back
# to a charge the driver made just before asking. Stations whose clocks are off by
# more are matched by SteVe's insert order (`api_session_matching_transaction`).
CLOCK_SKEW = timedelta(seconds=10)
# How far behind a station's clock may stamp the charge a remote start began and
# still have it matched by SteVe's insert order: minutes, not the hours back of a
# station uploading an old charge once it is online again.
CLOCK_BEHIND_AT_MOST = timedelta(minutes=15)


def api_session_matching_transaction(
    *, session: ApiSession, start_deadline: datetime
) -> TransactionSyncState | None:
    """The synced transaction this session's remote start began, or None.

    SteVe never names the transaction a remote start began (CONTRACT §7), so it is
    recognised: on the session's connector, with the idTag the remote start sent
    (OCPP idTags compare case-insensitively), claimed by no other session, not
    already stopped when the remote start was sent, and first stored by a sync after
    it was sent: a charge the driver made by card just before cannot be the one
    asked for, even when the sync has not seen its stop yet (both times are ours, so
    no clock skew enters that test).

    Its start, by the station's clock, must be no later than `start_deadline` (plus
    CLOCK_SKEW), unless a sync stored it by then and it still charges (a station
    clock running ahead, whose stamps say nothing against ours: a card charge
    that ended before the remote start was sent, stored after it, is stopped),
    and no earlier than the remote start (minus CLOCK_SKEW), or, when
    none is, earlier (by CLOCK_BEHIND_AT_MOST at most) but inserted by SteVe
    after the highest transaction Polaris had stored when the start was sent.
    Station clocks are often minutes behind (CONTRACT §11) and stamp a charge we
    caused before we asked for it; SteVe's pks follow its own insert order,
    whatever the station's clock says. A charge
    already running on that connector with that tag when the start was sent cannot
    pass for it: SteVe refuses a remote start for a tag that is charging, and the
    station one for an occupied connector.

    Of several in the window, the first one started after the remote start is the
    one it caused, failing that the latest before it; of several stamped earlier,
    the first SteVe inserted.
    """
    sent_at = session.remote_start_sent_at
    assert sent_at is not None
    candidates = list(
        TransactionSyncState.objects.filter(
            Q(started_at__lte=start_deadline + CLOCK_SKEW)
            | Q(created_at__lte=start_deadline, stopped_at__isnull=True),
            charge_box_id=session.charge_box_id,
            connector_id=session.connector_id,
            ocpp_id_tag__iexact=session.id_tag,
            api_sessions__isnull=True,
            created_at__gt=sent_at,
        )
        .exclude(stopped_at__lt=sent_at)
        .order_by("steve_transaction_id")
    )
    in_window = [tx for tx in candidates if tx.started_at >= sent_at - CLOCK_SKEW]
    if in_window:
        return min(
            in_window,
            key=lambda tx: (tx.started_at < sent_at, abs(tx.started_at - sent_at)),
        )
    if not candidates:
        return None
    known = _highest_pk_stored_by(sent_at)
    return next(
        (
            tx
            for tx in candidates
            if tx.steve_transaction_id > known
            and tx.started_at >= sent_at - CLOCK_BEHIND_AT_MOST
        ),
        None,
    )


def _highest_pk_stored_by(moment: datetime) -> int:
    """The highest SteVe pk Polaris had stored at `moment` (0 for none)."""
    # Walks the unique pk index from the top: only the rows stored since `moment`
    # are skipped, a handful.
    highest = (
        TransactionSyncState.objects.filter(created_at__lte=moment)
        .order_by("-steve_transaction_id")
        .values_list("steve_transaction_id", flat=True)
        .first()
    )
    return highest or 0


def transactions_synced_since(moment: datetime) -> bool:
    """Whether a transactions sync that began at or after `moment` has finished
    having read SteVe: it stored every transaction SteVe had reported by `moment`.

    A partial run counts when it stored every transaction it left unread (a new
    one whose meter values SteVe could not serve is stored from its list row): it
    read SteVe's whole list, and missed only transactions that vanished from SteVe
    during the run. One the database refused to store might be the one awaited.
    A failed run does not count: SteVe did not answer, so it proves nothing.
    """
    runs = SyncRun.objects.filter(
        kind=SyncRun.Kind.TRANSACTIONS,
        status__in=SyncRun.READ_STATUSES,
        started_at__gte=moment,
    ).values_list("unread_transaction_ids", flat=True)
    unread = list(runs)
    if any(not pks for pks in unread):
        return True
    left_unread = {pk for pks in unread for pk in pks}
    stored = set(
        TransactionSyncState.objects.filter(
            steve_transaction_id__in=left_unread
        ).values_list("steve_transaction_id", flat=True)
    )
    return any(set(pks) <= stored for pks in unread)
