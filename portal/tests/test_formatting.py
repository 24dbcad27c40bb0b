"""The portal's formatting filters (portal/templatetags/portal.py)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import time_machine
from django.template import engines
from django.template.defaultfilters import floatformat
from django.test import SimpleTestCase, override_settings

from portal.templatetags.portal import kilowatts


class KilowattsTests(SimpleTestCase):
    def test_it_says_what_floatformat_minus_one_says(self) -> None:
        for value in ["22", "22.0", "7.4", "7.45", "7.44", "0.05", "11.96", "150.00"]:
            with self.subTest(value=value):
                self.assertEqual(
                    kilowatts(Decimal(value)), str(floatformat(Decimal(value), "-1"))
                )
        self.assertEqual(kilowatts(Decimal("22.0")), "22")
        self.assertEqual(kilowatts(Decimal("7.45")), "7.5")


class DurationTests(SimpleTestCase):
    def test_staff_and_customers_read_a_duration_alike(self) -> None:
        cases = {
            timedelta(seconds=40): "&lt;1 min",
            timedelta(seconds=-5): "&lt;1 min",
            timedelta(minutes=12, seconds=59): "12 min",
            timedelta(hours=1, minutes=5): "1 h 05 min",
            None: "—",
        }
        engine = engines["django"]
        for library in ("portal", "console"):
            page = engine.from_string(f"{{% load {library} %}}{{{{ value|duration }}}}")
            for value, said in cases.items():
                with self.subTest(library=library, value=value):
                    self.assertEqual(page.render({"value": value}), said)


@override_settings(TIME_ZONE="Europe/Berlin")
@time_machine.travel(datetime(2026, 3, 2, 12, tzinfo=UTC), tick=False)
class MomentTests(SimpleTestCase):
    def render(self, library: str, template: str, value: datetime) -> str:
        page = engines["django"].from_string(f"{{% load {library} %}}{template}")
        return page.render({"value": value})

    def test_staff_and_customers_read_a_moment_alike_with_another_years_year(
        self,
    ) -> None:
        cases = {
            datetime(2026, 3, 2, 8, 5, 9, tzinfo=UTC): "Mar 2, 09:05",
            datetime(2026, 12, 31, 22, 30, tzinfo=UTC): "Dec 31, 23:30",
            # The first of January in Berlin, next year: a token's expiry.
            datetime(2026, 12, 31, 23, 30, tzinfo=UTC): "Jan 1, 2027, 00:30",
            datetime(2025, 3, 2, 8, 5, tzinfo=UTC): "Mar 2, 2025, 09:05",
        }
        for library in ("portal", "console"):
            for value, said in cases.items():
                with self.subTest(library=library, value=value):
                    self.assertEqual(
                        self.render(library, "{{ value|short_time }}", value), said
                    )
        last_year = datetime(2025, 11, 3, 13, 5, 9, tzinfo=UTC)
        self.assertEqual(
            self.render("console", '{{ value|short_time:"seconds" }}', last_year),
            "Nov 3, 2025, 14:05:09",
        )

    def test_a_moment_on_its_own_names_its_year_and_zone(self) -> None:
        value = datetime(2026, 3, 2, 8, 5, 9, tzinfo=UTC)
        self.assertEqual(
            self.render("console", "{{ value|full_time }}", value),
            "Mar 2, 2026, 09:05:09 CET",
        )
