"""API tokens: how integrators sign their calls to the Sessions API."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# How long before its expiry a token's pages warn of it: Polaris sends no email,
# so its owner learns it there, with time to switch their app to a new one.
EXPIRY_NOTICE = timedelta(days=7)
# A token copied into a script outlives the reason it was made for, so by default
# (a tokens page, create_api_token) it stops on its own.
DEFAULT_EXPIRY_DAYS = 90


class ApiToken(models.Model):
    """A per-user Bearer token for the Sessions API.

    Only a SHA-256 hash of the token is stored; the prefix stays visible so people
    can tell their tokens apart.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=120, blank=True)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # None: it never expires (it works until revoked).
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_tokens"
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def has_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def expires_soon(self) -> bool:
        """Still working, but not for longer than EXPIRY_NOTICE."""
        if self.revoked_at is not None or self.expires_at is None:
            return False
        now = timezone.now()
        return now < self.expires_at <= now + EXPIRY_NOTICE
