"""The three seed tables: SteVe's transactions as synced, the events observed on
them, and the idTag mappings that join both to customers.

They keep their documented names and camelCase columns (`transaction_sync_state`,
`synced_transaction_events`, `user_mappings`).
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Sum
from django.db.models.functions import Upper
from django.utils import timezone

from sync.models.chargers import CHECK_IN_VALID_FOR, Charger
from sync.models.runs import SyncRun

# The longest meter interval stations commonly use (OCPP's MeterValueSampleInterval
# is 60 to 900 s in practice): a station silent for longer has stopped sampling.
METER_INTERVAL_MAX = timedelta(minutes=15)


def manual_stop_grace_start(now: datetime) -> datetime:
    """The oldest manual stop that SteVe may still replace with the station's own
    (CONTRACT: a later StopTransaction brings its own time and meter value): the
    sync re-reads the manual stops it recorded since then, and their energy may
    change.

    The window runs from when Polaris recorded the stop (the session's updatedAt,
    which nothing else moves once it has stopped), not from its stop time: SteVe
    estimates a manual stop's time from the last reading or even the start, so a
    stuck session stopped by hand today can carry a stop time days old."""
    return now - timedelta(hours=settings.SYNC_MANUAL_STOP_GRACE_HOURS)


class TransactionSyncStateQuerySet(models.QuerySet["TransactionSyncState"]):
    def may_still_change(self, now: datetime) -> "TransactionSyncStateQuerySet":
        """Active sessions, and manual stops still in their grace period."""
        return self.filter(
            Q(is_finalized=False)
            | Q(
                stop_event_actor=TransactionSyncState.StopEventActor.MANUAL,
                updated_at__gte=manual_stop_grace_start(now),
            )
        )

    def active(self) -> "TransactionSyncStateQuerySet":
        """Sessions still charging in SteVe (isFinalized false)."""
        return self.filter(is_finalized=False)

    def charging(self) -> "TransactionSyncStateQuerySet":
        """Active sessions that are really charging: not the ones the sync suspects
        are stuck (SteVe never closes a transaction the station forgot; a newer one
        on the connector, or hours without a reading, gives it away)."""
        return self.active().filter(is_suspected_stuck=False)

    def occupying_connector(self, now: datetime) -> "TransactionSyncStateQuerySet":
        """Sessions charging on their connector now: those `charging`, and manual
        stops whose station still sent readings within CHECK_IN_VALID_FOR (SteVe
        was told the session stopped; the station goes on until it stops it)."""
        return self.filter(
            Q(is_finalized=False, is_suspected_stuck=False)
            | Q(
                stop_event_actor=TransactionSyncState.StopEventActor.MANUAL,
                last_reading_after_stop_at__gte=now - CHECK_IN_VALID_FOR,
            )
        )

    def completed(self) -> "TransactionSyncStateQuerySet":
        """Sessions SteVe has stopped (isFinalized true)."""
        return self.filter(is_finalized=True)

    def updated_between(
        self, start: datetime | None, end: datetime | None
    ) -> "TransactionSyncStateQuerySet":
        """Sessions whose updatedAt lies in [start, end]; either end may be open."""
        queryset = self
        if start is not None:
            queryset = queryset.filter(updated_at__gte=start)
        if end is not None:
            queryset = queryset.filter(updated_at__lte=end)
        return queryset

    def with_mapped_tag_containing(
        self, fragment: str
    ) -> "TransactionSyncStateQuerySet":
        """Sessions with a synced event whose idTag is a mapped tag containing
        `fragment`, case-insensitively.

        The join goes through synced_transaction_events and user_mappings as the
        Charging Sessions page documents; the IN subquery keeps each session once.
        """
        mapped_tags = UserMapping.objects.tag_contains(fragment).values(
            "steve_ocpp_id_tag"
        )
        return self.filter(
            id__in=SyncedTransactionEvent.objects.filter(
                ocpp_id_tag__in=mapped_tags
            ).values("transaction_id")
        )

    def of_id_tag(self, tag: str) -> "TransactionSyncStateQuerySet":
        """Sessions of exactly this idTag, in SteVe's letter case (index
        tss_tag_started)."""
        return self.filter(ocpp_id_tag=tag)

    def with_customer(self) -> "TransactionSyncStateQuerySet":
        """Annotate `customer_label`, `customer_email` and `customer_user_id` from the
        user mapping of the session's idTag (None when the tag is unmapped)."""
        return self.annotate(
            customer_label=F("mapping__label"),
            customer_email=F("mapping__user__username"),
            customer_user_id=F("mapping__user_id"),
        )

    def newest_updated_first(self) -> "TransactionSyncStateQuerySet":
        """Ordered by updatedAt descending, ties broken by the SteVe transaction id
        (the keyset order)."""
        return self.order_by("-updated_at", "-steve_transaction_id")

    def after_cursor(
        self, updated_at: datetime, steve_transaction_id: int
    ) -> "TransactionSyncStateQuerySet":
        """Rows after (updated_at, steve_transaction_id) in `newest_updated_first`
        order (keyset pagination)."""
        return self.filter(
            Q(updated_at__lt=updated_at)
            | Q(updated_at=updated_at, steve_transaction_id__lt=steve_transaction_id)
        )


