"""Fixtures shared by every test suite."""

from collections.abc import Iterator

import pytest

from sync.client import SteveClient
from sync.standin.testing import StandinProcess


@pytest.fixture(scope="session")
def standin_process() -> Iterator[StandinProcess]:
    """One SteVe stand-in subprocess per test process (parallel-safe: own port)."""
    with StandinProcess(fleet_size=4, seed=3) as process:
        yield process


@pytest.fixture
def standin(standin_process: StandinProcess) -> Iterator[StandinProcess]:
    """The stand-in with a freshly seeded fleet and no faults armed."""
    standin_process.reset()
    yield standin_process
    standin_process.clear_faults()


@pytest.fixture
def steve_client(standin: StandinProcess) -> Iterator[SteveClient]:
    """A SteVe client for the stand-in, with short timeouts and quick retries."""
    client = standin.client(timeout=2, retry_delays=(0.05, 0.1))
    yield client
    client.close()
