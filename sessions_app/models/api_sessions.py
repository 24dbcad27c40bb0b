"""API sessions: a remote charge an integrator started, followed to its end."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from sessions_app.models.rates import Rate
from sync.models.transactions import manual_stop_grace_start


def _whole_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def operation_answer_window() -> timedelta:
    """How long a remote start or stop can wait for its outcome: SteVe waits for
    the station up to STEVE_OPERATION_TIMEOUT, and a few seconds cover the trip
    to SteVe and back."""
    return timedelta(seconds=settings.STEVE_OPERATION_TIMEOUT + 5)


STATUS_MESSAGE_MAX_LENGTH = 255


def as_status_message(text: str) -> str:
    """`text` cut to what status_message holds: our sentences fit, a refusal
    quoting SteVe's words may not."""
    return text[:STATUS_MESSAGE_MAX_LENGTH]


class ApiSessionQuerySet(models.QuerySet["ApiSession"]):
    def visible_to(self, user: User) -> "ApiSessionQuerySet":
        """Every session for staff; a customer's own sessions otherwise.

        What a caller may read, not change: starting or stopping another user's
        session also takes `ApiSession.MANAGE_ANY_PERMISSION`."""
        if getattr(user, "is_staff", False):
            return self
        return self.filter(user=user)

    def open(self) -> "ApiSessionQuerySet":
        """Sessions still in progress (created or started)."""
        return self.filter(status__in=ApiSession.OPEN_STATUSES)

    def resettling(self, now: datetime) -> "ApiSessionQuerySet":
        """Ended sessions whose charge changed since: a manual stop in SteVe that
        the station's own stop replaced (CONTRACT §11) within the grace period
        the sync re-reads it for."""
        return self.filter(
            status=ApiSession.Status.ENDED,
            updated_at__gte=manual_stop_grace_start(now),
            transaction__updated_at__gt=models.F("updated_at"),
        )

    def waiting_to_start(self, now: datetime) -> "ApiSessionQuerySet":
        """Scheduled sessions whose start time has not come: they hold their
        connector, as a reservation does, with nobody charging there yet."""
        return self.filter(
            status=ApiSession.Status.CREATED,
            remote_start_sent_at__isnull=True,
            target_start_at__gt=now,
        )

    def start_not_taken_since(self, since: datetime) -> "ApiSessionQuerySet":
        """Sessions cancelled after their remote start went out and no charge
        came (the station did not start in time, or refused a scheduled start),
        ended since `since`, with no later session of their user: a Start whose
        failure the driver has not yet answered by starting again. One its owner
        stopped before it began did not fail."""
        later = self.model.objects.filter(
            user=OuterRef("user"), created_at__gt=OuterRef("created_at")
        )
        return self.filter(
            status=ApiSession.Status.CANCELLED,
            transaction__isnull=True,
            remote_start_sent_at__isnull=False,
            stop_requested_at__isnull=True,
            ended_at__gte=since,
        ).exclude(Exists(later))

    def charging_or_starting(self, now: datetime) -> "ApiSessionQuerySet":
        """Open sessions other than those `waiting_to_start`: their remote start
        has gone out (or is about to), so the connector is in use."""
        return self.open().exclude(pk__in=self.waiting_to_start(now).values("pk"))

    def with_status(self, status: str | None) -> "ApiSessionQuerySet":
        """Sessions in `status`; all of them for None."""
        return self if status is None else self.filter(status=status)

    def at_chargestation(self, charge_box_id: str | None) -> "ApiSessionQuerySet":
        """Sessions at this SteVe chargeBoxId; all of them for None."""
        if charge_box_id is None:
            return self
        return self.filter(charge_box_id=charge_box_id)

    def at_connector(
        self, charge_box_id: str, connector_id: int
    ) -> "ApiSessionQuerySet":
        """Sessions on this connector of a SteVe chargeBoxId."""
        return self.filter(charge_box_id=charge_box_id, connector_id=connector_id)

    def created_between(
        self, start: datetime | None, end: datetime | None
    ) -> "ApiSessionQuerySet":
        """Sessions whose createdAt lies in [start, end] to the millisecond, the
        precision the API shows it with: `end` covers its whole millisecond, so a
        session's own createdAt, sent back as both bounds, finds it. Either end
        may be open."""
        queryset = self
        if start is not None:
            queryset = queryset.filter(created_at__gte=_whole_millisecond(start))
        if end is not None:
            after_end = _whole_millisecond(end) + timedelta(milliseconds=1)
            queryset = queryset.filter(created_at__lt=after_end)
        return queryset

    def newest_first(self) -> "ApiSessionQuerySet":
        """Ordered by createdAt descending, ties broken by id (the keyset order)."""
        return self.order_by("-created_at", "-id")

    def after_cursor(self, created_at: datetime, pk: int) -> "ApiSessionQuerySet":
        """Sessions after (created_at, pk) in `newest_first` order (keyset)."""
        return self.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk)
        )


