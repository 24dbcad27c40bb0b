"""The portal's formatting filters (portal/templatetags/portal.py)."""

from datetime import timedelta
from decimal import Decimal

from django.template import engines
from django.template.defaultfilters import floatformat
from django.test import SimpleTestCase

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
