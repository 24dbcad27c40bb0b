"""SteVe's database and the repository logic SteVe runs over it.

Each method names the SteVe class it mirrors, so a reviewer can check the
stand-in against SteVe itself. Not thread-safe: ``Fleet`` holds the lock.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sync.standin.records import (
    ChargeBoxRecord,
    EvseKey,
    FailedStop,
    MeterValue,
    NotFound,
    Reading,
    Reservation,
    StopEvent,
    TagQuery,
    TagRecord,
    TagRow,
    TransactionDetails,
    TransactionQuery,
    TransactionRecord,
    TransactionRow,
)
from sync.standin.timestamps import format_timestamp

# StopTransaction validation since 3.12 (CentralSystemService16_ServiceValidator).
_MAX_STOP_IN_FUTURE = timedelta(minutes=5)
_LAST_N_DAYS = {"LAST_10": 10, "LAST_30": 30, "LAST_90": 90}


def tag_key(id_tag: str) -> str:
    """How SteVe's database compares idTags: its documented set-up is
    ``CHARACTER SET utf8 COLLATE utf8_unicode_ci``, so ``tag-0001`` is the
    ``ocpp_tag`` row ``TAG-0001`` (its pk, user and limits) in every lookup and
    filter, while a transaction keeps the spelling its station sent. idTags are
    ASCII (CONTRACT §4), where that collation is upper case."""
    return id_tag.upper()


class FleetStore:
    """The tables of CONTRACT §9 that the REST API reads, plus their queries."""

    def __init__(self, *, first_transaction_pk: int = 1) -> None:
        self.charge_boxes: dict[str, ChargeBoxRecord] = {}
        # By tag_key: one row per card in any letter case, as SteVe's unique key.
        self.tags: dict[str, TagRecord] = {}
        self.transactions: dict[int, TransactionRecord] = {}
        # An index of ``transactions`` by EVSE (SteVe's ``evse_pk`` index), so
        # per-transaction reads do not scan every transaction.
        self._evse_transactions: defaultdict[EvseKey, list[TransactionRecord]] = (
            defaultdict(list)
        )
        self.meter_values: defaultdict[EvseKey, list[MeterValue]] = defaultdict(list)
        self.reservations: dict[int, Reservation] = {}
        self.failed_stops: list[FailedStop] = []
        # AUTO_INCREMENT columns: pks are never reused, even after a delete.
        self._transaction_pks = itertools.count(first_transaction_pk)
        self._reservation_pks = itertools.count(1)

    # -- writes by the OCPP server side ---------------------------------------------

    def add_charge_box(
        self, charge_box_id: str, last_heartbeat: datetime | None
    ) -> None:
        """Register a charge box; pks follow insertion order."""
        pk = len(self.charge_boxes) + 1
        self.charge_boxes[charge_box_id] = ChargeBoxRecord(
            pk, charge_box_id, last_heartbeat
        )

    def add_tag(
        self,
        id_tag: str,
        *,
        user_pk: int | None = None,
        parent_id_tag: str | None = None,
        expiry_date: datetime | None = None,
        max_active_transaction_count: int = 1,
        note: str | None = None,
    ) -> TagRecord:
        """Insert an ``ocpp_tag`` row (and its ``user_ocpp_tag`` link)."""
        tag = TagRecord(
            pk=len(self.tags) + 1,
            id_tag=id_tag,
            user_pk=user_pk,
            parent_id_tag=parent_id_tag,
            expiry_date=expiry_date,
            max_active_transaction_count=max_active_transaction_count,
            note=note,
        )
        self.tags[tag_key(id_tag)] = tag
        return tag

    def record_start(
        self,
        *,
        evse: EvseKey,
        id_tag: str,
        start_timestamp: datetime,
        start_value: int,
        event_timestamp: datetime,
    ) -> TransactionRecord:
        """Store a StartTransaction like ``OcppServerRepositoryImpl#insertTransaction``.

        It is always recorded, whatever the authorization said; an unknown idTag is
        inserted blocked with SteVe's note; a duplicate (same EVSE, tag, start time
        and value) returns the existing row (CONTRACT §11).
        """
        for existing in self._evse_transactions[evse]:
            if (tag_key(existing.id_tag), existing.start_timestamp) == (
                tag_key(id_tag),
                start_timestamp,
            ) and existing.start_value == str(start_value):
                return existing
        if tag_key(id_tag) not in self.tags:
            note = (
                "This unknown idTag was used in a transaction that started @ "
                f"{format_timestamp(start_timestamp)}. "
                f"It was reported @ {format_timestamp(event_timestamp)}."
            )
            self.add_tag(id_tag, max_active_transaction_count=0, note=note)
        record = TransactionRecord(
            pk=next(self._transaction_pks),
            evse=evse,
            id_tag=id_tag,
            start_timestamp=start_timestamp,
            start_value=str(start_value),
            start_event_timestamp=event_timestamp,
        )
        self.transactions[record.pk] = record
        self._evse_transactions[evse].append(record)
        return record

    def record_readings(
        self, evse: EvseKey, transaction_pk: int | None, readings: Iterable[Reading]
    ) -> None:
        """Append readings to ``connector_meter_value`` for ``evse``."""
        self.meter_values[evse].extend(
            MeterValue(evse, transaction_pk, reading) for reading in readings
        )

    def record_station_stop(
        self,
        *,
        transaction_pk: int,
        charge_box_id: str,
        stop_timestamp: datetime,
        stop_value: int,
        stop_reason: str | None,
        event_timestamp: datetime,
    ) -> str | None:
        """Apply a StopTransaction with SteVe's ≥3.12 validation (CONTRACT §11).

        A refused stop is written to ``transaction_stop_failed`` and the
        transaction stays active. A station stop after a manual stop is accepted
        and replaces it.

        Returns:
            None when the stop was stored, else the reason it was refused.
        """
        failure = self._stop_failure(
            transaction_pk, stop_timestamp, stop_value, event_timestamp
        )
        if failure is not None:
            self.failed_stops.append(
                FailedStop(
                    transaction_pk=transaction_pk,
                    charge_box_id=charge_box_id,
                    event_timestamp=event_timestamp,
                    stop_timestamp=stop_timestamp,
                    stop_value=str(stop_value),
                    stop_reason=stop_reason,
                    fail_reason=failure,
                )
            )
            return failure
        self.transactions[transaction_pk].stop = StopEvent(
            actor="station",
            event_timestamp=event_timestamp,
            stop_timestamp=stop_timestamp,
            stop_value=str(stop_value),
            stop_reason=stop_reason,
        )
        return None

    def _stop_failure(
        self, pk: int, stop_timestamp: datetime, stop_value: int, now: datetime
    ) -> str | None:
        record = self.transactions.get(pk)
        if record is None:
            return f"There is no transaction with id '{pk}'"
        if record.stop is not None and record.stop.actor == "station":
            # The "already stopped" check only looks at station stops (§11).
            return "The transaction is already stopped by the station"
        if stop_value < int(record.start_value):
            return "meterStop is less than meterStart"
        if stop_timestamp < record.start_timestamp:
            return "The stop timestamp is before the start timestamp"
        if stop_timestamp > now + _MAX_STOP_IN_FUTURE:
            return "The stop timestamp is more than 5 minutes in the future"
        return None

    def delete_transaction(self, pk: int) -> bool:
        """Remove a transaction and its readings, as SteVe's FK cascade does when
        its tag or charge box is deleted (CONTRACT §11). Returns whether it existed."""
        record = self.transactions.pop(pk, None)
        if record is None:
            return False
        self._evse_transactions[record.evse].remove(record)
        rows = self.meter_values[record.evse]
        rows[:] = [row for row in rows if row.transaction_pk != pk]
        return True

    # -- REST API reads ---------------------------------------------------------------

    def transaction_rows(
        self, query: TransactionQuery, now: datetime
    ) -> list[TransactionRow]:
        """``TransactionRepositoryImpl#getTransactions``: every match, pk DESC."""
        # Narrow by primary key and by state first, as the database's indexes
        # would; ``_matches`` still applies every condition.
        records: Iterable[TransactionRecord] = (
            [
                self.transactions[pk]
                for pk in set(query.transaction_pks)
                if pk in self.transactions
            ]
            if query.transaction_pks
            else self.transactions.values()
        )
        if query.type == "ACTIVE":
            records = [record for record in records if record.is_active]
        rows = (self._row(record) for record in records)
        tags = {tag_key(tag) for tag in query.id_tags}
        matches = [row for row in rows if _matches(query, tags, row, now)]
        return sorted(matches, key=lambda row: row.pk, reverse=True)

    def details(self, pk: int, *, energy_values_only: bool) -> TransactionDetails:
        """``TransactionRepositoryImpl#getDetails`` (CONTRACT §5).

        Readings filed under this transaction, plus readings without a
        transaction on the same EVSE inside its time window. An active
        transaction's window ends where the next transaction on that EVSE
        started (the zombie rule, SteVe issue #97).

        Raises:
            NotFound: no transaction has this pk.
        """
        record = self.transaction(pk)
        window_end = record.stop.stop_timestamp if record.stop else None
        following = self.next_transaction(record)
        rows = [
            row.reading
            for row in self.meter_values.get(record.evse, [])
            if row.transaction_pk == pk
            or (
                row.transaction_pk is None
                and _in_window(
                    row.reading.value_timestamp, record, window_end, following
                )
            )
        ]
        if energy_values_only:
            rows = [reading for reading in rows if reading.is_energy_value()]
        # A stable sort keeps same-timestamp rows in arrival order; SteVe leaves
        # their order undefined.
        rows.sort(key=lambda reading: reading.value_timestamp)
        return TransactionDetails(self._row(record), tuple(rows))

    def next_transaction(self, record: TransactionRecord) -> TransactionRecord | None:
        """The transaction that started next on the same EVSE, if any."""
        later = [
            other
            for other in self._evse_transactions[record.evse]
            if other.start_timestamp > record.start_timestamp
        ]
        return min(later, key=lambda other: other.start_timestamp, default=None)

    def manual_stop(self, pk: int, now: datetime) -> None:
        """``TransactionService.stop``: database bookkeeping only (CONTRACT §6).

        Already stopped transactions are left alone. Otherwise the stop values
        come from, in order: the last energy reading of the first or a later
        rising streak that is ≥ startValue; the next transaction on the same
        EVSE; the start values (zero energy, zero duration).

        Raises:
            NotFound: no transaction has this pk.
        """
        details = self.details(pk, energy_values_only=True)
        record = self.transactions[pk]
        if record.stop is not None:
            return  # already stopped, by anyone: the manual stop is idempotent
        stop_value, stop_timestamp = self._manual_stop_values(record, details.values)
        record.stop = StopEvent(
            actor="manual",
            event_timestamp=now,
            stop_timestamp=stop_timestamp,
            stop_value=stop_value,
            stop_reason=None,
        )

    def _manual_stop_values(
        self, record: TransactionRecord, readings: tuple[Reading, ...]
    ) -> tuple[str, datetime]:
        last = _last_reading_of_monotonic_streak(readings, float(record.start_value))
        if last is not None:
            return str(math.ceil(last.wh())), last.value_timestamp
        following = self.next_transaction(record)
        if following is None:
            return record.start_value, record.start_timestamp
        # Stations that never reset their register: the next start is this stop.
        if int(following.start_value) > int(record.start_value):
            return following.start_value, following.start_timestamp
        return record.start_value, following.start_timestamp

    def tag_rows(self, query: TagQuery, now: datetime) -> list[TagRow]:
        """``OcppTagRepositoryImpl#getOverview``; SteVe sets no ORDER BY, this
        returns insertion order."""
        active = self.active_counts()
        rows = [
            TagRow(
                tag=tag,
                parent_ocpp_tag_pk=self._parent_pk(tag),
                active_transaction_count=active.get(tag_key(tag.id_tag), 0),
            )
            for tag in self.tags.values()
        ]
        return [row for row in rows if _tag_matches(query, row, now)]

    def active_counts(self) -> dict[str, int]:
        """Number of active transactions per idTag, by tag_key
        (``ocpp_tag_activity``)."""
        counts: dict[str, int] = defaultdict(int)
        for record in self.transactions.values():
            if record.is_active:
                counts[tag_key(record.id_tag)] += 1
        return counts

    def active_transaction_pks(self, charge_box_id: str) -> list[int]:
        """``TransactionRepository#getActiveTransactionIds`` for one charge box."""
        return [
            record.pk
            for record in self.transactions.values()
            if record.is_active and record.evse[0] == charge_box_id
        ]

    def tag_authorizes(self, id_tag: str, now: datetime, *, check_limit: bool) -> bool:
        """``AuthTagServiceLocal``: the tag exists, is not blocked or expired and,
        when ``check_limit``, is under its active-transaction limit (§7)."""
        tag = self.tags.get(tag_key(id_tag))
        if tag is None or tag.blocked or tag.is_expired(now):
            return False
        limit = tag.max_active_transaction_count
        return (
            not check_limit
            or limit < 0
            or self.active_counts().get(tag_key(id_tag), 0) < limit
        )

    def new_reservation_pk(self) -> int:
        """Next ``reservation_pk`` (AUTO_INCREMENT, never reused)."""
        return next(self._reservation_pks)

    def transaction(self, pk: int) -> TransactionRecord:
        """Return the transaction ``pk``. Raises ``NotFound``."""
        record = self.transactions.get(pk)
        if record is None:
            raise NotFound(f"There is no transaction with id '{pk}'")
        return record

    def _row(self, record: TransactionRecord) -> TransactionRow:
        tag = self.tags[tag_key(record.id_tag)]
        charge_box_id, connector_id = record.evse
        return TransactionRow(
            pk=record.pk,
            charge_box_id=charge_box_id,
            charge_box_pk=self.charge_boxes[charge_box_id].pk,
            connector_id=connector_id,
            id_tag=record.id_tag,
            ocpp_tag_pk=tag.pk,
            user_id=tag.user_pk,
            start_timestamp=record.start_timestamp,
            start_value=record.start_value,
            stop=record.stop,
        )

    def _parent_pk(self, tag: TagRecord) -> int | None:
        parent = self.tags.get(tag_key(tag.parent_id_tag or ""))
        return parent.pk if parent else None


