"""The portal's formatting filters (portal/templatetags/portal.py)."""

from decimal import Decimal

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
