"""Fixtures shared by every test suite."""

from collections.abc import Iterator

import pytest
from django.db import connection
from pytest_django.plugin import DjangoDbBlocker

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


@pytest.fixture(scope="session")
def django_db_setup(
    django_db_setup: None, django_db_blocker: DjangoDbBlocker
) -> Iterator[None]:
    """pytest-django's test database, with what still uses it ended first at the
    end: a child a test stopped (uvicorn, a Celery worker) can still be leaving
    when the database is dropped, which then fails with "being accessed by other
    users" and leaves it behind."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