def _in_window(
    moment: datetime,
    record: TransactionRecord,
    window_end: datetime | None,
    following: TransactionRecord | None,
) -> bool:
    if window_end is not None:
        return record.start_timestamp <= moment <= window_end
    if following is not None and moment >= following.start_timestamp:
        return False
    return moment >= record.start_timestamp


def _last_reading_of_monotonic_streak(
    readings: Iterable[Reading], start_wh: float
) -> Reading | None:
    """``TransactionService#findLastMeterValueFromMonotonicStreak``.

    After any decrease, the first reading of the new rising run is ignored.
    """
    last: Reading | None = None
    previous_wh: float | None = None
    streak = 0
    first_streak = True
    for reading in readings:
        wh = reading.wh()
        if previous_wh is not None and wh < previous_wh:
            first_streak = False
            streak = 1
        else:
            streak += 1
        if wh >= start_wh and (first_streak or streak > 1):
            last = reading
        previous_wh = wh
    return last


def _matches(
    query: TransactionQuery, tags: set[str], row: TransactionRow, now: datetime
) -> bool:
    """The WHERE clause of ``TransactionRepositoryImpl#getConditions`` (§4);
    `tags` are the query's idTags by tag_key."""
    checks = (
        not query.transaction_pks or row.pk in query.transaction_pks,
        query.connector_id is None or row.connector_id == query.connector_id,
        not query.charge_box_ids or row.charge_box_id in query.charge_box_ids,
        not tags or tag_key(row.id_tag) in tags,
        not query.user_ids or row.user_id in query.user_ids,
        query.type != "ACTIVE" or row.stop is None,
        query.type != "STOPPED" or row.stop is not None,
    )
    return all(checks) and _in_period(query, row.start_timestamp, now)


