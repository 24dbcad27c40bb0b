"""Formatting filters of the portal templates."""

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils import timezone

from sessions_app.templatetags.console import (
    breakable_email,
    duration,
    in_page_message,
    short_time,
)

register = template.Library()
# The console's: a duration and an email read the same to staff and customers.
register.filter("duration", duration)
register.filter("breakable_email", breakable_email)
register.filter("short_time", short_time)
register.filter("in_page_message", in_page_message)


TENTH = Decimal("0.1")


@register.filter
def kilowatts(value: Decimal) -> str:
    """A charger's power as `22` or `7.4`: floatformat:"-1" for the fifty cards of
    a dashboard, without its locale lookups."""
    whole = value.to_integral_value()
    return str(whole if value == whole else value.quantize(TENTH, ROUND_HALF_UP))


@register.filter
def seconds_until(value: datetime) -> int:
    """Whole seconds from now until `value`, at least 1: when a part of the page
    that `value` ends should re-read itself."""
    return max(1, math.ceil((value - timezone.now()).total_seconds()))


@register.filter
def clock_or_date(value: datetime, precision: str = "") -> str:
    """`14:05` today, `Dec 4, 23:10` on another day, in the active time zone: a
    charge that began before midnight says so. With "seconds", `14:05:37` today:
    for a moment half a minute ago that the page contrasts with now."""
    if timezone.localdate(value) == timezone.localdate():
        clock = "%H:%M:%S" if precision == "seconds" else "%H:%M"
        return timezone.localtime(value).strftime(clock)
    return short_time(value)
