"""Fault injection for the SteVe API, armed through the control API.

Faults let tests see how the client and the sync cope with a SteVe that is slow,
failing, returning broken JSON, refusing credentials or not hearing back from a
station, without mocking anything in the test process.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

FaultKind = Literal[
    "slow",
    "error",
    "malformed",
    "cut",
    "hangup",
    "unauthorized",
    "timeout_operation",
    "steve_3_11",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
# Faults that act on any API request; timeout_operation only on operations, and
# steve_3_11 only on the routes SteVe 3.12 added.
REQUEST_FAULTS: tuple[FaultKind, ...] = (
    "slow",
    "error",
    "malformed",
    "cut",
    "hangup",
    "unauthorized",
)
# SteVe's STATION_RESPONSE_TIMEOUT: nothing in SteVe blocks longer.
MAX_DELAY_S = 30.0
UNLIMITED = -1


def fault_kind(name: str) -> FaultKind:
    """Return ``name`` as a fault kind. Raises ValueError for unknown kinds."""
    for kind in FAULT_KINDS:
        if kind == name:
            return kind
    raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")


@dataclass
class Fault:
    """One armed fault.

    ``remaining`` counts the requests it still affects (``UNLIMITED`` = until
    cleared); ``path_contains`` restricts it to request targets (path and query)
    containing that text.
    """

    kind: FaultKind
    remaining: int = 1
    delay: float = 1.0
    status: int = 500
    path_contains: str | None = None

    def __post_init__(self) -> None:
        if self.remaining == 0 or self.remaining < UNLIMITED:
            raise ValueError("count must be a positive number or -1")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        self.delay = min(self.delay, MAX_DELAY_S)

    def applies_to(self, target: str, kinds: tuple[FaultKind, ...]) -> bool:
        """Whether this fault is one of ``kinds`` and matches ``target``."""
        return self.kind in kinds and (
            self.path_contains is None or self.path_contains in target
        )


class FaultBoard:
    """The armed faults, oldest first; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def arm(self, fault: Fault) -> None:
        """Add ``fault`` after the ones already armed."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def take(self, target: str, kinds: tuple[FaultKind, ...]) -> Fault | None:
        """Use up one request of the oldest matching fault and return it."""
        with self._lock:
            for fault in self._faults:
                if fault.applies_to(target, kinds):
                    if fault.remaining != UNLIMITED:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
            return None

    def describe(self) -> list[dict[str, Any]]:
        """The armed faults as JSON-ready dicts."""
        with self._lock:
            return [asdict(fault) for fault in self._faults]
