"""The transaction detail's cumulative energy chart."""

from datetime import timedelta
from decimal import Decimal

from django.test import TestCase

from sessions_app.charts import cumulative_energy_chart
from sessions_app.selectors import session_energy_series
from sync.tests.factories import session_with_energy


class CumulativeEnergyChartTests(TestCase):
    def ticks(self, kwh: str) -> list[str]:
        session = session_with_energy(kwh=Decimal(kwh))
        chart = cumulative_energy_chart(session, session_energy_series(session=session))
        assert chart is not None
        return [tick.label for tick in chart.y_ticks]

    def test_it_labels_the_energy_axis_in_distinct_round_steps(self) -> None:
        # 0.277 kWh in quarters used to read 0.0, 0.1, 0.1, 0.2, 0.3.
        self.assertEqual(self.ticks("0.277"), ["0.0", "0.1", "0.2", "0.3"])
        self.assertEqual(self.ticks("12.345"), ["0", "5", "10", "15"])
        self.assertEqual(self.ticks("40"), ["0", "10", "20", "30", "40"])
        self.assertEqual(self.ticks("0.9"), ["0.00", "0.25", "0.50", "0.75", "1.00"])
        for kwh in ("0.000", "0.004", "1.234", "7.5", "63.21", "149.9"):
            labels = self.ticks(kwh)
            self.assertEqual(len(labels), len(set(labels)), (kwh, labels))
            self.assertLessEqual(len(labels), 5, (kwh, labels))
            self.assertGreaterEqual(Decimal(labels[-1]), Decimal(kwh), kwh)

    def test_the_line_ends_at_the_total_on_the_axis_scale(self) -> None:
        session = session_with_energy(kwh=Decimal("0.277"))
        chart = cumulative_energy_chart(session, session_energy_series(session=session))
        assert chart is not None
        zero, *_, top = chart.y_ticks  # 0.0 and 0.3 kWh
        _, end_y = chart.points[-1]
        self.assertAlmostEqual(
            (zero.position - end_y) / (zero.position - top.position), 0.277 / 0.3, 2
        )

    def test_a_session_read_for_days_is_drawn_with_a_point_a_column(self) -> None:
        # Three days read every ten seconds: 25,920 readings of 0.01 kWh.
        session = session_with_energy(kwh=Decimal("0"))
        start = session.started_at
        deltas = [
            (start + timedelta(seconds=10 * n), Decimal("0.01")) for n in range(25_920)
        ]
        chart = cumulative_energy_chart(session, deltas)
        assert chart is not None
        self.assertLessEqual(len(chart.points), 2 * 640 + 2)
        # It still starts at the first reading and ends at the total.
        self.assertEqual(chart.points[0], (0.0, 200.0))
        self.assertEqual(chart.points[-1][0], 640.0)
        self.assertIn("259.20 kWh", chart.summary)