def _in_period(query: TransactionQuery, start: datetime, now: datetime) -> bool:
    """``CustomDSL.getTimeCondition``: on the start time only, UTC calendar dates."""
    if query.period_type == "TODAY":
        return start.date() == now.date()
    if query.period_type in _LAST_N_DAYS:
        first_day = (now - timedelta(days=_LAST_N_DAYS[query.period_type])).date()
        return first_day <= start.date() <= now.date()
    if query.period_type == "FROM_TO":
        # Binding guarantees both bounds for FROM_TO; BETWEEN is inclusive.
        low, high = query.start_from, query.start_to
        return low is not None and high is not None and low <= start <= high
    return True


def _tag_matches(query: TagQuery, row: TagRow, now: datetime) -> bool:
    """The WHERE clause of ``OcppTagRepositoryImpl#getOverview`` (§8)."""
    tag = row.tag
    checks = (
        query.ocpp_tag_pk is None or tag.pk == query.ocpp_tag_pk,
        query.id_tag is None or tag_key(tag.id_tag) == tag_key(query.id_tag),
        query.parent_id_tag is None
        or tag_key(tag.parent_id_tag or "") == tag_key(query.parent_id_tag),
        query.user_id is None or tag.user_pk == query.user_id,
        _tri_state(query.expired, tag.is_expired(now)),
        _tri_state(query.in_transaction, row.active_transaction_count > 0),
        _tri_state(query.blocked, tag.blocked),
        query.note is None or _note_matches(query.note, tag.note),
        query.user_filter != "OnlyTagsWithUser" or tag.user_pk is not None,
        query.user_filter != "OnlyTagsWithoutUser" or tag.user_pk is None,
    )
    return all(checks)


def _tri_state(wanted: str, actual: bool) -> bool:
    return wanted == "ALL" or (wanted == "TRUE") == actual


def _note_matches(pattern: str, note: str | None) -> bool:
    """SQL ``note LIKE %pattern%`` where whitespace acts as ``%``; MySQL's default
    collation makes it case-insensitive."""
    regex = ".*".join(re.escape(part) for part in pattern.split())
    return note is not None and re.search(regex, note, re.IGNORECASE) is not None
