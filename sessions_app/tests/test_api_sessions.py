"""`/api/v1/sessions`: create, follow, stop, over HTTP, against the stand-in."""

import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.http import HttpResponse
from django.utils import timezone

from portal.models import Reservation
from sessions_app import charging
from sessions_app.api.selectors.matching import CLOCK_SKEW
from sessions_app.models import ApiSession, AuditEntry
from sessions_app.tests.test_charging import (
    REMOTE_START,
    REMOTE_STOP,
    ChargingTestCase,
    iso,
)
from sync.client import format_timestamp
from sync.models import Charger, TransactionSyncState, UserMapping
from sync.tests.factories import TransactionSyncStateFactory

STOPPING = "Stop requested; the session ends when the station reports it."


class ApiTestCase(ChargingTestCase):
    """Bearer tokens for the personas and a JSON client.

    `staff` has no permissions: it reads every session but starts and stops only
    its own. `manager` is staff with the permission to start and stop any
    customer's sessions."""

    alice_token: str
    bob_token: str
    staff_token: str
    manager: AbstractBaseUser
    manager_token: str

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.manager = get_user_model().objects.create_user(
            "manager", "manager@example.com", "pw", is_staff=True
        )
        cls.manager.user_permissions.add(
            Permission.objects.get(codename="manage_any_session")
        )
        cls.alice_token = cls.token(cls.alice)
        cls.bob_token = cls.token(cls.bob)
        cls.staff_token = cls.token(cls.staff)
        cls.manager_token = cls.token(cls.manager)

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        auth = {"Authorization": f"Bearer {token or self.alice_token}"}
        return self.client.generic(
            method,
            f"/api/v1{path}",
            data=json.dumps(body) if body is not None else "",
            content_type="application/json",
            headers={**auth, **(headers or {})},
        )

    def start(
        self,
        token: str | None = None,
        box: str = "CP-001",
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> HttpResponse:
        body = {"chargestation": box, "connector": 1, **body}
        return self.call("POST", "/sessions", token, body, headers=headers)

    def assert_error(self, response: HttpResponse, status: int, text: str) -> None:
        self.assertEqual(response.status_code, status, response.content)
        body = response.json()
        self.assertEqual(body["ok"], False)
        self.assertIn(text, body["message"])

    def result(self, response: HttpResponse, status: int = 200) -> dict[str, Any]:
        self.assertEqual(response.status_code, status, response.content)
        body = response.json()
        self.assertIs(body["ok"], True)
        result: dict[str, Any] = body["result"]
        return result

    def get(self, session_id: str, token: str | None = None) -> dict[str, Any]:
        return self.result(self.call("GET", f"/sessions/{session_id}", token))

    def advance_id(self, session_id: str) -> None:
        self.advance(ApiSession.objects.get(pk=int(session_id)))


class SessionLifecycleApiTests(ApiTestCase):
    def test_it_follows_a_session_from_created_to_ended(self) -> None:
        created = self.result(self.start(meta_data={"order": "A-17"}), 201)
        self.assertEqual(created["status"], "created")
        self.assertEqual(
            {key: created[key] for key in ("user", "chargestation", "connector")},
            {"user": str(self.alice.pk), "chargestation": "CP-001", "connector": "1"},
        )
        self.assertEqual(created["rate"], str(self.rate.pk))
        self.assertEqual(created["meta_data"], {"order": "A-17"})
        for empty in ("target", "metrics", "energy_report", "cost"):
            self.assertIsNone(created[empty], empty)
        self.assertEqual(created["charging_activity"], [])
        session_id = created["_id"]

        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        started = self.get(session_id)
        self.assertEqual(started["status"], "started")
        self.assertIsNone(started["metrics"]["chargingStop"])
        self.assertEqual(started["cost"]["currency"], "eur")
        self.assertEqual(
            [line["type"] for line in started["cost"]["breakdown"]],
            ["FLAT", "ENERGY", "TIME"],
        )

        self.standin.tick(600)
        self.advance_id(session_id)
        report = self.get(session_id)["energy_report"]
        self.assertEqual(
            set(report), {"timestamp", "current", "power", "energy_meter"}
        )  # CP-001 reports no state of charge
        self.assertEqual(report["current"]["unit"], "A")

        tx = TransactionSyncState.objects.get(api_sessions__pk=int(session_id))
        self.standin.station_stop(tx.steve_transaction_id)
        self.sync()
        # Between the sync that stored the stop and the advance that ends the
        # session, the session still says started and nothing contradicts it: its
        # metrics are final only once it has ended.
        stopping = self.get(session_id)
        self.assertEqual(stopping["status"], "started")
        self.assertIsNone(stopping["metrics"]["chargingStop"])
        self.advance_id(session_id)
        ended = self.get(session_id)
        tx.refresh_from_db()
        self.assertEqual(ended["status"], "ended")
        metrics = ended["metrics"]
        self.assertIsNotNone(metrics["chargingStop"])
        self.assertEqual(metrics["energyConsumed"], float(tx.kwh_delivered * 1000))
        self.assertGreater(metrics["energyConsumed"], 0)
        assert tx.stopped_at is not None
        self.assertEqual(
            metrics["energyPeriod"], int((tx.stopped_at - tx.started_at).seconds)
        )
        energy = next(
            line for line in ended["cost"]["breakdown"] if line["type"] == "ENERGY"
        )
        self.assertEqual(energy["quantity"], float(tx.kwh_delivered))
        self.assertEqual(energy["unit"], "kWh")
        self.assertEqual(energy["tax"], 20.0)
        self.assertEqual(
            ended["cost"]["amount"],
            round(sum(line["totalCost"] for line in ended["cost"]["breakdown"]), 4),
        )
        # Final: the same answer later.
        self.assertEqual(self.get(session_id)["cost"], ended["cost"])

    def test_targets_and_meta_data_are_returned_as_given(self) -> None:
        target = {"energy": 12.5, "time": 90, "cost": 8}
        created = self.result(self.start(target=target, meta_data={"a": [1, 2]}), 201)
        self.assertEqual(
            created["target"],
            {**target, "energy_start_time": None, "energy_stop_time": None},
        )
        self.assertEqual(created["meta_data"], {"a": [1, 2]})

    def test_meta_data_reads_the_same_on_create_and_every_get(self) -> None:
        sent = '{"zeta": 1, "a": 1e20, "b": -0.0, "c": 2.50}'
        response = self.client.post(
            "/api/v1/sessions",
            data=f'{{"chargestation": "CP-001", "connector": 1, "meta_data": {sent}}}',
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.alice_token}"},
        )
        self.assertEqual(response.status_code, 201, response.content)
        created = response.content.decode()
        got = self.call("GET", f"/sessions/{response.json()['result']['_id']}")
        meta_data = re.search(r'"meta_data": ?(\{[^}]*\})', created)
        assert meta_data is not None
        self.assertIn(meta_data[1], got.content.decode())
        self.assertEqual(json.loads(meta_data[1]), json.loads(sent))

    def test_a_retry_with_the_same_idempotency_key_returns_the_same_session(
        self,
    ) -> None:
        headers = {"Idempotency-Key": "order-17"}
        first = self.start(headers=headers)
        again = self.start(headers=headers)
        self.assertEqual(self.result(first, 201)["_id"], self.result(again, 201)["_id"])
        self.assertEqual(again["Idempotent-Replayed"], "true")
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        self.assertEqual(ApiSession.objects.count(), 1)
        other = self.start(box="CP-002", headers=headers)
        self.assert_error(other, 422, "different request")

    def test_a_retry_whose_meta_data_has_large_or_fractional_numbers_is_a_retry(
        self,
    ) -> None:
        # jsonb keeps 1e23 as the decimal it is written as, which reads back as
        # an integer the float 1e23 is not equal to.
        headers = {"Idempotency-Key": "order-21"}
        meta_data = {"n": 1e23, "x": [1.5e300, 0.1], "id": 7}
        first = self.result(self.start(headers=headers, meta_data=meta_data), 201)
        again = self.start(headers=headers, meta_data=meta_data)
        self.assertEqual(self.result(again, 201)["_id"], first["_id"])
        other = self.start(headers=headers, meta_data={**meta_data, "n": 2e23})
        self.assert_error(other, 422, "different request")

    def test_a_replay_does_not_announce_a_start_that_already_happened(self) -> None:
        headers = {"Idempotency-Key": "order-19"}
        session_id = self.result(self.start(headers=headers), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        again = self.start(headers=headers)
        self.assertEqual(self.result(again, 201)["status"], "started")
        # As GET says it: not "Session created; charging starts when …".
        self.assertEqual(again.json()["message"], "Result")

    def test_a_retry_replays_a_start_whose_request_died_once_it_charges(
        self,
    ) -> None:
        # The request that sent the start died before storing the answer; the
        # sync then saw the charge start. The retry is no longer "still waiting".
        headers = {"Idempotency-Key": "order-22"}
        session_id = self.result(self.start(headers=headers), 201)["_id"]
        ApiSession.objects.filter(pk=session_id).update(remote_start_returned_at=None)
        self.assert_error(self.start(headers=headers), 409, "still waiting")
        # Long past any answer: the retry learns when the sync settles it.
        sent_at = timezone.now() - timedelta(minutes=1)
        ApiSession.objects.filter(pk=session_id).update(
            created_at=sent_at, remote_start_sent_at=sent_at
        )
        self.assert_error(
            self.start(headers=headers),
            409,
            f"sent its start at {format_timestamp(sent_at)} and stopped before "
            "storing the station's answer; if charging has not started by "
            # The start window, and the station's clock running up to
            # CLOCK_SKEW behind: a charge it stamps then is still this start's.
            f"{format_timestamp(sent_at + timedelta(seconds=120) + CLOCK_SKEW)}, "
            "the next sync "
            "after it sends the start again. Retry after that.",
        )
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        again = self.start(headers=headers)
        self.assertEqual(self.result(again, 201)["_id"], session_id)
        self.assertEqual(again["Idempotent-Replayed"], "true")

    def test_the_same_key_with_other_targets_or_meta_data_is_refused(self) -> None:
        # Replaying the first session would drop what the second request asked
        # for (a 5 kWh limit read as the 0.3 kWh one) without saying so.
        headers = {"Idempotency-Key": "order-18"}
        body: dict[str, Any] = {
            "target": {"energy": 0.3, "time": 20},
            "meta_data": {"order": "A"},
        }
        first = self.result(self.start(headers=headers, **body), 201)
        # The same request, numbers written differently, is a retry.
        same = {**body, "target": {"energy": 0.300, "time": 20.0}}
        again = self.start(headers=headers, **same)
        self.assertEqual(self.result(again, 201)["_id"], first["_id"])
        start_at = iso(timezone.now() + timedelta(hours=1))
        for changed in (
            {**body, "target": {"energy": 5, "time": 20}},
            {**body, "target": {"energy": 0.3}},
            {**body, "target": {**body["target"], "energy_start_time": start_at}},
            {**body, "target": None},
            {**body, "meta_data": {"order": "B"}},
            {"target": body["target"]},
        ):
            response = self.start(headers=headers, **changed)
            self.assert_error(response, 422, "different request")
        self.assertEqual(ApiSession.objects.count(), 1)
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

    def test_the_same_key_of_another_user_is_another_session(self) -> None:
        headers = {"Idempotency-Key": "order-17"}
        self.result(self.start(headers=headers), 201)
        self.standin.station_stop(42)
        self.result(self.start(self.bob_token, box="CP-002", headers=headers), 201)
        self.assertEqual(ApiSession.objects.count(), 2)

    def test_a_key_is_the_callers_not_the_session_owners(self) -> None:
        headers = {"Idempotency-Key": "order-17"}
        alices = self.result(self.start(headers=headers), 201)
        session = self.begin_charging(ApiSession.objects.get(pk=alices["_id"]))
        self.standin.station_stop(self.steve_transaction(session)["id"])
        self.sync()
        self.advance(session)
        # Staff charge for Alice with the key she used: a key of their own.
        for_alice = self.start(
            self.manager_token, headers=headers, user="alice@example.com"
        )
        created = self.result(for_alice, 201)
        self.assertNotEqual(created["_id"], alices["_id"])
        self.assertNotIn("Idempotent-Replayed", for_alice)
        # Their key for another user is another request.
        self.standin.station_stop(42)
        for_bob = self.start(
            self.manager_token, box="CP-002", headers=headers, user="bob@example.com"
        )
        self.assert_error(for_bob, 422, "different request")

    def test_a_key_is_free_again_24_hours_after_its_session(self) -> None:
        headers = {"Idempotency-Key": "order-20"}
        first = self.result(self.start(headers=headers), 201)
        day_ago = timezone.now() - timedelta(hours=24, seconds=1)
        ApiSession.objects.filter(pk=first["_id"]).update(
            status="ended", created_at=day_ago
        )
        self.standin.station_stop(42)
        again = self.start(box="CP-002", headers=headers)
        self.assertNotEqual(self.result(again, 201)["_id"], first["_id"])
        self.assertNotIn("Idempotent-Replayed", again)

    def test_a_connector_with_a_session_in_progress_is_409(self) -> None:
        self.result(self.start(), 201)
        self.assert_error(self.start(self.bob_token), 409, "already has a session")
        self.assertEqual(ApiSession.objects.count(), 1)

    def test_a_second_create_of_the_same_user_is_told_the_first(self) -> None:
        first = self.result(self.start(), 201)["_id"]
        self.assert_error(
            self.start(),
            409,
            f"This connector already has session {first} of the same user "
            f"(created): GET /api/v1/sessions/{first} follows it, and "
            f"POST /api/v1/sessions/{first}/stop stops it.",
        )
        self.assertEqual(ApiSession.objects.count(), 1)

    def test_stop_ends_a_started_session(self) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        stopped = self.result(self.call("POST", f"/sessions/{session_id}/stop"))
        self.assertEqual(stopped["status"], "started")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        # Until the station's stop reaches the sync, GET says the stop is under
        # way, as the stop's own answer did.
        self.assertEqual(
            self.call("GET", f"/sessions/{session_id}").json()["message"], STOPPING
        )
        self.sync()
        self.advance_id(session_id)
        ended = self.call("GET", f"/sessions/{session_id}")
        self.assertEqual(self.result(ended)["status"], "ended")
        self.assertEqual(ended.json()["message"], "Result")
        # A retried stop (its answer lost) gets the session its stop ended.
        again = self.result(self.call("POST", f"/sessions/{session_id}/stop"))
        self.assertEqual(again["status"], "ended")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

    def test_a_stop_of_a_session_the_station_ended_is_409(self) -> None:
        session = self.begin_charging(
            ApiSession.objects.get(pk=self.result(self.start(), 201)["_id"])
        )
        self.standin.station_stop(self.steve_transaction(session)["id"])
        self.sync()
        self.advance(session)
        again = self.call("POST", f"/sessions/{session.pk}/stop")
        self.assert_error(again, 409, "already ended")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)

    def test_a_target_that_stops_the_charge_is_named_until_it_ends(self) -> None:
        session_id = self.result(self.start(target={"energy": 0.5}), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        self.standin.tick(900)  # at least 0.7 kWh: stations here draw 3 kW or more
        self.sync()
        self.advance_id(session_id)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        stopping = self.call("GET", f"/sessions/{session_id}")
        self.assertEqual(self.result(stopping)["status"], "started")
        self.assertEqual(
            stopping.json()["message"], f"Energy target reached. {STOPPING}"
        )
        listed = self.call("GET", "/sessions").json()["result"]["items"]
        self.assertEqual(listed[0], self.result(stopping))

    def test_a_repeated_stop_is_answered_like_the_first_and_sent_once(self) -> None:
        # An integrator retrying after its own timeout, or a double click: the
        # stop under way is the answer, and the station gets one RemoteStop.
        session_id = self.result(self.start(), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        first = self.call("POST", f"/sessions/{session_id}/stop")
        again = self.call("POST", f"/sessions/{session_id}/stop")
        self.assertEqual(self.result(again), self.result(first))
        self.assertEqual(again.json()["message"], STOPPING)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

    def test_a_stop_before_charging_begins_is_kept_until_it_begins(self) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        stop = self.call("POST", f"/sessions/{session_id}/stop")
        self.assertEqual(
            stop.json()["message"],
            "Stop requested before charging began: the charge is stopped as soon as "
            "the station starts it, and the session is cancelled if it does not "
            "start.",
        )
        self.assertEqual(self.result(stop)["status"], "created")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        self.sync()
        self.advance_id(session_id)
        self.assertEqual(self.get(session_id)["status"], "ended")

    def test_stopping_a_scheduled_session_cancels_it(self) -> None:
        start_at = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
        created = self.start(target={"energy_start_time": iso(start_at)})
        self.assertEqual(
            created.json()["message"],
            f"Session created; the remote start is sent at {format_timestamp(start_at)}"
            " (energy_start_time), and charging starts when the station reports it.",
        )
        session_id = self.result(created, 201)["_id"]
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        stopped = self.result(self.call("POST", f"/sessions/{session_id}/stop"))
        self.assertEqual(stopped["status"], "cancelled")
        # A retry, its first answer lost, gets the same.
        again = self.result(self.call("POST", f"/sessions/{session_id}/stop"))
        self.assertEqual(again, stopped)


class SessionUnconfirmedStartApiTests(ApiTestCase):
    def test_a_start_whose_answer_was_lost_is_kept_and_starts_with_the_station(
        self,
    ) -> None:
        # SteVe carries out the remote start but its answer arrives unreadable:
        # the station starts charging, so the session must exist to follow it.
        self.assert_a_lost_answer_is_followed("malformed")

    def test_a_start_steve_hung_up_on_is_kept_and_starts_with_the_station(
        self,
    ) -> None:
        # The connection closes before any answer: SteVe may have carried it out.
        self.assert_a_lost_answer_is_followed("hangup")

    def assert_a_lost_answer_is_followed(self, fault: str) -> None:
        self.standin.set_fault(fault, path_contains="RemoteStartTransaction")
        created = self.start()
        body = created.json()
        self.assertEqual(created.status_code, 201, body)
        self.assertIn("answer was lost", body["message"])
        self.assertEqual(body["result"]["status"], "created")
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        session_id = body["result"]["_id"]

        self.assertEqual(len(self.standin.tick()["started"]), 1)
        self.sync()
        self.advance_id(session_id)
        response = self.call("GET", f"/sessions/{session_id}")
        self.assertEqual(response.json()["message"], "Result")
        self.assertEqual(self.result(response)["status"], "started")

    def test_a_start_the_station_did_not_answer_in_time_is_kept(self) -> None:
        # taskFinished=false: SteVe stopped waiting, but the station may have
        # acted on the start, so the session must exist to follow it.
        self.standin.set_fault("timeout_operation", delay=0.1)
        created = self.start()
        body = created.json()
        self.assertEqual(created.status_code, 201, body)
        self.assertIn("did not answer in time", body["message"])
        self.assertIn("cancelled if charging does not start", body["message"])
        self.assertEqual(body["result"]["status"], "created")
        session_id = body["result"]["_id"]
        self.assertEqual(
            self.call("GET", f"/sessions/{session_id}").json()["message"],
            body["message"],
        )


class SessionUnconfirmedStopApiTests(ApiTestCase):
    def started(self) -> str:
        session_id: str = self.result(self.start(), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        self.assertEqual(self.get(session_id)["status"], "started")
        return session_id

    def test_a_stop_whose_answer_was_lost_counts_as_requested(self) -> None:
        # SteVe carries out the stop but the connection drops before its answer:
        # the station stops, so "not sent" would be untrue, and a retry is a 409.
        session_id = self.started()
        self.standin.set_fault("cut", path_contains="RemoteStopTransaction")
        stop = self.call("POST", f"/sessions/{session_id}/stop")
        body = stop.json()
        self.assertEqual(stop.status_code, 200, body)
        self.assertIn(
            "The stop was sent but the charging network's answer was lost",
            body["message"],
        )
        self.assertIn("sent again if charging goes on", body["message"])
        self.assertEqual(body["result"]["status"], "started")
        session = ApiSession.objects.get(pk=int(session_id))
        self.assertIsNotNone(session.stop_requested_at)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

        self.sync()
        self.advance_id(session_id)
        response = self.call("GET", f"/sessions/{session_id}")
        self.assertEqual(response.json()["message"], "Result")
        self.assertEqual(self.result(response)["status"], "ended")

    def test_a_stop_the_station_did_not_answer_in_time_counts_as_requested(
        self,
    ) -> None:
        session_id = self.started()
        self.standin.set_fault("timeout_operation", delay=0.1)
        stop = self.call("POST", f"/sessions/{session_id}/stop")
        body = stop.json()
        self.assertEqual(stop.status_code, 200, body)
        self.assertIn("did not answer in time", body["message"])
        self.assertEqual(
            self.call("GET", f"/sessions/{session_id}").json()["message"],
            body["message"],
        )
        session = ApiSession.objects.get(pk=int(session_id))
        self.assertIsNotNone(session.stop_requested_at)

    def test_a_stop_that_could_not_be_sent_is_502_and_not_requested(self) -> None:
        session_id = self.started()
        self.standin.set_fault("error", status=503, path_contains="RemoteStop")
        stop = self.call("POST", f"/sessions/{session_id}/stop")
        self.assert_error(stop, 502, "The stop could not be sent")
        session = ApiSession.objects.get(pk=int(session_id))
        self.assertIsNone(session.stop_requested_at)
        # Nothing is under way, so the next stop is sent.
        self.result(self.call("POST", f"/sessions/{session_id}/stop"))
        self.assertEqual(self.steve_requests(REMOTE_STOP), 2)


class SessionAccessApiTests(ApiTestCase):
    def test_another_customers_session_is_404(self) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        for method, path in (
            ("GET", f"/sessions/{session_id}"),
            ("POST", f"/sessions/{session_id}/stop"),
        ):
            self.assert_error(self.call(method, path, self.bob_token), 404, "No such")
        self.assertEqual(self.get(session_id, self.staff_token)["_id"], session_id)

    def test_unknown_ids_are_404(self) -> None:
        for session_id in ("999999", "abc", "9" * 40):
            response = self.call("GET", f"/sessions/{session_id}")
            self.assert_error(response, 404, "No such session")

    def test_staff_with_the_permission_can_start_a_session_for_a_user(self) -> None:
        created = self.start(self.manager_token, user=str(self.alice.pk))
        self.assertEqual(self.result(created, 201)["user"], str(self.alice.pk))
        session = ApiSession.objects.get()
        self.assertEqual(session.id_tag, "TAG-0001")

    def test_staff_may_name_a_user_whose_username_is_digits(self) -> None:
        numbered = get_user_model().objects.create_user("987654", "n@example.com")
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=numbered)
        created = self.start(self.manager_token, user="987654")
        self.assertEqual(self.result(created, 201)["user"], str(numbered.pk))

    def test_digits_that_are_one_users_id_and_anothers_username_are_refused(
        self,
    ) -> None:
        # Read as the id alone, they charged that user for the other's request.
        clash = get_user_model().objects.create_user(str(self.alice.pk))
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=clash)
        refusal = (
            f'"{self.alice.pk}" is the id of one user and the username of another: '
            f'give id {clash.pk} for the user named "{self.alice.pk}", or the '
            f"username of the user with id {self.alice.pk}."
        )
        response = self.start(self.manager_token, user=str(self.alice.pk))
        self.assert_error(response, 422, refusal)
        # Nor once the user with that id is deactivated, nor when they are the
        # staff member asking.
        get_user_model().objects.filter(pk=self.alice.pk).update(is_active=False)
        response = self.start(self.manager_token, user=str(self.alice.pk))
        self.assert_error(response, 422, refusal)
        clash.username = str(self.manager.pk)
        clash.save()
        response = self.start(self.manager_token, user=str(self.manager.pk))
        self.assert_error(response, 422, f'"{self.manager.pk}" is the id of one user')
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_customer_may_name_themselves_by_id_or_username(self) -> None:
        self.standin.station_stop(42)  # frees CP-002
        for box, user in (
            ("CP-001", str(self.alice.pk)),
            ("CP-002", "alice@example.com"),
        ):
            with self.subTest(user=user):
                created = self.start(self.alice_token, box=box, user=user)
                self.assertEqual(self.result(created, 201)["user"], str(self.alice.pk))

    def test_a_customer_cannot_start_a_session_for_someone_else(self) -> None:
        response = self.start(self.alice_token, user=str(self.bob.pk))
        self.assert_error(response, 404, "No such user")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)


