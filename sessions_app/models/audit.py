"""The audit log: who changed what in the console and the portal, and when."""

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """Who changed what, when, with the values before and after.

    Written for user-mapping changes, for support agents acting as a customer, and
    for Sessions API sessions staff start or stop for another user.
    """

    class Action(models.TextChoices):
        MAPPING_CREATED = "mapping.created", "Mapping created"
        MAPPING_UPDATED = "mapping.updated", "Mapping updated"
        MAPPING_DEACTIVATED = "mapping.deactivated", "Mapping deactivated"
        IMPERSONATION_STARTED = "impersonation.started", "Acting as started"
        IMPERSONATION_ENDED = "impersonation.ended", "Acting as ended"
        API_SESSION_CREATED_ON_BEHALF = (
            "api_session.created_on_behalf",
            "API session started for another user",
        )
        API_SESSION_STOPPED_ON_BEHALF = (
            "api_session.stopped_on_behalf",
            "API session stopped for another user",
        )

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
        help_text="Empty when a command made the change.",
    )
    # Kept with the entry: an account deleted later empties `actor`, and its
    # changes would then read as a command's.
    actor_username = models.CharField(
        max_length=150,
        blank=True,
        db_default="",
        help_text="The actor's username when the change was made; empty for a command.",
    )
    action = models.CharField(max_length=40, choices=Action.choices)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=40, default="console")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "audit_log"
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
