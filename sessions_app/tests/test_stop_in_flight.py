"""A stop while its remote stop waits for the station: claimed and committed
before it goes out, with no transaction, row lock or database connection held
meanwhile, and one stop of a session out at a time, whoever asks.

As in test_create_in_flight.py, the stand-in answers slowly (a `slow` fault on
the operation), and the stop runs in a thread of its own, as a request of
another client would.
"""

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import TransactionTestCase
from django.urls import reverse

from polaris.testing import wait_until
from sessions_app import charging
from sessions_app.charging.stop import STOP_UNDER_WAY
from sessions_app.models import ApiSession
from sessions_app.services import api_token_create
from sessions_app.tests.test_charging import REMOTE_STOP
from sessions_app.tests.test_create_in_flight import (
    STATION_THINKS_S,
    InFlight,
    transactions_held_open,
)
from sync import services
from sync.client import OperationResult, SteveClient
from sync.models import Charger, SyncRun, UserMapping
from sync.tests.standin_case import PolarisAtStandinMixin


class ConnectionWatchingClient(SteveClient):
    """A SteVe client (Polaris's settings: the stand-in) that notes whether the
    thread sending a remote stop held a database connection as it sent it."""

    held_a_connection: bool | None = None

    def remote_stop(self, **kwargs: Any) -> OperationResult:
        self.held_a_connection = connection.connection is not None
        return super().remote_stop(**kwargs)


class StopInFlightTests(PolarisAtStandinMixin, TransactionTestCase):
    def polaris_overrides(self) -> dict[str, Any]:
        return {"STEVE_TIMEOUT": 10}

    def setUp(self) -> None:
        self.alice = get_user_model().objects.create_user(
            "alice@example.com", "alice@example.com", "pw"
        )
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0001", user=self.alice)
        Charger.objects.create(charge_box_id="CP-001", connector_id=1)
        self.session = charging.api_session_create(
            user=self.alice, charge_box_id="CP-001", connector_id=1
        ).session
        self.standin.tick()
        self.sync()
        self.assertEqual(self.advance().status, ApiSession.Status.STARTED)
        # Past an energy target it was given: the sync's next advance would stop
        # the charge too.
        ApiSession.objects.update(target_energy_kwh=Decimal("0.5"))
        self.standin.tick(900)  # stations here draw 3 kW or more
        self.sync()

    def sync(self) -> None:
        run = services.sync_run_transactions(trigger="command")
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)

    def advance(self) -> ApiSession:
        return charging.api_session_advance(
            session_id=self.session.pk, client=self.steve
        )

    def remote_stops(self) -> int:
        return int(self.standin.state()["requests"].get(REMOTE_STOP, 0))

    def stop_slowly(self, **kwargs: Any) -> InFlight:
        """An API stop of the session, once its RemoteStop reached the station
        (which takes STATION_THINKS_S to answer)."""
        self.standin.set_fault(
            "slow", delay=STATION_THINKS_S, path_contains="RemoteStopTransaction"
        )
        in_flight = InFlight(charging.api_session_stop, session=self.session, **kwargs)
        wait_until(lambda: self.remote_stops() == 1, what="the stop sent")
        return in_flight

    def test_nothing_is_held_while_the_station_answers(self) -> None:
        watching = ConnectionWatchingClient()
        self.addCleanup(watching.close)

        first = self.stop_slowly(client=watching)

        self.assertTrue(first.waiting)
        # Its connection is back in the pool for the process's other requests...
        self.assertIs(watching.held_a_connection, False)
        self.assertEqual(transactions_held_open(), 0)
        # ...and the session's row is free for the sync's updates.
        with transaction.atomic():
            ApiSession.objects.select_for_update(nowait=True).get()
        # The claim is committed: everyone else sees the stop under way.
        self.assertTrue(ApiSession.objects.get().is_sending_stop)
        first.join()
        self.assertIsNone(first.error)
        self.assertFalse(first.result.is_sending_stop)
        self.assertIsNotNone(first.result.remote_stop_returned_at)

    def test_one_stop_goes_out_whoever_asks_meanwhile(self) -> None:
        first = self.stop_slowly()

        # The API and the portal are told a stop is under way, at once: not "Stop
        # requested" for a stop that may still fail, nor an error to a driver.
        with self.assertRaisesMessage(charging.SessionConflict, STOP_UNDER_WAY):
            charging.api_session_stop(session=ApiSession.objects.get())
        # Over HTTP, the conflict it is: 409, as the API's description says.
        api = self.client.post(
            f"/api/v1/sessions/{self.session.pk}/stop",
            headers={"Authorization": f"Bearer {api_token_create(user=self.alice)[1]}"},
        )
        self.assertEqual(
            (api.status_code, api.json()["message"]), (409, STOP_UNDER_WAY)
        )
        self.client.force_login(self.alice)
        portal = self.client.post(
            reverse("portal:session-stop", args=[self.session.pk]), follow=True
        )
        # The driver's double submit: the first stop is theirs, on its way.
        self.assertEqual(
            [
                (message.level_tag, message.message)
                for message in portal.context["messages"]
            ],
            [
                (
                    "info",
                    "Your stop is on its way to the station; the charge ends in a "
                    "moment.",
                )
            ],
        )
        # The sync, whose target was passed, sends none either.
        self.advance()
        self.assertTrue(first.waiting)
        first.join()
        self.assertIsNone(first.error)
        self.assertEqual(self.remote_stops(), 1)

        # Answered, a repeated stop gets the session as it is.
        again = charging.api_session_stop(session=ApiSession.objects.get())
        self.assertEqual(again.stop_requested_at, first.result.stop_requested_at)
        self.assertEqual(self.remote_stops(), 1)

    def test_a_stop_that_failed_leaves_the_next_one_to_be_sent(self) -> None:
        # The station went offline: the first stop, slow to say so, fails.
        self.standin.set_online("CP-001", False)
        first = self.stop_slowly()

        with self.assertRaisesMessage(charging.SessionConflict, STOP_UNDER_WAY):
            charging.api_session_stop(session=ApiSession.objects.get())
        self.assertTrue(first.waiting)
        first.join()
        self.assertIsInstance(first.error, charging.SessionConflict)
        self.assertIsNone(ApiSession.objects.get().stop_requested_at)
        # The next stop is sent, and learns why.
        with self.assertRaisesMessage(charging.SessionConflict, "offline"):
            charging.api_session_stop(session=ApiSession.objects.get())
        self.assertEqual(self.remote_stops(), 2)
