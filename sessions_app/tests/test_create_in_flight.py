"""A create while its remote start waits for the station: its session is
committed before the start goes out, and no transaction is held open meanwhile.

The stand-in answers slowly (a `slow` fault on the operation); the create or stop
runs in a thread of its own, with its own database connection, as a request of
another client would.
"""

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

from polaris.testing import wait_until
from sessions_app import charging
from sessions_app.charging.stop import STOP_BEFORE_START
from sessions_app.models import ApiSession, AuditEntry
from sessions_app.tests.test_charging import REMOTE_START
from sync import services
from sync.client import given_or_new
from sync.models import Charger, SyncRun, UserMapping
from sync.tests.standin_case import PolarisAtStandinMixin

# Long enough to look at the session while the station "thinks"; the test waits
# for states, never for this time.
STATION_THINKS_S = 3.0


class InFlight:
    """`service(**kwargs)` running in a thread: `result` is what it returned,
    `error` what it raised."""

    def __init__(self, service: Callable[..., Any], **kwargs: Any) -> None:
        self.result: Any = None
        self.error: Exception | None = None
        self._thread = threading.Thread(
            target=self._run, args=(service,), kwargs=kwargs
        )
        self._thread.start()

    def _run(self, service: Callable[..., Any], **kwargs: Any) -> None:
        try:
            self.result = service(**kwargs)
        except Exception as error:  # handed to the test, which asserts on it
            self.error = error
        finally:
            connection.close()

    @property
    def waiting(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(timeout=STATION_THINKS_S + 30)
        assert not self._thread.is_alive(), "the service never returned"


def transactions_held_open() -> int:
    """Connections to the test database idle inside a transaction: one waiting
    for the station would be one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
            "current_database() AND state LIKE 'idle in transaction%%'"
        )
        return int(cursor.fetchone()[0])


class InFlightTests(PolarisAtStandinMixin, TransactionTestCase):
    def polaris_overrides(self) -> dict[str, Any]:
        return {"STEVE_TIMEOUT": 10}

    def setUp(self) -> None:
        users = get_user_model().objects
        self.alice = users.create_user("alice@example.com", "alice@example.com", "pw")
        self.bob = users.create_user("bob@example.com", "bob@example.com", "pw")
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0001", user=self.alice)
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0003", user=self.bob)
        # CP-001 takes remote starts; CP-003 refuses them (the stand-in's fleet).
        for box in ("CP-001", "CP-003"):
            Charger.objects.create(charge_box_id=box, connector_id=1)
        self.standin.set_fault(
            "slow", delay=STATION_THINKS_S, path_contains="RemoteStartTransaction"
        )

    def start_slowly(
        self, box: str = "CP-001", key: str = "", caller: Any = None
    ) -> InFlight:
        """Alice's create at `box` (by `caller`, default herself), once its
        session is committed and its start is out (so the test can look at
        both)."""
        in_flight = InFlight(
            charging.api_session_create,
            user=self.alice,
            charge_box_id=box,
            connector_id=1,
            idempotency_key=key,
            caller=caller,
        )
        wait_until(
            ApiSession.objects.filter(charge_box_id=box).exists,
            what="the session committed before the start's answer",
        )
        return in_flight

    def test_no_transaction_waits_for_the_station(self) -> None:
        in_flight = self.start_slowly()

        self.assertTrue(in_flight.waiting)
        self.assertEqual(transactions_held_open(), 0)
        session = ApiSession.objects.get()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertTrue(session.is_sending_first_start)

        in_flight.join()
        self.assertIsNone(in_flight.error)
        session.refresh_from_db()
        self.assertIsNotNone(session.remote_start_returned_at)
        self.assertFalse(session.is_sending_first_start)
        self.assertEqual(session.status_message, "")

    def test_another_create_for_the_connector_is_refused_at_once(self) -> None:
        in_flight = self.start_slowly()

        with self.assertRaisesMessage(
            charging.SessionConflict, "This connector already has a session"
        ):
            charging.api_session_create(
                user=self.bob, charge_box_id="CP-001", connector_id=1
            )
        # Refused while the first create still waited, not after it.
        self.assertTrue(in_flight.waiting)
        in_flight.join()
        self.assertIsNone(in_flight.error)

    def test_a_retry_with_the_same_key_waits_for_the_first_outcome(self) -> None:
        in_flight = self.start_slowly(key="retry-1")

        with self.assertRaisesMessage(
            charging.SessionConflict,
            "The first request with this Idempotency-Key is still waiting for the "
            "station to answer its start; retry in a few seconds.",
        ):
            charging.api_session_create(
                user=self.alice,
                charge_box_id="CP-001",
                connector_id=1,
                idempotency_key="retry-1",
            )
        self.assertTrue(in_flight.waiting)
        in_flight.join()
        assert in_flight.result is not None

        # Answered, the same retry replays the session.
        replay = charging.api_session_create(
            user=self.alice,
            charge_box_id="CP-001",
            connector_id=1,
            idempotency_key="retry-1",
        )
        self.assertTrue(replay.replayed)
        self.assertEqual(replay.session.pk, in_flight.result.session.pk)

    def test_a_refused_start_leaves_no_session(self) -> None:
        in_flight = self.start_slowly(box="CP-003")

        in_flight.join()
        self.assertIsInstance(in_flight.error, charging.SessionConflict)
        self.assertFalse(ApiSession.objects.exists())
        # The connector is free again.
        self.standin.clear_faults()
        with self.assertRaises(charging.SessionConflict) as refused:
            charging.api_session_create(
                user=self.bob, charge_box_id="CP-003", connector_id=1
            )
        self.assertNotIn("already has a session", refused.exception.message)

    def manager(self) -> Any:
        """Staff who may start and stop any customer's sessions."""
        manager = get_user_model().objects.create_user(
            "manager", "manager@example.com", "pw", is_staff=True
        )
        manager.user_permissions.add(
            Permission.objects.get(codename="manage_any_session")
        )
        return manager

    def on_behalf_entries(self) -> list[tuple[str, str]]:
        return list(
            AuditEntry.objects.filter(
                action=AuditEntry.Action.API_SESSION_CREATED_ON_BEHALF
            ).values_list("object_id", "after__status")
        )

    def test_a_start_for_someone_else_is_audited_with_its_session(self) -> None:
        # Not after the station's answer: a process that dies meanwhile would
        # leave a session, which the sync may see start, with no record of who.
        in_flight = self.start_slowly(caller=self.manager())

        session = ApiSession.objects.get()
        self.assertTrue(in_flight.waiting)
        self.assertEqual(self.on_behalf_entries(), [(str(session.pk), "created")])
        in_flight.join()
        self.assertIsNone(in_flight.error)
        self.assertEqual(self.on_behalf_entries(), [(str(session.pk), "created")])

    def test_a_refused_start_for_someone_else_leaves_no_audit_entry(self) -> None:
        # Nothing was started, as for a stop that fails.
        in_flight = self.start_slowly(box="CP-003", caller=self.manager())
        self.assertEqual(len(self.on_behalf_entries()), 1)

        in_flight.join()
        self.assertIsInstance(in_flight.error, charging.SessionConflict)
        self.assertFalse(ApiSession.objects.exists())
        self.assertEqual(self.on_behalf_entries(), [])

    def test_a_stop_while_the_start_waits_is_kept_whatever_the_answer(self) -> None:
        # Refused: the session its stop's caller was told of is cancelled, not
        # deleted.
        refused = self.start_slowly(box="CP-003", key="refused-1")
        kept = charging.api_session_stop(session=ApiSession.objects.get())
        self.assertEqual(kept.status_message, STOP_BEFORE_START)
        refused.join()
        self.assertIsInstance(refused.error, charging.SessionConflict)
        session = ApiSession.objects.get()
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        assert refused.error is not None
        self.assertEqual(session.status_message, str(refused.error))
        # The stop retried (its answer lost) gets the session, as the first did.
        again = charging.api_session_stop(session=session)
        self.assertEqual((again.pk, again.status), (session.pk, session.status))
        # The create was refused, so its key is free: a retry starts again
        # rather than replay the cancelled session.
        self.standin.clear_faults()
        with self.assertRaises(charging.SessionConflict):
            charging.api_session_create(
                user=self.alice,
                charge_box_id="CP-003",
                connector_id=1,
                idempotency_key="refused-1",
            )
        self.assertEqual(ApiSession.objects.count(), 1)
        self.standin.set_fault(
            "slow", delay=STATION_THINKS_S, path_contains="RemoteStartTransaction"
        )

        # Unanswered: the stop's message stays, as it says what happens next.
        self.standin.set_fault(
            "timeout_operation",
            delay=STATION_THINKS_S,
            path_contains="RemoteStartTransaction",
        )
        unanswered = self.start_slowly()
        stopped = charging.api_session_stop(
            session=ApiSession.objects.get(charge_box_id="CP-001")
        )
        self.assertEqual(stopped.status, ApiSession.Status.CREATED)
        unanswered.join()
        self.assertIsNone(unanswered.error)
        stopped.refresh_from_db()
        self.assertEqual(stopped.status_message, STOP_BEFORE_START)
        self.assertIsNotNone(stopped.remote_start_returned_at)

    def test_a_scheduled_start_seen_charging_while_it_waited_keeps_no_message(
        self,
    ) -> None:
        # A scheduled start goes out from one worker's advance; before the station
        # answers (here: never), the next sync and another worker's advance see
        # the charge begin. The unanswered start must not then say it is
        # unconfirmed on a session that is charging.
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            session = charging.api_session_create(
                user=self.alice,
                charge_box_id="CP-001",
                connector_id=1,
                target=charging.SessionTarget(start_at=start_at),
            ).session
        self.standin.clear_faults()
        self.standin.set_fault(
            "timeout_operation",
            delay=STATION_THINKS_S,
            path_contains="RemoteStartTransaction",
        )

        def advance() -> ApiSession:
            with given_or_new(None) as steve:
                return charging.api_session_advance(session_id=session.pk, client=steve)

        waiting = InFlight(advance)
        # The charge must begin after SteVe took the start: SteVe refuses a
        # start for a card that is charging. The session records the start as
        # sent just before the request goes out, and SteVe checks the card a
        # moment after it counts the request; on a busy machine that moment
        # can be long.
        wait_until(
            lambda: self.standin.state()["requests"].get(REMOTE_START, 0) == 1,
            what="the scheduled start received",
        )
        time.sleep(0.5)
        self.standin.add_transaction("CP-001", 1, "TAG-0001")
        with given_or_new(None) as steve:
            run = services.sync_run_transactions(trigger="command", client=steve)
            self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
            started = charging.api_session_advance(session_id=session.pk, client=steve)
        self.assertEqual(started.status, ApiSession.Status.STARTED)

        waiting.join()
        self.assertIsNone(waiting.error)
        started.refresh_from_db()
        self.assertEqual(started.status, ApiSession.Status.STARTED)
        self.assertEqual(started.status_message, "")
        self.assertIsNotNone(started.remote_start_returned_at)
