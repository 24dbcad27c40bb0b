"""A Celery worker killed while it sends a target's stop, then restarted."""

import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import TransactionTestCase, override_settings

from polaris.testing import CeleryWorker
from sessions_app import charging
from sessions_app.models import ApiSession
from sessions_app.tasks import api_sessions_advance_all
from sessions_app.tests.test_charging import REMOTE_STOP
from sync import services
from sync.client import SteveClient
from sync.models import Charger, SyncRun, UserMapping
from sync.standin.testing import StandinProcess


class TargetStopAcrossAWorkerRestartTests(TransactionTestCase):
    standin: StandinProcess
    steve: SteveClient

    @pytest.fixture(autouse=True)
    def _attach_standin(
        self, standin: StandinProcess, steve_client: SteveClient
    ) -> Iterator[None]:
        standin.reset(scenarios=False)
        self.standin = standin
        self.steve = steve_client
        with override_settings(
            STEVE_URL=standin.base_url,
            STEVE_USERNAME=standin.username,
            STEVE_PASSWORD=standin.password,
        ):
            yield

    def setUp(self) -> None:
        alice = get_user_model().objects.create_user(
            "alice@example.com", "alice@example.com", "pw"
        )
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0001", user=alice)
        Charger.objects.create(charge_box_id="CP-001", connector_id=1)
        self.alice = alice

    def steve_env(self) -> dict[str, str]:
        return {
            "STEVE_URL": self.standin.base_url,
            "STEVE_USERNAME": self.standin.username,
            "STEVE_PASSWORD": self.standin.password,
        }

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        self.fail("condition not met in time")

    def remote_stops(self) -> int:
        return int(self.standin.state()["requests"].get(REMOTE_STOP, 0))

    def steve_transaction(self, pk: int) -> dict[str, object]:
        transactions = self.standin.state()["transactions"]
        return next(t for t in transactions if t["id"] == pk)

    def test_a_stop_cut_off_by_the_kill_is_sent_again(self) -> None:
        target = charging.SessionTarget(energy_kwh=Decimal("0.5"))
        session = charging.api_session_create(
            user=self.alice,
            charge_box_id="CP-001",
            connector_id=1,
            client=self.steve,
            target=target,
        ).session
        self.standin.tick()
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        session = charging.api_session_advance(session_id=session.pk, client=self.steve)
        assert session.transaction is not None
        pk = session.transaction.steve_transaction_id
        self.standin.tick(900)  # past 0.5 kWh: stations here draw 3 kW or more

        # The station never answers the stop: the worker waits, and is killed.
        self.standin.set_fault(
            "timeout_operation", delay=30, path_contains="RemoteStopTransaction"
        )
        with CeleryWorker(**self.steve_env()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            self.wait_for(lambda: self.remote_stops() == 1)
            worker.stop(signal.SIGKILL)
        session.refresh_from_db()
        self.assertEqual(session.target_reached, "energy")
        self.assertIsNotNone(session.stop_requested_at)
        self.assertIs(self.steve_transaction(pk)["active"], True)

        # The resend period passes (a worker's clock cannot be moved) and a
        # restarted worker advances the session again.
        self.standin.clear_faults()
        ApiSession.objects.filter(pk=session.pk).update(
            stop_requested_at=F("stop_requested_at") - charging.stop_resend_after()
        )
        with CeleryWorker(**self.steve_env()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            self.wait_for(lambda: self.remote_stops() == 2)
            worker.wait_for_log("succeeded")
        stopped = self.steve_transaction(pk)
        self.assertEqual((stopped["active"], stopped["stopReason"]), (False, "Remote"))
