"""Models of the admin console."""

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """Who changed what, when, with the values before and after.

    Written for user-mapping changes and for support agents acting as a customer.
    """

    class Action(models.TextChoices):
        MAPPING_CREATED = "mapping.created", "Mapping created"
        MAPPING_UPDATED = "mapping.updated", "Mapping updated"
        MAPPING_DEACTIVATED = "mapping.deactivated", "Mapping deactivated"
        IMPERSONATION_STARTED = "impersonation.started", "Acting as started"
        IMPERSONATION_ENDED = "impersonation.ended", "Acting as ended"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
        help_text="Empty when a command made the change.",
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
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