class SessionOnBehalfApiTests(ApiTestCase):
    """Staff start and stop other users' sessions only with the permission
    `sessions_app.manage_any_session`, and every such write is audited."""

    FORBIDDEN = (
        "Your account may not start or stop other customers' sessions: it needs "
        'the permission "Can start and stop any customer\'s API sessions" '
        "(sessions_app.manage_any_session)"
    )

    def started(self, token: str | None = None) -> str:
        session_id: str = self.result(self.start(token), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        self.assertEqual(self.get(session_id, token)["status"], "started")
        return session_id

    def on_behalf_entries(self) -> list[AuditEntry]:
        return list(
            AuditEntry.objects.filter(action__startswith="api_session.").order_by("id")
        )

    def test_staff_without_it_cannot_start_a_session_for_someone_else(self) -> None:
        for user in (str(self.alice.pk), "alice@example.com"):
            with self.subTest(user=user):
                response = self.start(self.staff_token, user=user)
                self.assert_error(response, 403, self.FORBIDDEN)
        self.assertFalse(ApiSession.objects.exists())
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        self.assertEqual(self.on_behalf_entries(), [])

    def test_staff_without_it_may_still_start_their_own(self) -> None:
        self.standin.station_stop(42)  # frees CP-002
        for box, user in (("CP-001", None), ("CP-002", "staff")):
            with self.subTest(user=user):
                body = {} if user is None else {"user": user}
                created = self.start(self.staff_token, box=box, **body)
                self.assertEqual(self.result(created, 201)["user"], str(self.staff.pk))
        self.assertEqual(self.on_behalf_entries(), [])

    def test_staff_without_it_cannot_stop_someone_elses_session(self) -> None:
        session_id = self.started(self.alice_token)
        before = ApiSession.objects.get(pk=int(session_id))

        response = self.call("POST", f"/sessions/{session_id}/stop", self.staff_token)

        self.assert_error(response, 403, self.FORBIDDEN)
        after = ApiSession.objects.get(pk=int(session_id))
        self.assertEqual(
            (after.status, after.stop_requested_at, after.status_message),
            (before.status, None, before.status_message),
        )
        self.assertEqual(after.updated_at, before.updated_at)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.assertEqual(self.on_behalf_entries(), [])
        # Reading it stays open to every staff member.
        self.assertEqual(self.get(session_id, self.staff_token)["status"], "started")
        listed = self.result(self.call("GET", "/sessions", self.staff_token))
        self.assertEqual([item["_id"] for item in listed["items"]], [session_id])

    def test_staff_without_it_cannot_cancel_someone_elses_scheduled_session(
        self,
    ) -> None:
        start_at = timezone.now() + timedelta(hours=1)
        created = self.start(target={"energy_start_time": iso(start_at)})
        session_id = self.result(created, 201)["_id"]

        response = self.call("POST", f"/sessions/{session_id}/stop", self.staff_token)

        self.assert_error(response, 403, self.FORBIDDEN)
        self.assertEqual(self.get(session_id)["status"], "created")
        self.assertEqual(self.on_behalf_entries(), [])

    def test_a_charger_the_customer_may_not_use_is_422_in_their_name(self) -> None:
        # Staff see every charger, so "there is no charger" would be untrue.
        Charger.objects.filter(charge_box_id="CP-001").update(is_public=False)
        response = self.start(self.manager_token, user="alice@example.com")
        self.assert_error(
            response,
            422,
            "alice@example.com may not charge at CP-001 connector 1: it is not a "
            "public charger, and none of their charger groups holds it.",
        )
        # Alice herself is not told it exists.
        self.assert_error(
            self.start(self.alice_token), 404, "There is no charger CP-001"
        )
        self.assertFalse(ApiSession.objects.exists())
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_staff_with_it_start_a_session_for_someone_else_and_it_is_audited(
        self,
    ) -> None:
        created = self.start(self.manager_token, user="alice@example.com")

        session_id = self.result(created, 201)["_id"]
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        [entry] = self.on_behalf_entries()
        self.assertEqual(
            (entry.actor, entry.action, entry.object_type, entry.object_id),
            (
                self.manager,
                AuditEntry.Action.API_SESSION_CREATED_ON_BEHALF,
                "api_session",
                session_id,
            ),
        )
        self.assertEqual(entry.source, "api")
        self.assertIsNone(entry.before)
        self.assertEqual(
            entry.after,
            {
                "customer": "alice@example.com",
                "customer_id": self.alice.pk,
                "chargestation": "CP-001",
                "connector": 1,
                "status": "created",
            },
        )

    def test_a_replayed_start_for_someone_else_is_audited_once(self) -> None:
        headers = {"Idempotency-Key": "support-1"}
        for _ in range(2):
            self.start(self.manager_token, headers=headers, user="alice@example.com")
        self.assertEqual(len(self.on_behalf_entries()), 1)

    def test_staff_with_it_stop_someone_elses_session_and_it_is_audited(
        self,
    ) -> None:
        session_id = self.started(self.alice_token)

        stop = self.call("POST", f"/sessions/{session_id}/stop", self.manager_token)

        self.assertEqual(self.result(stop)["status"], "started")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        session = ApiSession.objects.get(pk=int(session_id))
        self.assertIsNotNone(session.stop_requested_at)
        [entry] = self.on_behalf_entries()
        self.assertEqual(
            (entry.actor, entry.action, entry.object_id, entry.source),
            (
                self.manager,
                AuditEntry.Action.API_SESSION_STOPPED_ON_BEHALF,
                session_id,
                "api",
            ),
        )
        self.assertEqual(entry.before, {"status": "started"})
        self.assertEqual(entry.after["customer"], "alice@example.com")
        self.assertEqual(entry.after["customer_id"], self.alice.pk)
        self.assertEqual(entry.after["status"], "started")

    def test_a_repeated_stop_for_someone_else_is_audited_once(self) -> None:
        # The second finds the stop requested already (its caller lost the first
        # answer): nothing more goes out, and nothing more is recorded.
        session_id = self.started(self.alice_token)
        for _ in range(2):
            stop = self.call("POST", f"/sessions/{session_id}/stop", self.manager_token)
            self.assertEqual(self.result(stop)["status"], "started")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        self.assertEqual(len(self.on_behalf_entries()), 1)

    def test_a_stop_audits_the_status_it_found_not_the_one_its_caller_read(
        self,
    ) -> None:
        session_id = self.result(self.start(self.alice_token), 201)["_id"]
        read = ApiSession.objects.get(pk=int(session_id))
        # The sync sees the charge start after the caller read the session.
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)

        charging.api_session_stop(session=read, caller=self.manager, client=self.steve)

        [entry] = self.on_behalf_entries()
        self.assertEqual(entry.before, {"status": "started"})
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

    def test_a_stop_that_fails_for_someone_else_is_not_audited(self) -> None:
        session_id = self.started(self.alice_token)
        self.standin.set_fault("error", status=503, path_contains="RemoteStop")
        stop = self.call("POST", f"/sessions/{session_id}/stop", self.manager_token)
        self.assert_error(stop, 502, "The stop could not be sent")
        self.assertEqual(self.on_behalf_entries(), [])

    def test_a_superuser_has_the_permission_without_it_being_granted(self) -> None:
        root = get_user_model().objects.create_superuser(
            "root", "root@example.com", "pw"
        )
        created = self.start(self.token(root), user=str(self.alice.pk))
        self.assertEqual(self.result(created, 201)["user"], str(self.alice.pk))
        [entry] = self.on_behalf_entries()
        self.assertEqual(entry.actor, root)

    def test_a_customers_writes_on_their_own_sessions_are_not_audited(self) -> None:
        session_id = self.started(self.alice_token)
        self.result(self.call("POST", f"/sessions/{session_id}/stop"))
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        self.assertFalse(AuditEntry.objects.exists())

    def test_staff_with_it_writing_on_their_own_sessions_are_not_audited(
        self,
    ) -> None:
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=self.manager)
        session_id = self.started(self.manager_token)
        self.result(
            self.call("POST", f"/sessions/{session_id}/stop", self.manager_token)
        )
        self.assertFalse(AuditEntry.objects.exists())