class ApiSession(models.Model):
    """A session of the Sessions API: a remote start followed to its end.

    Lifecycle: created → started → ended, or created → cancelled. Energy and times
    come from the matched SteVe transaction (`transaction`); live readings are kept
    in `energy_report` and `charging_activity`.
    """

    class Status(models.TextChoices):
        CREATED = "created", "Created"
        STARTED = "started", "Started"
        ENDED = "ended", "Ended"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.CREATED, Status.STARTED)
    # Staff read every session; starting or stopping one for another user takes
    # this too (superusers have it implicitly), so that a support account with no
    # permissions cannot charge on a customer's card.
    MANAGE_ANY_PERMISSION = "sessions_app.manage_any_session"

    class Target(models.TextChoices):
        ENERGY = "energy", "Energy target"
        TIME = "time", "Time target"
        COST = "cost", "Cost target"
        STOP_TIME = "energy_stop_time", "Stop time"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_sessions"
    )
    charge_box_id = models.CharField(max_length=255)
    connector_id = models.PositiveIntegerField()
    id_tag = models.CharField(max_length=255, help_text="The OCPP idTag sent.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.CREATED
    )
    status_message = models.CharField(max_length=STATUS_MESSAGE_MAX_LENGTH, blank=True)
    rate = models.ForeignKey(
        Rate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="api_sessions",
    )
    rate_terms = models.JSONField(
        null=True,
        blank=True,
        help_text="The rate's prices when the session was created; later edits of "
        "the rate do not change the cost of this session.",
    )
    transaction = models.ForeignKey(
        "sync.TransactionSyncState",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="api_sessions",
    )
    target_time_minutes = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True
    )
    target_cost = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True
    )
    target_energy_kwh = models.DecimalField(
        max_digits=10, decimal_places=3, null=True, blank=True
    )
    target_start_at = models.DateTimeField(null=True, blank=True)
    target_stop_at = models.DateTimeField(null=True, blank=True)
    target_reached = models.CharField(max_length=16, choices=Target.choices, blank=True)
    meta_data = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    # Whose Idempotency-Key it is: the caller's, who may be staff creating the
    # session for someone else.
    idempotency_caller = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    energy_report = models.JSONField(null=True, blank=True)
    charging_activity = models.JSONField(default=list, blank=True)
    remote_start_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty while a scheduled start waits."
    )
    remote_start_returned_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the remote start's outcome (an answer, a refusal or a lost "
        "answer) was stored; empty while it is sent, or when the worker sending it "
        "stopped before it could store anything.",
    )
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    remote_stop_returned_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the outcome (an answer, a refusal or a lost answer) of the "
        "remote stop sent at stop_requested_at was stored; empty while it is sent, "
        "while a stop waits for charging to begin, or when the process sending it "
        "stopped before it could store anything.",
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ApiSessionQuerySet.as_manager()

    class Meta:
        db_table = "api_sessions"
        verbose_name = "API session"
        ordering = ["-created_at", "-id"]
        permissions = [
            (
                "manage_any_session",
                "Can start and stop any customer's API sessions",
            ),
        ]
        constraints = [
            # One connector, one session in progress: the database decides races.
            models.UniqueConstraint(
                fields=["charge_box_id", "connector_id"],
                condition=Q(status__in=["created", "started"]),
                name="api_session_one_open_per_connector",
                violation_error_code="connector_busy",
                violation_error_message="This connector already has a session.",
            ),
            models.UniqueConstraint(
                fields=["idempotency_caller", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="api_session_idempotency_caller_key",
                violation_error_code="idempotency_key_used",
                violation_error_message="This Idempotency-Key was already used.",
            ),
            models.UniqueConstraint(
                fields=["transaction"],
                condition=Q(transaction__isnull=False),
                name="api_session_one_per_transaction",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="api_session_keyset"),
            models.Index(
                fields=["user", "-created_at", "-id"], name="api_session_user_keyset"
            ),
            models.Index(
                fields=["status"],
                condition=Q(status__in=["created", "started"]),
                name="api_session_open",
            ),
            # Every sync's advance looks for recently ended sessions whose charge
            # changed since (`resettling`): a range of the newest, not a scan.
            models.Index(
                fields=["updated_at"],
                condition=Q(status="ended"),
                name="api_session_ended_updated",
            ),
            # The dashboard's start notices, on every load and for each customer
            # whose charge a sync changed, look for Starts that recently failed
            # (`start_not_taken_since`): the few cancelled lately, not each
            # customer's whole history (40 ms for 50 customers of 1,000 sessions,
            # then 0.1).
            models.Index(
                fields=["ended_at"],
                condition=Q(status="cancelled"),
                name="api_session_cancelled_ended",
            ),
        ]

    def __str__(self) -> str:
        return f"API session {self.pk} ({self.status})"

    @property
    def is_sending_first_start(self) -> bool:
        """Whether its create still waits for the answer to the start it sent
        (or stopped before storing one): claimed as sent when it was created,
        nothing stored since, and no charge seen. A start the sync sends later
        is claimed later."""
        return (
            self.status == self.Status.CREATED
            and self.remote_start_returned_at is None
            and self.remote_start_sent_at == self.created_at
        )

    @property
    def is_sending_stop(self) -> bool:
        """Whether a remote stop of its charge is out and its outcome may still
        come: claimed, nothing stored since, and sent less than
        `operation_answer_window()` ago. One sent longer ago will never be
        answered (the process sending it died): it no longer holds up a stop,
        and the sync sends it again if charging goes on."""
        return (
            self.status == self.Status.STARTED
            and self.stop_requested_at is not None
            and self.remote_stop_returned_at is None
            and timezone.now() < self.stop_requested_at + operation_answer_window()
        )
