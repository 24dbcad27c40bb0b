"""How a sync run talks to SteVe: over a few kept-alive connections.

Every detail call on a connection of its own would cost a TCP handshake each, and
thousands of sockets in TIME_WAIT on a big fleet.
"""

import threading

from django.test import TestCase

from polaris.testing import wait_until
from sync import services
from sync.models import SyncRun
from sync.services.runs.planning import DETAIL_WORKERS
from sync.tests.standin_case import StandinTestMixin


class SyncConnectionTests(StandinTestMixin, TestCase):
    def test_detail_calls_reuse_at_most_one_connection_per_worker(self) -> None:
        run = services.sync_run_transactions(trigger="command", client=self.steve)

        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        state = self.standin.state()
        details = sum(
            count
            for path, count in state["requests"].items()
            if path.startswith("/steve/api/v1/transactions/")
        )
        self.assertGreater(details, 4 * DETAIL_WORKERS)
        self.assertLessEqual(state["apiConnections"], DETAIL_WORKERS)


class GivenUpReadsTests(StandinTestMixin, TestCase):
    def test_a_run_whose_reads_broke_off_calls_steve_no_more(self) -> None:
        # The first transaction's read is refused for good, which fails the run
        # at once, while every other worker's read outlasts the client's timeout
        # and has retries left.
        first = min(t["id"] for t in self.standin.state()["transactions"])
        self.standin.set_fault("unauthorized", path_contains=f"/transactions/{first}?")
        self.standin.set_fault(
            "slow", count=-1, delay=1.0, path_contains="energyValuesOnly"
        )
        steve = self.standin.client(timeout=0.3, retry_delays=(0.5, 0.5, 0.5))
        self.addCleanup(steve.close)
        threads_before = set(threading.enumerate())

        run = services.sync_run_transactions(trigger="command", client=steve)

        self.assertEqual(run.status, SyncRun.Status.FAILED)
        sent = self.detail_reads()
        # The run does not wait for its readers; once they have all ended, no
        # more can come. Each may have ended with the one try it was on when
        # the run failed, arriving after it; a retry would be one more.
        wait_until(
            lambda: not set(threading.enumerate()) - threads_before,
            what="the run's readers ending",
        )
        self.assertLessEqual(self.detail_reads() - sent, DETAIL_WORKERS)

    def detail_reads(self) -> int:
        return sum(
            count
            for path, count in self.standin.state()["requests"].items()
            if path.startswith("/steve/api/v1/transactions/")
        )
