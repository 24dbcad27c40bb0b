"""Real Celery workers: the advance that follows each beat sync; workers cut off
while they talk to the station: killed while a target's stop is sent, then
restarted; stopped by the task's soft time limit."""

import signal
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import TransactionTestCase
from django.utils import timezone

from polaris.celery import app as celery_app
from polaris.testing import CeleryWorker, wait_until
from sessions_app import charging
from sessions_app.api.selectors.matching import CLOCK_SKEW
from sessions_app.models import ApiSession
from sessions_app.tasks import api_sessions_advance_all
from sessions_app.tests.test_charging import REMOTE_START, REMOTE_STOP
from sync import services
from sync.models import Charger, SyncRun, UserMapping
from sync.tasks import sync_run_transactions
from sync.tests.standin_case import PolarisAtStandinMixin


class WorkerFaultTestCase(PolarisAtStandinMixin, TransactionTestCase):
    def setUp(self) -> None:
        alice = get_user_model().objects.create_user(
            "alice@example.com", "alice@example.com", "pw"
        )
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0001", user=alice)
        Charger.objects.create(charge_box_id="CP-001", connector_id=1)
        self.alice = alice

    def remote_stops(self) -> int:
        return int(self.standin.state()["requests"].get(REMOTE_STOP, 0))

    def steve_transaction(self, pk: int) -> dict[str, object]:
        transactions = self.standin.state()["transactions"]
        return next(t for t in transactions if t["id"] == pk)

    def remote_starts(self) -> int:
        return int(self.standin.state()["requests"].get(REMOTE_START, 0))

    def scheduled(self, user: object, charge_box_id: str) -> ApiSession:
        """A session whose scheduled start is due and not sent yet."""
        now = timezone.now()
        return charging.api_session_create(
            user=user,
            charge_box_id=charge_box_id,
            connector_id=1,
            client=self.steve,
            target=charging.SessionTarget(start_at=now - timedelta(seconds=1)),
            now=now - timedelta(minutes=5),
        ).session


class AdvanceAfterTheSyncTests(WorkerFaultTestCase):
    def test_the_beat_sync_is_followed_by_the_advance(self) -> None:
        session = charging.api_session_create(
            user=self.alice, charge_box_id="CP-001", connector_id=1, client=self.steve
        ).session
        self.standin.tick()
        options = celery_app.conf.beat_schedule["sync-transactions"]["options"]
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            advance = options["link"].clone()
            advance.set(queue=worker.queue)
            sync_run_transactions.apply_async(
                args=["beat"], queue=worker.queue, link=advance
            )
            wait_until(lambda: worker.log().count("succeeded") >= 2)
        session.refresh_from_db()
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        self.assertEqual(SyncRun.objects.get().status, SyncRun.Status.SUCCEEDED)
        self.assertIn("api_sessions_advance_all", worker.log())


class TargetStopAcrossAWorkerRestartTests(WorkerFaultTestCase):
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
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            wait_until(lambda: self.remote_stops() == 1)
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
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            wait_until(lambda: self.remote_stops() == 2)
            worker.wait_for_log("succeeded")
        stopped = self.steve_transaction(pk)
        self.assertEqual((stopped["active"], stopped["stopReason"]), (False, "Remote"))


class SoftTimeLimitTests(WorkerFaultTestCase):
    def test_the_soft_limit_ends_the_loop_and_the_next_run_goes_on(self) -> None:
        bob = get_user_model().objects.create_user(
            "bob@example.com", "bob@example.com", "pw"
        )
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0003", user=bob)
        Charger.objects.create(charge_box_id="CP-002", connector_id=1)
        self.standin.station_stop(42)  # frees CP-002
        first = self.scheduled(self.alice, "CP-001")
        second = self.scheduled(bob, "CP-002")

        # The first start hangs in SteVe past the soft limit (not the hard one).
        self.standin.set_fault(
            "timeout_operation", delay=20, path_contains="RemoteStartTransaction"
        )
        # The sender's limits travel with the task message (beat's, in production).
        with CeleryWorker(pool="prefork", **self.standin.polaris_settings()) as worker:
            api_sessions_advance_all.apply_async(
                queue=worker.queue, soft_time_limit=3, time_limit=60
            )
            worker.wait_for_log("succeeded")
        self.assertIn("cut off by the soft time limit", worker.log())
        self.assertEqual(self.remote_starts(), 1)
        second.refresh_from_db()
        self.assertIsNone(second.remote_start_sent_at)
        first.refresh_from_db()
        self.assertIsNotNone(first.remote_start_sent_at)

        # The next run takes up the rest.
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            worker.wait_for_log("succeeded")
        self.assertEqual(self.remote_starts(), 2)
        second.refresh_from_db()
        self.assertEqual(second.status, ApiSession.Status.CREATED)
        self.assertIsNotNone(second.remote_start_sent_at)


class ScheduledStartAcrossAWorkerRestartTests(WorkerFaultTestCase):
    def test_a_start_cut_off_by_the_kill_is_sent_again_after_its_window(
        self,
    ) -> None:
        session = self.scheduled(self.alice, "CP-001")
        # SteVe never hears back from the station: the worker waits, and is killed
        # after claiming the start and before storing any outcome.
        self.standin.set_fault(
            "timeout_operation", delay=30, path_contains="RemoteStartTransaction"
        )
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            wait_until(lambda: self.remote_starts() == 1)
            worker.stop(signal.SIGKILL)
        session.refresh_from_db()
        self.assertIsNotNone(session.remote_start_sent_at)
        self.assertIsNone(session.remote_start_returned_at)
        self.standin.clear_faults()

        # Its start window passes (a worker's clock cannot be moved) and a sync
        # reads SteVe after it: no charge began, so no start is left to wait for.
        window = timedelta(seconds=121) + CLOCK_SKEW
        ApiSession.objects.filter(pk=session.pk).update(
            remote_start_sent_at=F("remote_start_sent_at") - window
        )
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        with CeleryWorker(**self.standin.polaris_settings()) as worker:
            api_sessions_advance_all.apply_async(queue=worker.queue)
            worker.wait_for_log("succeeded")
        self.assertEqual(self.remote_starts(), 2)
        session.refresh_from_db()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIsNotNone(session.remote_start_returned_at)
        self.assertIn("sent again", session.status_message)

        # The station takes this one and charges; the session follows it.
        self.assertEqual(len(self.standin.tick()["started"]), 1)
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        session = charging.api_session_advance(session_id=session.pk, client=self.steve)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        self.assertEqual(session.status_message, "")
        # Advancing again sends nothing more.
        charging.api_session_advance(session_id=session.pk, client=self.steve)
        self.assertEqual(self.remote_starts(), 2)
