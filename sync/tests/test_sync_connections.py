"""How a sync run talks to SteVe: over a few kept-alive connections.

Every detail call on a connection of its own would cost a TCP handshake each, and
thousands of sockets in TIME_WAIT on a big fleet.
"""

import time

from django.test import TestCase

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
        # Every meter-value read outlasts the client's timeout: the first to run
        # out of tries fails the run while the other workers are between tries.
        self.standin.set_fault(
            "slow", count=-1, delay=1.0, path_contains="energyValuesOnly"
        )
        steve = self.standin.client(timeout=0.3, retry_delays=(0.5, 0.5, 0.5))
        self.addCleanup(steve.close)

        run = services.sync_run_transactions(trigger="command", client=steve)

        self.assertEqual(run.status, SyncRun.Status.FAILED)
        # What was sent before the run ended has arrived after a moment; a retry
        # would come at least one timeout and one delay (0.8 s) later.
        time.sleep(0.2)
        sent = self.detail_reads()
        time.sleep(2)
        self.assertEqual(self.detail_reads(), sent)

    def detail_reads(self) -> int:
        return sum(
            count
            for path, count in self.standin.state()["requests"].items()
            if path.startswith("/steve/api/v1/transactions/")
        )
