"""What a load test is asked to do: the options every part of it reads, and how it
tells the caller about its progress. A module of its own so the parts can take
them without importing the package that puts the parts together."""

import os
from collections.abc import Callable
from dataclasses import dataclass

Say = Callable[[str], None]


@dataclass
class LoadOptions:
    users: int = 200
    duration: float = 600.0
    sync_interval: float = 10.0
    # Two per core: sync views hold the GIL, so with one worker per core a long
    # page holds up the short ones queued behind it in that process.
    web_workers: int = 2 * (os.cpu_count() or 1)
    fleet_size: int = 20
    staff_share: float = 0.25
    sse_share: float = 0.5
    think_min: float = 5.0
    think_max: float = 15.0
    seed: int = 1