class TransactionSyncState(models.Model):
    """Polaris's copy of one SteVe transaction and the energy it delivered."""

    class StopEventActor(models.TextChoices):
        STATION = "station", "Station"
        MANUAL = "manual", "Manual"

    steve_transaction_id = models.PositiveIntegerField(
        unique=True, db_column="steveTransactionId"
    )
    charge_box_id = models.CharField(max_length=255, db_column="chargeBoxId")
    connector_id = models.PositiveIntegerField(db_column="connectorId")
    charger = models.ForeignKey(
        Charger,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="transactions",
        db_column="chargerId",
    )
    ocpp_id_tag = models.CharField(max_length=255, db_column="ocppIdTag")
    # The user mapping of the idTag, if any: a join on the tag, not a column of its
    # own (a tag may be mapped after its sessions were synced).
    mapping = models.ForeignObject(
        "UserMapping",
        on_delete=models.DO_NOTHING,
        from_fields=["ocpp_id_tag"],
        to_fields=["steve_ocpp_id_tag"],
        related_name="+",
        null=True,
    )
    started_at = models.DateTimeField(db_column="startedAt")
    stopped_at = models.DateTimeField(null=True, blank=True, db_column="stoppedAt")
    meter_start_wh = models.BigIntegerField(db_column="meterStartWh")
    meter_last_wh = models.BigIntegerField(db_column="meterLastWh")
    # A reading below meterLastWh, flagged but not yet counted from: a glitch if the
    # next reading is back at or above meterLastWh, a meter reset if it rises from
    # here. meterLastWh stays the counting baseline until then.
    meter_dip_wh = models.BigIntegerField(null=True, blank=True, db_column="meterDipWh")
    last_reading_at = models.DateTimeField(
        null=True, blank=True, db_column="lastReadingAt"
    )
    kwh_delivered = models.DecimalField(
        max_digits=12, decimal_places=3, default=Decimal("0"), db_column="kwhDelivered"
    )
    is_finalized = models.BooleanField(default=False, db_column="isFinalized")
    # SteVe's transaction_stop.stop_reason is a varchar(255) a station fills.
    stop_reason = models.CharField(max_length=255, blank=True, db_column="stopReason")
    stop_event_actor = models.CharField(
        max_length=16,
        blank=True,
        choices=StopEventActor.choices,
        db_column="stopEventActor",
    )
    is_suspected_stuck = models.BooleanField(
        default=False, db_column="isSuspectedStuck"
    )
    is_stop_estimated = models.BooleanField(default=False, db_column="isStopEstimated")
    # A station SteVe was told had stopped (a manual stop) may go on charging until
    # it sends its own stop: the newest of the readings it sent after the manual
    # stop's time. Only set on a manual stop.
    last_reading_after_stop_at = models.DateTimeField(
        null=True, blank=True, db_column="lastReadingAfterStopAt"
    )
    meter_reset_seen = models.BooleanField(default=False, db_column="meterResetSeen")
    is_deleted_in_steve = models.BooleanField(
        default=False, db_column="isDeletedInSteve"
    )
    last_synced_at = models.DateTimeField(db_column="lastSyncedAt")
    created_at = models.DateTimeField(default=timezone.now, db_column="createdAt")
    updated_at = models.DateTimeField(db_column="updatedAt")

    objects = TransactionSyncStateQuerySet.as_manager()

    class Meta:
        db_table = "transaction_sync_state"
        indexes = [
            models.Index(
                fields=["-updated_at", "-steve_transaction_id"],
                name="tss_updated_keyset",
            ),
            models.Index(
                fields=["-updated_at", "-steve_transaction_id"],
                condition=Q(is_finalized=False),
                name="tss_active_updated_keyset",
            ),
            models.Index(fields=["ocpp_id_tag", "-started_at"], name="tss_tag_started"),
            # A card's sessions in any letter case: a mapping saved finds every
            # spelling SteVe gave its card in (sync.services.mappings).
            models.Index(Upper("ocpp_id_tag"), name="tss_tag_upper"),
            # A customer's live sessions: a few among the ~300 active, found without
            # intersecting their thousands of past sessions.
            models.Index(
                fields=["ocpp_id_tag"],
                condition=Q(is_finalized=False),
                name="tss_active_tag",
            ),
            # A connector's sessions by start: each sync asks, of every open one,
            # whether a newer session began on its connector (flag_suspected_stuck),
            # one index probe instead of reading the connector's whole history
            # (0.3 to 0.4 s a run at a million sessions, against 10 ms).
            models.Index(
                fields=["charge_box_id", "connector_id", "started_at"],
                name="tss_box_conn_started",
            ),
            # Every sync run re-reads the active sessions and the manual stops still
            # in their grace period; with this index beside the active ones that OR
            # is two index scans instead of a scan of every session.
            models.Index(
                fields=["updated_at"],
                condition=Q(stop_event_actor="manual"),
                name="tss_manual_stop_updated",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kwh_delivered__gte=0), name="tss_kwh_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"SteVe transaction {self.steve_transaction_id}"

    @property
    def charger_name(self) -> str:
        """The charger as people name it, or SteVe's chargeBoxId for a station
        Polaris has no charger row for."""
        return self.charger.friendly_name if self.charger else self.charge_box_id

    @property
    def is_stopped_manually(self) -> bool:
        """Stopped by hand in SteVe, which told the station nothing. SteVe lists
        the charge as stopped, so it refuses a remote stop of it, though the
        station may still be charging."""
        return self.stop_event_actor == self.StopEventActor.MANUAL

    def may_charge_past_manual_stop(self, now: datetime) -> bool:
        """Stopped by hand in SteVe, and the station may be charging on: SteVe told
        it nothing. So, while its readings say so: one after the manual stop within
        CHECK_IN_VALID_FOR (as `occupying_connector` counts it) or, with none yet,
        a reading within the longest usual meter interval (SteVe dates a manual
        stop at the last reading, so the next one comes only after it). Until the
        station's own stop replaces the manual one, or its readings stop."""
        if not self.is_stopped_manually:
            return False
        if self.last_reading_after_stop_at is not None:
            return self.is_charging_past_manual_stop(now)
        newest = self.last_reading_at or self.stopped_at or self.started_at
        return newest >= now - METER_INTERVAL_MAX

    def is_charging_past_manual_stop(self, now: datetime) -> bool:
        """Stopped by hand in SteVe, with a reading after the stop within
        CHECK_IN_VALID_FOR: the one session `occupying_connector` counts though
        SteVe finalized it."""
        return (
            self.is_stopped_manually
            and self.last_reading_after_stop_at is not None
            and self.last_reading_after_stop_at >= now - CHECK_IN_VALID_FOR
        )

    def charged_past_manual_stop(self) -> bool:
        """A manual stop the station sent readings after: the sync counts none of
        them (until the station's own stop replaces it), so the station's
        register tells the energy."""
        return self.is_stopped_manually and self.last_reading_after_stop_at is not None

    def charge_ended_at(self) -> datetime:
        """When the charge ended, as far as its readings tell: the stop, or the
        last reading after a manual stop; for one SteVe keeps open (stuck), its
        last reading."""
        if not self.is_finalized or self.stopped_at is None:
            return self.last_reading_at or self.started_at
        if self.charged_past_manual_stop():
            assert self.last_reading_after_stop_at is not None
            return max(self.stopped_at, self.last_reading_after_stop_at)
        return self.stopped_at

    def is_settled(self, now: datetime) -> bool:
        """Stopped for good: finalized, and not a manual stop that the station's
        own stop may still replace. What the portal marks "Finalized" (the seed's
        "complete and billed")."""
        if not self.is_finalized:
            return False
        return not (
            self.stop_event_actor == self.StopEventActor.MANUAL
            and self.updated_at >= manual_stop_grace_start(now)
        )


class SyncedTransactionEventQuerySet(models.QuerySet["SyncedTransactionEvent"]):
    def kwh_until(self, transaction_id: int, moment: datetime) -> Decimal:
        """The kWh the sync counted for this transaction_sync_state row from
        readings taken up to `moment`."""
        total = self.filter(
            transaction_id=transaction_id, reading_at__lte=moment
        ).aggregate(kwh=Sum("kwh_delta"))["kwh"]
        return total or Decimal("0.000")

    def corrections_of(
        self, transaction_ids: list[int]
    ) -> "SyncedTransactionEventQuerySet":
        """The `corrected` events of these transaction_sync_state rows (read by
        the unique key ste_unique_observation, which starts with both)."""
        return self.filter(
            transaction_id__in=transaction_ids,
            event_type=SyncedTransactionEvent.EventType.CORRECTED,
        )


class SyncedTransactionEvent(models.Model):
    """One observed change of a transaction; append-only."""

    class EventType(models.TextChoices):
        STARTED = "started", "Started"
        PROGRESS = "progress", "Meter progress"
        STOPPED = "stopped", "Stopped"
        CORRECTED = "corrected", "Corrected"

    # No index of its own: ste_unique_observation starts with transactionId.
    transaction = models.ForeignKey(
        TransactionSyncState,
        on_delete=models.CASCADE,
        related_name="events",
        db_column="transactionId",
        db_index=False,
    )
    sync_run = models.ForeignKey(
        SyncRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        db_column="syncRunId",
    )
    event_type = models.CharField(
        max_length=16, choices=EventType.choices, db_column="eventType"
    )
    meter_wh = models.BigIntegerField(db_column="meterWh")
    reading_at = models.DateTimeField(db_column="readingAt")
    kwh_delta = models.DecimalField(
        max_digits=12, decimal_places=3, db_column="kwhDelta"
    )
    ocpp_id_tag = models.CharField(max_length=255, db_column="ocppIdTag")
    synced_at = models.DateTimeField(default=timezone.now, db_column="syncedAt")

    objects = SyncedTransactionEventQuerySet.as_manager()

    class Meta:
        db_table = "synced_transaction_events"
        ordering = ["reading_at", "id"]
        constraints = [
            # The same observation can never be stored twice, whatever re-runs happen.
            models.UniqueConstraint(
                fields=["transaction", "event_type", "reading_at", "meter_wh"],
                name="ste_unique_observation",
            ),
            models.CheckConstraint(
                condition=Q(kwh_delta__gte=0), name="ste_kwh_delta_not_negative"
            ),
        ]
        # Readings by time and by tag are indexed in migration 0003 (covering
        # kwhDelta); every index here is rebuilt over ten million rows by a seed.

    def __str__(self) -> str:
        return (
            f"{self.event_type} {self.kwh_delta} kWh @ {self.reading_at:%Y-%m-%d %H:%M}"
        )


class UserMappingQuerySet(models.QuerySet["UserMapping"]):
    def active(self) -> "UserMappingQuerySet":
        """Mappings currently in force."""
        return self.filter(is_active=True)

    def tag_contains(self, fragment: str) -> "UserMappingQuerySet":
        """Mappings whose idTag contains `fragment`, case-insensitively."""
        return self.filter(steve_ocpp_id_tag__icontains=fragment)

    def in_order_to_charge_with(self) -> "UserMappingQuerySet":
        """Ordered as a start or a reservation tries a customer's cards: those
        without an active session first (SteVe lets most tags run one transaction
        at a time), then those that have charged before (SteVe knows them, while
        a card just mapped or imported may not be registered there yet), then by
        idTag."""
        sessions = TransactionSyncState.objects.filter(
            ocpp_id_tag=OuterRef("steve_ocpp_id_tag")
        )
        return self.annotate(
            is_charging=Exists(sessions.active()), has_charged=Exists(sessions)
        ).order_by("is_charging", "-has_charged", "steve_ocpp_id_tag")


class UserMapping(models.Model):
    """Links a SteVe OCPP idTag to a portal user; a user may have several tags."""

    steve_ocpp_id_tag = models.CharField(
        max_length=255, unique=True, db_column="steveOcppIdTag"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="user_mappings",
        db_column="userId",
    )
    label = models.CharField(max_length=120, blank=True)
    billing_customer_id = models.CharField(
        max_length=64, blank=True, db_column="billingCustomerId"
    )
    is_active = models.BooleanField(default=True, db_column="isActive")
    created_at = models.DateTimeField(auto_now_add=True, db_column="createdAt")
    updated_at = models.DateTimeField(auto_now=True, db_column="updatedAt")

    objects = UserMappingQuerySet.as_manager()

    class Meta:
        db_table = "user_mappings"
        ordering = ["steve_ocpp_id_tag"]
        constraints = [
            # OCPP idTags compare case-insensitively: TAG-0005 and tag-0005 are
            # one card, which two mappings would split between two customers.
            # validate_tag_is_free says so in words; this holds when two saves
            # pass that check at once.
            models.UniqueConstraint(
                Upper("steve_ocpp_id_tag"),
                name="um_tag_upper_unique",
                violation_error_message="This idTag is already mapped in "
                "another letter case.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.steve_ocpp_id_tag} → {self.user}"
