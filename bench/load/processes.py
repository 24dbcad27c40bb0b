"""The load test's child processes: the SteVe stand-in, a Celery worker and
uvicorn, started with the environment that points them at each other and stopped
in reverse order. Named `processes`, not `services`: the package imports the
`services` context manager, whose name would hide a module of the same name."""

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from django.conf import settings

from bench.load.options import LoadOptions
from polaris.testing import CeleryWorker, UvicornServer, child_environment
from sync.standin.testing import StandinProcess


@dataclass
class Services:
    web: UvicornServer
    worker: CeleryWorker
    standin: StandinProcess
    channel_prefix: str


@contextmanager
def services(options: LoadOptions, first_pk: int) -> Iterator[Services]:
    """Stand-in, Celery worker and uvicorn, stopped in reverse order."""
    prefix = f"load-{uuid.uuid4().hex[:8]}-"
    with ExitStack() as stack:
        standin = stack.enter_context(
            StandinProcess(
                first_transaction_pk=first_pk,
                fleet_size=options.fleet_size,
                seed=options.seed,
                live=True,
                scenarios=False,
            )
        )
        env = {
            "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
            "STEVE_URL": standin.base_url,
            "STEVE_USERNAME": standin.username,
            "STEVE_PASSWORD": standin.password,
            "SYNC_INTERVAL_SECONDS": str(max(1, round(options.sync_interval))),
            "LIVE_CHANNEL_PREFIX": prefix,
            # Plain http on loopback: no redirect to https, cookies not Secure-only.
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_COOKIES": "false",
            # The bench measures server time; the pages report theirs to compare.
            "SERVER_TIMING": "true",
        }
        worker = stack.enter_context(CeleryWorker(**env))
        web = stack.enter_context(
            UvicornServer(
                child_environment(**env),
                workers=options.web_workers,
                access_log=False,
                startup_timeout=60,
            )
        )
        yield Services(web=web, worker=worker, standin=standin, channel_prefix=prefix)
