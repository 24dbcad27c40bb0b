"""How a sync run talks to SteVe: over a few kept-alive connections.

Every detail call on a connection of its own would cost a TCP handshake each, and
thousands of sockets in TIME_WAIT on a big fleet.
"""

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
