"""argparse types for the ops commands and the SteVe stand-in.

A value out of range stops the command before it starts anything, with a sentence
saying what was expected, instead of a traceback later (a port above 65535, an
empty fleet) or a run that measures nothing (zero users). Free of Django, so the
stand-in can run on its own.
"""

import math
from argparse import Action, ArgumentParser, ArgumentTypeError, Namespace
from collections.abc import Callable
from typing import Any

# The stand-in builds its whole fleet in memory before it answers: about 8 ms and
# 0.4 MB per charge point, so 2,000 take some 15 s and 700 MB. The bench's largest
# fleet has about 700.
MAX_FLEET_SIZE = 2000


def int_between(
    low: int, high: int | None = None, *, what: str = "a whole number"
) -> Callable[[str], int]:
    """A type accepting whole numbers from `low` to `high` (no upper bound: None)."""
    return _bounded(int, low, high, what)


def number_between(
    low: float, high: float | None = None, *, what: str = "a number"
) -> Callable[[str], float]:
    """A type accepting finite numbers from `low` to `high` (no upper bound: None)."""
    return _bounded(float, low, high, what)


def _bounded[N: (int, float)](
    kind: Callable[[str], N], low: N, high: N | None, what: str
) -> Callable[[str], N]:
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(value: str) -> N:
        try:
            number = kind(value)
        except ValueError:
            number = None
        if (
            number is None
            or not math.isfinite(number)
            or number < low
            or (high is not None and number > high)
        ):
            raise ArgumentTypeError(f"expected {what} {bounds}, not {value!r}")
        return number

    return parse


class AscendingPair(Action):
    """`--option MIN MAX` (with `nargs=2`) whose MIN is not above its MAX."""

    def __call__(
        self,
        parser: ArgumentParser,
        namespace: Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        low, high = values
        if low > high:
            parser.error(f"{option_string} {low:g} {high:g}: MIN is above MAX.")
        setattr(namespace, self.dest, values)
