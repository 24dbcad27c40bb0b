"""The usage card's daily bars and their table (portal/charts.py)."""

from datetime import date
from decimal import Decimal

from django.test import SimpleTestCase

from portal.charts import HEIGHT, daily_chart


class DailyChartTests(SimpleTestCase):
    def test_days_with_energy_get_a_bar_in_their_slot_scaled_to_the_largest(
        self,
    ) -> None:
        chart = daily_chart(
            first_day=date(2026, 11, 1),
            end_day=date(2026, 11, 5),  # four slots of 160 px
            kwh_by_day={
                date(2026, 10, 31): Decimal("99"),  # before the period
                date(2026, 11, 1): Decimal("13.2"),
                date(2026, 11, 2): Decimal("0"),
                date(2026, 11, 3): Decimal("26.4"),
                date(2026, 11, 4): Decimal("-0.5"),  # a meter correction
                date(2026, 11, 5): Decimal("99"),  # after it
            },
        )
        self.assertEqual(chart.max_kwh, Decimal("26.4"))
        self.assertEqual(
            (chart.first_day, chart.last_day), (date(2026, 11, 1), date(2026, 11, 4))
        )
        self.assertEqual(
            str(chart.bar_marks),
            '<rect class="chart__bar" x="1.0" y="74.0" width="158.0" height="66.0">'
            "<title>Nov 1: 13.20 kWh</title></rect>"
            '<rect class="chart__bar" x="321.0" y="8.0" width="158.0" height="132.0">'
            "<title>Nov 3: 26.40 kWh</title></rect>",
        )
        self.assertEqual(
            str(chart.table_rows),
            '<tr><td>Sun, Nov 1</td><td class="num tabular">13.20</td></tr>'
            '<tr><td>Tue, Nov 3</td><td class="num tabular">26.40</td></tr>',
        )
        self.assertTrue(chart.has_energy)
        self.assertEqual(chart.baseline, HEIGHT - 2)

    def test_a_tiny_day_stays_visible_and_a_period_without_energy_is_empty(
        self,
    ) -> None:
        chart = daily_chart(
            first_day=date(2026, 1, 1),
            end_day=date(2027, 1, 1),
            kwh_by_day={
                date(2026, 1, 1): Decimal("500"),
                date(2026, 12, 31): Decimal("0.004"),
            },
        )
        self.assertIn('height="3.0"><title>Dec 31: 0.00 kWh</title>', chart.bar_marks)
        # A year's bars are wider than their slots, centred on their day: with
        # gaps they were hairlines, and a slot is under a pixel on a phone.
        self.assertIn('x="0.0" y="8.0" width="3.0" height="132.0"', chart.bar_marks)
        self.assertIn('x="637.0" y="137.0" width="3.0"', chart.bar_marks)
        self.assertEqual(chart.month_ticks[0], "Jan")
        self.assertEqual(len(chart.month_ticks), 12)
        empty = daily_chart(
            first_day=date(2026, 1, 1), end_day=date(2026, 2, 1), kwh_by_day={}
        )
        self.assertEqual((empty.bar_marks, empty.table_rows), ("", ""))
        self.assertEqual(empty.month_ticks, ())
        self.assertFalse(empty.has_energy)
        self.assertEqual(empty.max_kwh, Decimal(0))