class SessionRefusalApiTests(ApiTestCase):
    def post_raw(self, body: str, content_type: str) -> HttpResponse:
        """POST /sessions with `body` as it is, not encoded from a dict."""
        return self.client.post(
            "/api/v1/sessions",
            data=body,
            content_type=content_type,
            headers={"Authorization": f"Bearer {self.alice_token}"},
        )

    def assert_refused(self, response: HttpResponse, status: int, text: str) -> None:
        self.assert_error(response, status, text)
        self.assertFalse(ApiSession.objects.exists())

    def test_a_value_its_field_does_not_take_is_said_in_words(self) -> None:
        # Not "String should match pattern '^[^\x00-…'": the rule itself.
        self.assert_refused(
            self.start(box="CP/1"),
            422,
            "chargestation: must be a chargeBoxId: 1 to 255 characters",
        )
        response = self.start(headers={"Idempotency-Key": "has space"})
        self.assert_refused(response, 422, "Idempotency-Key: must be 1 to 255")
        response = self.call("GET", "/sessions?cursor=!!")
        self.assert_error(response, 422, "cursor: must be a next_cursor this API gave")
        for response in (
            self.start(box="CP/1"),
            self.call("GET", "/sessions?cursor=!!"),
        ):
            self.assertNotIn("pattern", response.json()["message"])

    def test_an_offline_station_is_409(self) -> None:
        self.assert_refused(self.start(box="CP-004"), 409, "offline")

    def test_a_rejected_remote_start_is_409(self) -> None:
        self.assert_refused(self.start(box="CP-003"), 409, "refused to start")

    def test_a_rejected_start_names_what_polaris_saw_holding_the_connector(
        self,
    ) -> None:
        # CP-003's station refuses every RemoteStart, giving no reason (OCPP's
        # Rejected): the answer says what Polaris saw there, as the portal does.
        refused = "The charge station refused to start charging: "
        self.assert_refused(
            self.start(box="CP-003"),
            409,
            f"{refused}the connector may be in use, reserved or not ready.",
        )
        reservation = self.bobs_reservation("CP-003")
        self.assert_refused(
            self.start(box="CP-003"),
            409,
            f"{refused}CP-003 #1 is reserved by someone else until "
            f"{format_timestamp(reservation.ends_at)}.",
        )
        # Alice's own card charging there (started at the station) is hers.
        own = TransactionSyncStateFactory(
            charge_box_id="CP-003", connector_id=1, ocpp_id_tag="TAG-0001"
        )
        self.assert_refused(self.start(box="CP-003"), 409, "is reserved by someone")
        own.delete()
        TransactionSyncStateFactory(
            charge_box_id="CP-003", connector_id=1, ocpp_id_tag="TAG-0003"
        )
        self.assert_refused(
            self.start(box="CP-003"),
            409,
            f"{refused}someone else is charging at CP-003 #1 right now.",
        )

    def bobs_reservation(self, box: str) -> Reservation:
        """Bob's reservation of `box` #1, from now for half an hour."""
        now = timezone.now()
        return Reservation.objects.create(
            user=self.bob,
            charger=Charger.objects.get(charge_box_id=box, connector_id=1),
            id_tag="TAG-0003",
            starts_at=now,
            ends_at=now + timedelta(minutes=30),
        )

    def test_a_card_mapped_in_polaris_but_unknown_to_steve_is_named_as_such(
        self,
    ) -> None:
        # Staff mapped a new card before it was registered in SteVe: SteVe says
        # only that the tag is not eligible, as for a blocked one.
        UserMapping.objects.filter(user=self.alice).update(
            steve_ocpp_id_tag="TAG-NEW-CARD"
        )
        self.assert_refused(
            self.start(), 422, "the charging network does not know it yet"
        )

    def test_a_card_holds_one_scheduled_session_at_a_time(self) -> None:
        # As it holds one reservation: scheduled sessions hold their connectors
        # before anything reaches a station, and one card could hold them all.
        self.standin.station_stop(42)  # frees CP-002
        start_at = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
        scheduled = {"energy_start_time": iso(start_at)}
        first = self.result(self.start(target=scheduled), 201)

        self.assert_error(
            self.start(box="CP-002", target=scheduled),
            409,
            "Your card holds a scheduled session already (TAG-0001 at CP-001 #1 "
            f"from {format_timestamp(start_at)}): a card holds one at a time",
        )
        self.assertEqual(ApiSession.objects.count(), 1)

        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=self.alice)
        second = self.result(self.start(box="CP-002", target=scheduled), 201)
        self.assertEqual(self.id_tag_of(second), "TAG-0002")
        # Cancelling one gives its card back.
        self.result(self.call("POST", f"/sessions/{first['_id']}/stop"))
        third = self.result(self.start(target=scheduled), 201)
        self.assertEqual(self.id_tag_of(third), "TAG-0001")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_scheduled_session_is_refused_where_someone_else_holds_a_reservation(
        self,
    ) -> None:
        # Stored, it held the connector from its create: the reservation's holder
        # was refused their Start there, and the station refused the scheduled
        # start when it came.
        reservation = self.bobs_reservation("CP-001")
        start_at = timezone.now() + timedelta(hours=1)
        self.assert_refused(
            self.start(target={"energy_start_time": iso(start_at)}),
            409,
            "CP-001 #1 is reserved by someone else until "
            f"{format_timestamp(reservation.ends_at)}, and a scheduled session "
            "holds its connector from when it is created: create it after then.",
        )
        # Bob's own reservation is no obstacle to his own scheduled session.
        bobs = self.start(self.bob_token, target={"energy_start_time": iso(start_at)})
        self.assertEqual(self.result(bobs, 201)["status"], "created")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_start_now_beside_a_scheduled_session_is_the_stations_to_refuse(
        self,
    ) -> None:
        # A fleet card may run many charges at once: only SteVe knows.
        self.standin.station_stop(42)  # frees CP-002
        start_at = timezone.now() + timedelta(hours=1)
        self.result(self.start(target={"energy_start_time": iso(start_at)}), 201)
        started = self.result(self.start(box="CP-002"), 201)
        self.assertEqual(self.id_tag_of(started), "TAG-0001")
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

    def id_tag_of(self, session: dict[str, Any]) -> str:
        return ApiSession.objects.get(pk=int(session["_id"])).id_tag

    def test_steve_failing_is_502(self) -> None:
        self.standin.set_fault("error", status=503, path_contains="operations")
        self.assert_refused(self.start(), 502, "could not be sent")

    def test_an_unknown_charger_is_404(self) -> None:
        self.assert_refused(self.start(box="CP-999"), 404, "no charger CP-999")

    def test_a_user_without_a_tag_is_422(self) -> None:
        UserMapping.objects.filter(user=self.alice).delete()
        self.assert_refused(self.start(), 422, "no active charging card")

    def test_invalid_bodies_are_422_and_malformed_json_400(self) -> None:
        # Fields are named as the integrator sent them, without our parameter name.
        self.assert_refused(
            self.start(connector=0), 422, "Invalid request: connector: Input should"
        )
        self.assert_refused(self.start(target={"energy": -1}), 422, "target.energy")
        self.assert_refused(
            self.start(target={"time": True}), 422, "Invalid request: target.time: "
        )
        response = self.post_raw("{not json", "application/json")
        self.assert_refused(response, 400, "The request body is not JSON")
        # No body at all is not a JSON object either.
        response = self.call("POST", "/sessions")
        self.assert_refused(
            response, 400, "The request body is empty: send a JSON object."
        )

    def test_a_key_given_twice_is_422_and_starts_nothing(self) -> None:
        # Read as the last one, it started a charge at a station chosen by guess.
        for body, key in (
            (
                '{"chargestation": "CP-001", "connector": 1, '
                '"chargestation": "CP-002"}',
                "chargestation",
            ),
            (
                '{"chargestation": "CP-001", "connector": 1, '
                '"meta_data": {"ref": "a", "ref": "b"}}',
                "ref",
            ),
        ):
            with self.subTest(key=key):
                response = self.post_raw(body, "application/json")
                self.assert_refused(
                    response,
                    422,
                    f'The request body gives "{key}" more than once: give each '
                    "field once.",
                )
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_body_declared_as_another_type_is_415_and_starts_nothing(self) -> None:
        body = '{"chargestation": "CP-001", "connector": 1}'
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
        ):
            with self.subTest(content_type=content_type):
                response = self.post_raw(body, content_type)
                self.assert_refused(
                    response,
                    415,
                    f"The request body is sent as {content_type}, which this API "
                    "does not read: send a JSON object with Content-Type: "
                    "application/json.",
                )
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        # JSON by another name, and a body that names no type, are read as JSON:
        # this one's charger is found offline.
        for content_type in ("application/merge-patch+json", ""):
            with self.subTest(content_type=content_type):
                response = self.client.post(
                    "/api/v1/sessions",
                    data=body.replace("CP-001", "CP-004"),
                    content_type=content_type,
                    headers={"Authorization": f"Bearer {self.alice_token}"},
                )
                self.assert_refused(response, 409, "offline")

    def test_meta_data_postgres_cannot_store_is_422(self) -> None:
        self.assert_refused(
            self.start(meta_data={"a": "x\x00y"}),
            422,
            "Invalid request: meta_data: must not contain NUL characters.",
        )

    def test_a_query_parameter_is_refused_on_every_endpoint(self) -> None:
        self.assert_refused(
            self.call(
                "POST",
                "/sessions?dry_run=1",
                body={"chargestation": "CP-001", "connector": 1},
            ),
            422,
            "Unknown query parameter: dry_run. This endpoint takes none.",
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        session_id = self.result(self.start(), 201)["_id"]
        for method, path in (
            ("GET", f"/sessions/{session_id}?expand=1"),
            ("POST", f"/sessions/{session_id}/stop?force=1"),
        ):
            self.assert_error(self.call(method, path), 422, "Unknown query parameter")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)

    def test_a_body_too_deep_to_read_is_400_in_our_words(self) -> None:
        response = self.post_meta_data("[" * 100_000 + "]" * 100_000)
        self.assert_refused(
            response, 400, "The request body is nested too deeply to read"
        )

    def test_a_number_too_long_to_read_is_400_in_our_words(self) -> None:
        response = self.post_meta_data('{"n": ' + "9" * 5000 + "}")
        self.assert_refused(
            response, 400, "The request body has a number too long to read"
        )

    def post_meta_data(self, meta_data: str) -> HttpResponse:
        return self.client.post(
            "/api/v1/sessions",
            data=f'{{"chargestation": "CP-001", "connector": 1, "meta_data": '
            f"{meta_data}}}",
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.alice_token}"},
        )

    def test_meta_data_nested_too_deep_is_422(self) -> None:
        for levels in (33, 999):
            response = self.post_meta_data(
                '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)
            )
            self.assert_refused(
                response, 422, "meta_data: is nested more than 32 levels deep."
            )
        deepest = '{"a": [' * 16 + "1" + "]}" * 16
        self.assertEqual(self.post_meta_data(deepest).status_code, 201)

    def test_meta_data_over_16_kb_is_422(self) -> None:
        # 16,384 bytes as compact JSON: {"a":"…"} takes 8 around the text.
        too_big = json.dumps({"a": "é" * 8189})
        self.assert_refused(
            self.post_meta_data(too_big),
            422,
            "meta_data: is 16386 bytes as JSON, more than the 16384 it may be.",
        )
        self.assertEqual(
            self.post_meta_data(json.dumps({"a": "x" * 16376})).status_code, 201
        )

    def test_a_lone_surrogate_in_meta_data_is_422(self) -> None:
        # json.dumps writes a lone surrogate as the escape "\ud800", which JSON
        # allows and PostgreSQL's jsonb refuses.
        for meta_data in ({"a": "\ud800"}, {"\udfff": 1}, {"a": [{"b": "x\ud83d"}]}):
            self.assert_refused(self.start(meta_data=meta_data), 422, "lone surrogate")

    def test_a_target_that_is_not_an_object_is_422(self) -> None:
        for target in ('{"energy": 0.1}', "abc", [1], True, 5):
            response = self.start(target=target)
            self.assert_refused(response, 422, "target: must be an object")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_targets_and_the_connector_take_numbers_not_booleans_or_text(
        self,
    ) -> None:
        for target in ({"time": True}, {"energy": "5"}, {"cost": False}):
            response = self.start(target=target)
            self.assert_refused(response, 422, "Input should be a valid number")
        self.assert_refused(self.start(connector=True), 422, "valid integer")
        self.assert_refused(self.start(connector=1.5), 422, "valid integer")
        for text in ("one", "1.0", " 1", "+1", ""):
            self.assert_refused(self.start(connector=text), 422, "connector: ")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_the_connector_may_be_sent_as_the_session_object_gives_it(self) -> None:
        # The session object's connector is a string (the seed's type): an
        # integrator who sends it back as read starts on that connector.
        created = self.result(self.start(connector="1"), 201)
        self.assertEqual(created["connector"], "1")
        self.assertEqual(ApiSession.objects.get().connector_id, 1)

    def test_a_whole_number_written_with_a_fraction_is_the_connector(self) -> None:
        # JSON Schema's integer, as the OpenAPI document declares the connector.
        created = self.result(self.start(connector=1.0), 201)
        self.assertEqual(created["connector"], "1")

    def test_a_field_the_body_or_target_does_not_have_is_422(self) -> None:
        # Ignored, each would start a charge without the limit the caller meant.
        self.assert_refused(
            self.start(target={"energy_kwh": 10}),
            422,
            "Invalid request: target.energy_kwh: Extra inputs are not permitted",
        )
        self.assert_refused(
            self.start(targets={"energy": 10}),
            422,
            "Invalid request: targets: Extra inputs are not permitted",
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_target_that_would_be_stored_as_zero_is_422(self) -> None:
        for name, value in (("time", 0.001), ("cost", 0.00001), ("energy", 0.0004)):
            response = self.start(target={name: value})
            self.assert_refused(response, 422, f"target.{name}")

    def test_a_start_time_more_than_24_hours_ahead_is_422(self) -> None:
        far = iso(timezone.now() + timedelta(hours=25))
        response = self.start(target={"energy_start_time": far})
        self.assert_refused(response, 422, "at most 24 hours")
        near = iso(timezone.now() + timedelta(hours=23))
        self.result(self.start(target={"energy_start_time": near}), 201)

    def test_a_start_time_long_past_is_422_and_a_recent_one_starts_at_once(
        self,
    ) -> None:
        stale = iso(timezone.now() - timedelta(minutes=16))
        response = self.start(target={"energy_start_time": stale})
        self.assert_refused(response, 422, "more than 15 minutes in the past")
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

        recent = (timezone.now() - timedelta(minutes=5)).replace(microsecond=0)
        created = self.start(target={"energy_start_time": iso(recent)})
        self.assertEqual(
            created.json()["message"],
            f"Session created; energy_start_time ({format_timestamp(recent)}) had "
            "passed, so the remote start was sent at once, and charging starts "
            "when the station reports it.",
        )
        self.assertEqual(self.result(created, 201)["status"], "created")
        self.assertEqual(self.steve_requests(REMOTE_START), 1)


class SessionDocumentTests(ApiTestCase):
    # SteVe's and the seed's form: UTC, three digits of milliseconds, Z.
    TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

    def test_every_timestamp_has_milliseconds_even_when_they_are_zero(self) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        tx = TransactionSyncState.objects.get(api_sessions__pk=int(session_id))
        whole_second = tx.started_at.replace(microsecond=0) + timedelta(seconds=1)
        TransactionSyncState.objects.filter(pk=tx.pk).update(started_at=whole_second)
        ApiSession.objects.filter(pk=int(session_id)).update(
            created_at=whole_second, updated_at=whole_second
        )
        document = self.get(session_id)
        stamps = [
            document["createdAt"],
            document["updatedAt"],
            document["metrics"]["chargingStart"],
            document["energy_report"]["timestamp"],
            *(
                p[key]
                for p in document["charging_activity"]
                for key in ("startTime", "endTime")
            ),
        ]
        for stamp in stamps:
            self.assertRegex(stamp, self.TIMESTAMP)
        self.assertEqual(
            document["createdAt"], f"{whole_second:%Y-%m-%dT%H:%M:%S}.000Z"
        )
        self.assertEqual(document["metrics"]["chargingStart"], document["createdAt"])

    def test_tax_and_state_of_charge_are_integers(self) -> None:
        self.standin.station_stop(42)  # frees CP-002, whose station reports SoC
        session_id = self.result(self.start(self.bob_token, box="CP-002"), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.standin.tick(120)
        self.advance_id(session_id)
        document = self.get(session_id, self.bob_token)
        soc = document["energy_report"]["state_of_charge"]
        self.assertIs(type(soc["value"]), int)
        taxes = [line["tax"] for line in document["cost"]["breakdown"]]
        self.assertEqual(taxes, [20, 20, 20])
        self.assertTrue(all(type(tax) is int for tax in taxes))

    def test_energy_period_and_cost_run_to_the_latest_reading_not_the_clock(
        self,
    ) -> None:
        session_id = self.result(self.start(), 201)["_id"]
        self.standin.tick()
        self.sync()
        self.advance_id(session_id)
        self.standin.tick(300)
        self.advance_id(session_id)
        document = self.get(session_id)
        metrics = document["metrics"]
        start = datetime.fromisoformat(metrics["chargingStart"])
        latest = datetime.fromisoformat(document["charging_activity"][-1]["endTime"])
        self.assertGreater(latest, start)
        self.assertEqual(metrics["energyPeriod"], int((latest - start).total_seconds()))
        breakdown = {line["type"]: line for line in document["cost"]["breakdown"]}
        for line in breakdown.values():
            self.assertEqual(
                line["period"],
                {
                    "startTime": int(start.timestamp() * 1000),
                    "endTime": int(latest.timestamp() * 1000),
                },
            )
        self.assertAlmostEqual(
            breakdown["ENERGY"]["quantity"] * 1000, metrics["energyConsumed"]
        )
        # An hour on, with no new reading, the session has not changed.
        with time_machine.travel(timezone.now() + timedelta(hours=1), tick=False):
            self.assertEqual(self.get(session_id), document)

    def test_the_ids_are_strings_as_the_seed_says(self) -> None:
        # _id, user, chargestation, connector and rate: "string" in the seed.
        document = self.result(self.start(), 201)
        for key in ("_id", "user", "chargestation", "connector", "rate"):
            self.assertIs(type(document[key]), str, key)
        self.assertEqual(document["connector"], "1")
        listed = self.result(self.call("GET", "/sessions"))["items"][0]
        self.assertEqual(listed["connector"], "1")

    def test_a_created_session_has_a_location(self) -> None:
        created = self.start()
        session_id = self.result(created, 201)["_id"]
        self.assertEqual(created["Location"], f"/api/v1/sessions/{session_id}")
        self.assertEqual(self.get(session_id)["_id"], session_id)


class SessionDecimalTests(ApiTestCase):
    def test_targets_keep_their_precision(self) -> None:
        self.result(self.start(target={"energy": 10.1234, "cost": 3.33333}), 201)
        session = ApiSession.objects.get()
        self.assertEqual(session.target_energy_kwh, Decimal("10.123"))
        self.assertEqual(session.target_cost, Decimal("3.3333"))

    def test_a_finer_maximum_is_rounded_down_never_up(self) -> None:
        created = self.start(target={"time": 0.019, "energy": 0.0019, "cost": 3.99999})
        self.assertEqual(
            self.result(created, 201)["target"],
            {
                "time": 0.01,
                "cost": 3.9999,
                "energy": 0.001,
                "energy_start_time": None,
                "energy_stop_time": None,
            },
        )
