"""What Django's error reports (the DEBUG error page, error emails) may show."""

from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from polaris.env import without_password


class PasswordMaskingFilter(SafeExceptionReporterFilter):
    """Django's filter, which hides settings named like secrets, also masking the
    password of any URL it shows: DATABASE_URL, REDIS_URL, the Celery broker's and
    the cache's LOCATION are named like none and carry theirs."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return without_password(cleansed) if isinstance(cleansed, str) else cleansed
