"""The API-session services against the SteVe stand-in over real HTTP.

`ChargingTestCase` is also the base of the API tests: it seeds personas (alice and
bob, customers; staff), their tags, the chargers of the stand-in's fleet and a
default rate, and points Polaris's SteVe settings at the stand-in.

The stand-in is reset without scenarios: CP-001 is idle, CP-002 charges
transaction 42 for an unmapped tag, CP-003 rejects remote starts, CP-004 is offline.
A remote start the station accepted begins on the next `standin.tick()`.
"""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import OperationalError
from django.test import SimpleTestCase, TestCase, override_settings
from django.utils import timezone
from django_eventstream.eventstream import get_storage

from polaris.celery import app as celery_app
from polaris.live import customer_channel
from portal.models import ChargerGroup, Reservation
from sessions_app import charging
from sessions_app.api.selectors.matching import (
    CLOCK_SKEW,
    api_session_matching_transaction,
)
from sessions_app.api.selectors.sessions import (
    api_session_document,
    api_session_metered,
)
from sessions_app.charging.lifecycle import _send_claimed_start
from sessions_app.charging.stop import STOP_BEFORE_START, STOP_UNDER_WAY, _stop
from sessions_app.models import ApiSession, AuditEntry, Rate
from sessions_app.models.api_sessions import operation_answer_window
from sessions_app.pricing import session_cost
from sessions_app.readings import charging_activity, energy_report
from sessions_app.services import api_token_create
from sessions_app.tasks import (
    api_sessions_advance_all as api_sessions_advance_all_task,
)
from sessions_app.tests.base import card_choice_taken_elsewhere
from sync import services
from sync.client import MeterReading, SteveClient, format_timestamp
from sync.models import Charger, SyncRun, UserMapping
from sync.tests.factories import TransactionSyncStateFactory
from sync.tests.standin_case import PolarisAtStandinMixin

REMOTE_START = "/steve/api/v1/operations/RemoteStartTransaction"
REMOTE_STOP = "/steve/api/v1/operations/RemoteStopTransaction"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ChargingTestCase(PolarisAtStandinMixin, TestCase):
    """Personas, chargers and a default rate; the stand-in as Polaris's SteVe."""

    alice: AbstractBaseUser
    bob: AbstractBaseUser
    staff: AbstractBaseUser
    rate: Rate

    def polaris_overrides(self) -> dict[str, Any]:
        # A channel prefix per test keeps parallel runs' events apart.
        return {
            "STEVE_TIMEOUT": 5,
            "LIVE_CHANNEL_PREFIX": f"test-{uuid.uuid4().hex[:12]}-",
        }

    @classmethod
    def setUpTestData(cls) -> None:
        users = get_user_model().objects
        cls.alice = users.create_user("alice@example.com", "alice@example.com", "pw")
        cls.bob = users.create_user("bob@example.com", "bob@example.com", "pw")
        cls.staff = users.create_user("staff", "staff@example.com", "pw", is_staff=True)
        for user, tag in ((cls.alice, "TAG-0001"), (cls.bob, "TAG-0003")):
            UserMapping.objects.create(steve_ocpp_id_tag=tag, user=user)
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0005", user=cls.staff)
        for box, connector in (
            ("CP-001", 1),
            ("CP-002", 1),
            ("CP-003", 1),
            ("CP-004", 1),
            ("CP-004", 2),
        ):
            Charger.objects.create(
                charge_box_id=box, connector_id=connector, friendly_name=box
            )
        cls.rate = Rate.objects.create(
            name="Standard",
            currency="eur",
            flat_fee=Decimal("0.50"),
            energy_price=Decimal("0.30"),
            time_price=Decimal("1.20"),
            tax_percent=Decimal("20"),
            is_default=True,
        )

    # Helpers

    @staticmethod
    def token(user: AbstractBaseUser) -> str:
        return api_token_create(user=user)[1]

    def create(
        self,
        user: AbstractBaseUser | None = None,
        box: str = "CP-001",
        connector: int = 1,
        **kwargs: Any,
    ) -> ApiSession:
        return charging.api_session_create(
            user=user or self.alice,
            charge_box_id=box,
            connector_id=connector,
            client=self.steve,
            **kwargs,
        ).session

    def sync(self) -> SyncRun:
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.SUCCEEDED, run.error)
        return run

    def advance(self, session: ApiSession, now: datetime | None = None) -> ApiSession:
        return charging.api_session_advance(
            session_id=session.pk, client=self.steve, now=now
        )

    def begin_charging(self, session: ApiSession) -> ApiSession:
        """The station starts the accepted remote start; the sync sees it."""
        started = self.standin.tick()["started"]
        self.assertEqual(len(started), 1)
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        return session

    def started_at_once(self) -> tuple[ApiSession, datetime, int]:
        """A session whose station starts charging at once (not synced yet): the
        session, when its start was sent, and SteVe's pk of the charge."""
        session = self.create()
        assert session.remote_start_sent_at is not None
        self.standin.tick()
        pk = max(t["id"] for t in self.standin.state()["transactions"])
        return session, session.remote_start_sent_at, pk

    def station_starts(self, stamped_at: datetime) -> int:
        """CP-001 #1, the sessions' connector, starts a charge on Alice's card
        stamped `stamped_at` by its clock; returns SteVe's pk."""
        return self.standin.add_transaction(
            "CP-001", 1, "TAG-0001", start_timestamp=iso(stamped_at)
        )

    def advance_past_the_start_deadline(
        self, session: ApiSession, timeout_s: int = 120
    ) -> ApiSession:
        """A sync, then an advance, just after the start deadline: `timeout_s`
        after the remote start was sent, and the station clock's allowance."""
        assert session.remote_start_sent_at is not None
        later = session.remote_start_sent_at + timedelta(seconds=timeout_s + 1)
        with time_machine.travel(later + CLOCK_SKEW, tick=False):
            self.sync()
            return self.advance(session)

    def assert_started_on(self, session: ApiSession, steve_transaction_id: int) -> None:
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        assert session.transaction is not None
        self.assertEqual(session.transaction.steve_transaction_id, steve_transaction_id)

    def steve_requests(self, path: str) -> int:
        return int(self.standin.state()["requests"].get(path, 0))

    def steve_transaction(self, session: ApiSession) -> dict[str, Any]:
        assert session.transaction is not None
        pk = session.transaction.steve_transaction_id
        return next(t for t in self.standin.state()["transactions"] if t["id"] == pk)


class ApiSessionLifecycleTests(ChargingTestCase):
    def test_it_starts_when_the_sync_sees_the_transaction(self) -> None:
        session = self.create()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertEqual(session.id_tag, "TAG-0001")
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        self.standin.tick()
        self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        assert session.transaction is not None
        self.assertEqual(session.transaction.charge_box_id, "CP-001")
        self.assertEqual(session.transaction.ocpp_id_tag, "TAG-0001")
        assert session.energy_report is not None
        self.assertIn("energy_meter", session.energy_report)

    def test_a_reading_stamped_a_day_ahead_is_not_the_energy_report(self) -> None:
        session = self.begin_charging(self.create())
        pk = self.steve_transaction(session)["id"]
        ahead = timezone.now() + timedelta(days=1)
        self.standin.add_meter_values(
            pk, [{"value": "1", "unit": "Wh", "valueTimestamp": iso(ahead)}]
        )
        self.standin.tick(60)
        self.sync()
        session = self.advance(session)
        assert session.energy_report is not None
        self.assertLess(session.energy_report["timestamp"], iso(ahead)[:10])
        self.assertGreater(session.energy_report["energy_meter"]["value"], 1)

    def test_it_ends_when_the_station_stops(self) -> None:
        session = self.begin_charging(self.create())
        self.standin.tick(600)
        self.standin.station_stop(self.steve_transaction(session)["id"])
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        assert session.transaction is not None
        self.assertEqual(session.ended_at, session.transaction.stopped_at)
        self.assertGreater(session.transaction.kwh_delivered, Decimal("0.4"))

    def test_it_is_cancelled_when_charging_does_not_start_in_120_s(self) -> None:
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        with time_machine.travel(sent_at + timedelta(seconds=119), tick=False):
            self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
        past_deadline = sent_at + timedelta(seconds=121) + CLOCK_SKEW
        with time_machine.travel(past_deadline, tick=False):
            # No sync has looked at SteVe since the deadline: nothing is known yet.
            self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertIn("within 120 seconds", session.status_message)

    @override_settings(API_SESSION_START_TIMEOUT_SECONDS=1)
    def test_a_start_never_answered_is_sent_again_only_once_nothing_waits_on_it(
        self,
    ) -> None:
        # A start timeout shorter than SteVe's wait for the station: past the
        # start window, the request that sent the start may still be waiting for
        # its answer, and a second start would go out beside the first.
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        ApiSession.objects.filter(pk=session.pk).update(remote_start_returned_at=None)
        steve_waits = timedelta(seconds=settings.STEVE_OPERATION_TIMEOUT)
        self.assertGreater(steve_waits, timedelta(seconds=1) + CLOCK_SKEW)
        with time_machine.travel(sent_at + steve_waits, tick=False):
            self.sync()
            self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        with time_machine.travel(
            sent_at + steve_waits + timedelta(minutes=1), tick=False
        ):
            self.sync()
            self.advance(session)
        self.assertEqual(self.steve_requests(REMOTE_START), 2)

    @override_settings(API_SESSION_START_TIMEOUT_SECONDS=30)
    def test_the_start_timeout_is_a_setting(self) -> None:
        session = self.advance_past_the_start_deadline(self.create(), timeout_s=30)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)

    def test_a_steve_outage_past_the_deadline_postpones_the_cancellation(
        self,
    ) -> None:
        session, sent_at, _ = self.started_at_once()
        self.standin.set_fault(
            "error", count=-1, status=503, path_contains="/api/v1/transactions"
        )
        with time_machine.travel(sent_at + timedelta(minutes=3), tick=False):
            run = services.sync_run_transactions(trigger="command", client=self.steve)
            self.assertEqual(run.status, SyncRun.Status.FAILED)
            self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
        self.standin.clear_faults()
        with time_machine.travel(sent_at + timedelta(minutes=4), tick=False):
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.STARTED)

    def test_a_start_whose_meter_values_steve_cannot_serve_still_counts(
        self,
    ) -> None:
        # SteVe lists the charge but fails its meter values: the partial run
        # stores it from its list row, and the session starts, not cancels.
        session, sent_at, pk = self.started_at_once()
        self.standin.set_fault(
            "error", count=-1, status=503, path_contains=f"/transactions/{pk}?"
        )
        with time_machine.travel(sent_at + timedelta(minutes=3), tick=False):
            run = services.sync_run_transactions(trigger="command", client=self.steve)
            self.assertEqual(run.status, SyncRun.Status.PARTIAL)
            self.assertEqual(run.unread_transaction_ids, [pk])
            session = self.advance(session)
        self.assert_started_on(session, pk)

    def test_a_start_the_sync_sees_after_the_deadline_still_counts(self) -> None:
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        # The station reports charging 118 s after the remote start.
        pk = self.station_starts(sent_at + timedelta(seconds=118))
        with time_machine.travel(sent_at + timedelta(seconds=121), tick=False):
            self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
        with time_machine.travel(sent_at + timedelta(seconds=140), tick=False):
            self.sync()
            session = self.advance(session)
        self.assert_started_on(session, pk)

    def test_a_station_whose_clock_runs_behind_starts_the_session(self) -> None:
        # The station's clock is 40 s behind SteVe's: the charge the remote start
        # began is stamped before Polaris asked for it.
        self.sync()  # Polaris knows the fleet's transactions before the start
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        pk = self.station_starts(sent_at - timedelta(seconds=40))
        with time_machine.travel(sent_at + timedelta(seconds=121) + CLOCK_SKEW):
            self.sync()
            session = self.advance(session)
        self.assert_started_on(session, pk)

    def test_a_station_whose_clock_runs_ahead_starts_the_session(self) -> None:
        # Stamped four minutes ahead, past the start deadline by the station's
        # clock, but stored by a sync at once: the station answered in time.
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        pk = self.station_starts(sent_at + timedelta(minutes=4))
        self.sync()
        session = self.advance_past_the_start_deadline(session)
        self.assert_started_on(session, pk)

    def test_a_card_charge_from_a_clock_ahead_that_ended_is_not_taken(
        self,
    ) -> None:
        # Four minutes ahead (SteVe refuses stops stamped further ahead), the
        # station stamps a card charge that ended before the start was sent
        # after the send, and a sync stores it only after.
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        ahead = timedelta(minutes=4)
        card = self.station_starts(sent_at + ahead - timedelta(seconds=40))
        stop = iso(sent_at + ahead - timedelta(seconds=20))
        self.assertTrue(
            self.standin.station_stop(card, stop_timestamp=stop)["accepted"]
        )
        pk = self.station_starts(sent_at + ahead + timedelta(seconds=5))
        self.sync()
        session = self.advance_past_the_start_deadline(session)
        self.assert_started_on(session, pk)

    def test_an_old_charge_uploaded_late_does_not_start_the_session(self) -> None:
        # A station back online uploads yesterday's StartTransaction: a new high
        # pk, as a charge the remote start began would have, but hours old.
        self.sync()
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        self.station_starts(sent_at - timedelta(hours=20))
        late = sent_at + timedelta(seconds=121) + CLOCK_SKEW
        with time_machine.travel(late + timedelta(seconds=5), tick=False):
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertIsNone(session.transaction)

    def test_a_start_after_the_deadline_does_not_start_the_session(self) -> None:
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        late = sent_at + timedelta(seconds=121) + CLOCK_SKEW
        self.station_starts(late)
        with time_machine.travel(late + timedelta(seconds=5), tick=False):
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertIsNone(session.transaction)

    def test_another_users_transaction_does_not_start_the_session(self) -> None:
        session = self.create()
        # Bob plugs in at the same connector before the remote start is carried out.
        self.standin.add_transaction("CP-001", 1, "TAG-0003")
        self.standin.tick()
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)

    def test_charges_that_ended_before_the_remote_start_do_not_match(self) -> None:
        # The driver charged twice by card, then asks the API for a session: the
        # second charge started inside the clock-skew margin but had ended.
        now = timezone.now()
        for started, stopped in ((40, 20), (8, 2)):
            pk = self.station_starts(now - timedelta(seconds=started))
            stop = iso(now - timedelta(seconds=stopped))
            self.assertTrue(
                self.standin.station_stop(pk, stop_timestamp=stop)["accepted"]
            )
        session = self.create()
        (caused,) = self.standin.tick()["started"]
        self.sync()
        session = self.advance(session)
        self.assert_started_on(session, caused)

    def test_a_card_charge_synced_before_the_request_does_not_match(self) -> None:
        # The driver charged by card seconds ago; the sync stored it running, the
        # station has stopped it since, and the sync has not seen the stop yet.
        card = self.standin.add_transaction("CP-001", 1, "TAG-0001")
        self.sync()
        self.assertTrue(self.standin.station_stop(card)["accepted"])
        session = self.create()
        self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)
        (caused,) = self.standin.tick()["started"]
        self.sync()
        session = self.advance(session)
        self.assert_started_on(session, caused)

    def test_of_several_candidates_the_one_started_after_the_remote_start_wins(
        self,
    ) -> None:
        session = self.create()
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        (caused,) = self.standin.tick()["started"]
        # Still running on the connector, stamped before the remote start: one
        # outside the clock-skew margin, one inside it (late uploads, say).
        for before in (CLOCK_SKEW * 4, CLOCK_SKEW / 2):
            self.station_starts(sent_at - before)
        self.sync()
        session = self.advance(session)
        assert session.transaction is not None
        self.assertEqual(session.transaction.steve_transaction_id, caused)

    def test_a_charge_with_another_of_the_users_tags_does_not_match(self) -> None:
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=self.alice)
        session = self.create()
        other_tag = "TAG-0002" if session.id_tag == "TAG-0001" else "TAG-0001"
        # The driver taps another of their cards instead of waiting.
        self.standin.add_transaction("CP-001", 1, other_tag)
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)

    def test_a_charge_another_session_has_is_not_matched_again(self) -> None:
        # Two sessions whose start windows overlap (the first ended, and the
        # second's start was sent at the same moment): each charge is one
        # session's, or its energy would be counted twice.
        first = self.begin_charging(self.create())
        ApiSession.objects.filter(pk=first.pk).update(status=ApiSession.Status.ENDED)
        sent_at = first.remote_start_sent_at
        assert sent_at is not None
        second = ApiSession.objects.create(
            user=self.alice,
            charge_box_id=first.charge_box_id,
            connector_id=first.connector_id,
            id_tag=first.id_tag,
            remote_start_sent_at=sent_at,
        )
        deadline = sent_at + timedelta(seconds=120)
        self.assertIsNone(
            api_session_matching_transaction(session=second, start_deadline=deadline)
        )

    def test_the_tag_matches_in_any_letter_case(self) -> None:
        session = self.create()
        # OCPP compares idTags case-insensitively; some stations echo them changed.
        pk = self.standin.add_transaction("CP-001", 1, session.id_tag.lower())
        self.sync()
        session = self.advance(session)
        assert session.transaction is not None
        self.assertEqual(session.transaction.steve_transaction_id, pk)

    def test_a_transaction_older_than_the_remote_start_does_not_match(self) -> None:
        old = iso(timezone.now() - timedelta(minutes=10))
        pk = self.standin.add_transaction("CP-004", 1, "TAG-0001", start_timestamp=old)
        self.standin.station_stop(pk)
        self.standin.set_online("CP-004", True)
        session = self.create(box="CP-004")
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.CREATED)

    @override_settings(LIVE_CHANNEL_PREFIX=f"test-charging-{uuid.uuid4().hex[:8]}-")
    def test_status_changes_refresh_only_the_owners_banner(self) -> None:
        alices, bobs = customer_channel(self.alice.pk), customer_channel(self.bob.pk)

        def banners_since(channel: str, last_id: int) -> int:
            events = get_storage().get_events(channel, last_id)
            return sum(event.type == "active-session" for event in events)

        with self.captureOnCommitCallbacks(execute=True):
            session = self.create()
        self.assertEqual(banners_since(alices, 0), 1)
        self.standin.tick()
        self.sync()  # refreshes the banners of every customer it saw charge
        since = {
            channel: get_storage().get_current_id(channel) for channel in (alices, bobs)
        }
        with self.captureOnCommitCallbacks(execute=True):
            self.advance(session)
        self.assertEqual(banners_since(alices, since[alices]), 1)
        self.assertEqual(banners_since(bobs, since[bobs]), 0)

    def test_the_owners_banner_offers_stop_once_the_session_started(self) -> None:
        # The sync refreshes the banner when it sees the transaction, before the
        # session is linked to it: the banner then has no Stop yet.
        with self.captureOnCommitCallbacks(execute=True):
            session = self.create()
        self.standin.tick()
        self.sync()
        channel = customer_channel(self.alice.pk)
        last_id = get_storage().get_current_id(channel)
        with self.captureOnCommitCallbacks(execute=True):
            self.advance(session)
        banners = [
            event.data
            for event in get_storage().get_events(channel, last_id)
            if event.type == "active-session"
        ]
        self.assertEqual(len(banners), 1)
        self.assertIn("Charging at CP-001", banners[0])
        self.assertIn(f'action="/sessions/{session.pk}/stop"', banners[0])

    def test_every_stop_claimed_tells_the_owners_pages_it_is_stopping(self) -> None:
        # Pressed in another tab, sent by an integrator or by a target: the
        # owner's open pages say "Stopping…" from the claim, not at the end.
        session = self.begin_charging(self.create())
        channel = customer_channel(self.alice.pk)

        def banners_of(stop: Callable[[], object]) -> list[str]:
            last_id = get_storage().get_current_id(channel)
            with self.captureOnCommitCallbacks(execute=True):
                stop()
            return [
                event.data
                for event in get_storage().get_events(channel, last_id)
                if event.type == "active-session"
            ]

        def stop() -> object:
            return charging.api_session_stop(session=session, client=self.steve)

        (banner,) = banners_of(stop)
        self.assertIn("Stopping…", banner)

        # A stop the station could not take (offline) offers Stop again there.
        ApiSession.objects.filter(pk=session.pk).update(stop_requested_at=None)
        self.standin.set_online("CP-001", False)

        def refused_stop() -> None:
            with self.assertRaises(charging.ApiSessionError):
                stop()

        # Sent at its claim and at its release (both rendered here at the end).
        _claimed, released = banners_of(refused_stop)
        self.assertNotIn("Stopping…", released)
        self.assertIn(f'id="stop-session-{session.pk}"', released)

    def test_advance_all_moves_every_open_session(self) -> None:
        first = self.create()
        self.standin.station_stop(42)  # frees CP-002
        second = self.create(user=self.bob, box="CP-002")
        self.standin.tick()
        self.sync()
        self.assertEqual(charging.api_sessions_advance_all(client=self.steve), 2)
        for session in (first, second):
            session.refresh_from_db()
            self.assertEqual(session.status, ApiSession.Status.STARTED)

    def test_advance_all_passes_over_a_session_deleted_meanwhile(self) -> None:
        # A refused create deletes its session while the loop advances others
        # (each can wait seconds for the station): not an error with a traceback.
        first = self.create()
        self.standin.station_stop(42)  # frees CP-002
        refused_meanwhile = self.create(user=self.bob, box="CP-002")
        advance = charging.lifecycle.api_session_advance

        def advance_while_a_create_is_refused(**kwargs: Any) -> ApiSession:
            if kwargs["session_id"] == first.pk:
                refused_meanwhile.delete()
            return advance(**kwargs)

        with (
            patch.object(
                charging.lifecycle,
                "api_session_advance",
                advance_while_a_create_is_refused,
            ),
            self.assertNoLogs("sessions_app.charging.lifecycle", "ERROR"),
        ):
            self.assertEqual(charging.api_sessions_advance_all(client=self.steve), 2)


class ApiSessionAdvanceTaskTests(ChargingTestCase):
    def test_beat_runs_the_task_right_after_every_sync(self) -> None:
        schedule = celery_app.conf.beat_schedule
        sync = schedule["sync-transactions"]
        self.assertEqual(sync["schedule"], float(settings.SYNC_INTERVAL_SECONDS))
        advance = sync["options"]["link"]
        self.assertEqual(advance.task, "sessions_app.tasks.api_sessions_advance_all")
        self.assertTrue(advance.immutable)
        self.assertIn(advance.task, celery_app.tasks)
        # Not also on a schedule of its own, beside the sync.
        tasks = [entry["task"] for entry in schedule.values()]
        self.assertEqual(tasks.count(advance.task), 0)

    def test_the_task_advances_open_sessions_with_the_configured_steve(self) -> None:
        session = self.create()
        self.standin.tick()
        self.sync()
        self.assertEqual(api_sessions_advance_all_task(), 1)
        session.refresh_from_db()
        self.assertEqual(session.status, ApiSession.Status.STARTED)


class ApiSessionEndedAsStuckTests(ChargingTestCase):
    def test_its_metrics_stay_final_when_the_station_reports_after_all(self) -> None:
        target = charging.SessionTarget(energy_kwh=Decimal("5"))
        session = self.begin_charging(self.create(target=target))
        tx = self.steve_transaction(session)
        silent_until = timezone.now() + timedelta(hours=13)
        with time_machine.travel(silent_until, tick=False):
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        ended = api_session_document(session)
        # The station uploads 8 kWh it charged meanwhile.
        uploaded_at = silent_until + timedelta(minutes=1)
        self.standin.add_meter_values(
            tx["id"],
            [
                {"value": str(int(tx["startValue"]) + 8000), "unit": "Wh",
                 "measurand": "Energy.Active.Import.Register",
                 "valueTimestamp": iso(uploaded_at)},
            ],
        )  # fmt: skip
        with time_machine.travel(uploaded_at + timedelta(seconds=5), tick=False):
            self.sync()
            session = self.advance(session)
        assert session.transaction is not None
        self.assertEqual(session.transaction.kwh_delivered, Decimal("8.000"))
        again = api_session_document(
            ApiSession.objects.select_related("transaction").get(pk=session.pk)
        )
        self.assertEqual(
            (again["status"], again["metrics"], again["cost"]),
            (ended["status"], ended["metrics"], ended["cost"]),
        )


class ApiSessionAdvanceAllTests(ChargingTestCase):
    def test_each_session_is_advanced_at_its_own_moment(self) -> None:
        # The first session's target stop waits for a slow station; the scheduled
        # start after it must not be claimed as sent at the loop's start, or its
        # station would get that much less of its start window.
        first = self.begin_charging(self.create())
        ApiSession.objects.filter(pk=first.pk).update(
            target_stop_at=timezone.now() - timedelta(seconds=1)
        )
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            scheduled = self.create(
                box="CP-002", target=charging.SessionTarget(start_at=start_at)
            )
        self.standin.set_fault("slow", delay=2, path_contains="RemoteStopTransaction")
        began = timezone.now()
        charging.api_sessions_advance_all(client=self.steve)
        scheduled.refresh_from_db()
        assert scheduled.remote_start_sent_at is not None
        self.assertGreaterEqual(
            scheduled.remote_start_sent_at, began + timedelta(seconds=2)
        )


class ApiSessionUnansweredStartTests(ChargingTestCase):
    """SteVe sent the start but the station's answer did not come within SteVe's
    30 s (taskFinished=false): the station may have started, so the session is
    kept and the 120 s rule decides, as for a lost answer."""

    def create_unanswered(self, **kwargs: Any) -> ApiSession:
        self.standin.set_fault(
            "timeout_operation", delay=0.1, path_contains="RemoteStartTransaction"
        )
        return self.create(**kwargs)

    def test_it_is_kept_as_created_with_a_message_saying_so(self) -> None:
        session = self.create_unanswered()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIsNotNone(session.remote_start_sent_at)
        self.assertEqual(
            session.status_message,
            "The start was sent but the station did not answer in time; the "
            "session is cancelled if charging does not start within 120 seconds.",
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

    def test_a_station_that_started_anyway_starts_the_session(self) -> None:
        session = self.create_unanswered()
        # The station acted on the start; its late answer was dropped by SteVe.
        pk = self.standin.add_transaction("CP-001", 1, "TAG-0001")
        self.sync()
        session = self.advance(session)
        self.assert_started_on(session, pk)
        self.assertEqual(session.status_message, "")

    def test_a_station_that_never_starts_is_cancelled_after_120_s(self) -> None:
        session = self.create_unanswered()
        assert session.remote_start_sent_at is not None
        later = session.remote_start_sent_at + timedelta(seconds=121) + CLOCK_SKEW
        with time_machine.travel(later, tick=False):
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertIn("within 120 seconds", session.status_message)

    def test_an_unanswered_scheduled_start_waits_for_the_station(self) -> None:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            session = self.create(target=charging.SessionTarget(start_at=start_at))
        self.standin.set_fault(
            "timeout_operation", delay=0.1, path_contains="RemoteStartTransaction"
        )
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIn("did not answer in time", session.status_message)


class ApiSessionCreateRefusalTests(ChargingTestCase):
    def assert_nothing_stored(self) -> None:
        self.assertFalse(ApiSession.objects.exists())

    def test_an_offline_station_is_a_conflict(self) -> None:
        with self.assertRaisesMessage(charging.SessionConflict, "offline"):
            self.create(box="CP-004")
        self.assert_nothing_stored()

    def test_a_rejected_start_is_a_conflict(self) -> None:
        with self.assertRaisesMessage(charging.SessionConflict, "refused to start"):
            self.create(box="CP-003")
        self.assert_nothing_stored()

    def test_a_tag_steve_does_not_accept_is_invalid(self) -> None:
        UserMapping.objects.filter(user=self.alice).update(
            steve_ocpp_id_tag="TAG-BLOCKED"
        )
        with self.assertRaisesMessage(charging.SessionInvalid, "blocked, expired"):
            self.create()
        self.assert_nothing_stored()

    def test_a_user_without_a_tag_is_invalid(self) -> None:
        UserMapping.objects.filter(user=self.alice).update(is_active=False)
        with self.assertRaisesMessage(
            charging.SessionInvalid, "no active charging card"
        ):
            self.create()
        self.assert_nothing_stored()

    def test_steve_failing_is_a_station_error(self) -> None:
        self.standin.set_fault("error", status=503, path_contains="operations")
        with self.assertRaisesMessage(charging.StationError, "could not be sent"):
            self.create()
        self.assert_nothing_stored()

    def test_a_gateway_timeout_in_front_of_steve_keeps_the_session(self) -> None:
        # SteVe had the start and may have sent it on: the 120 s rule decides.
        self.standin.set_fault("error", status=504, path_contains="operations")
        session = self.create()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIn("answer was lost", session.status_message)

    def test_an_unexplained_refusal_is_our_sentence_and_steves_is_logged(
        self,
    ) -> None:
        self.standin.set_fault("error", status=400, path_contains="RemoteStart")
        with (
            self.assertLogs("sessions_app.charging", "WARNING") as logs,
            self.assertRaises(charging.StationError) as refused,
        ):
            self.create()
        self.assertEqual(
            refused.exception.message,
            "The charging network refused to start this charge; try again in a "
            "few minutes, and contact support if it keeps happening.",
        )
        self.assertIn("stand-in fault injection", logs.output[0])
        self.assert_nothing_stored()

    def test_steve_refusing_or_missing_is_our_sentence_and_the_cause_is_logged(
        self,
    ) -> None:
        # Drivers and integrators read these: no HTTP status or credentials of
        # ours. The operators find the cause, with the setting to check, in the log.
        not_sent = (
            "The start could not be sent: the charging network is not answering "
            "right now, so nothing was started. Try again in a few minutes, and "
            "contact support if it keeps happening."
        )
        self.standin.set_fault("unauthorized", count=-1)
        with (
            self.assertLogs("sessions_app.charging", "WARNING") as logs,
            self.assertRaises(charging.StationError) as refused,
        ):
            self.create()
        # SteVe did answer: retrying will not help until the settings are fixed.
        self.assertEqual(
            refused.exception.message,
            "The start could not be sent: Polaris's connection to the charging "
            "network needs fixing by its operators, so nothing was started. Please "
            "contact support; trying again will not help until it is fixed.",
        )
        self.assertIn("Check STEVE_USERNAME and STEVE_PASSWORD", logs.output[0])
        down = SteveClient(
            base_url="http://127.0.0.1:9/steve",
            username="u",
            password="p",
            retry_delays=(),
        )
        with self.assertRaises(charging.StationError) as unreachable:
            charging.api_session_create(
                user=self.alice, charge_box_id="CP-001", connector_id=1, client=down
            )
        self.assertEqual(unreachable.exception.message, not_sent)
        self.assert_nothing_stored()

    def test_a_customer_cannot_use_a_private_charger(self) -> None:
        Charger.objects.filter(charge_box_id="CP-001").update(is_public=False)
        with self.assertRaises(charging.SessionNotFound):
            self.create()
        self.assertEqual(self.create(user=self.staff).status, "created")

    def test_a_customer_can_use_a_private_charger_of_their_group(self) -> None:
        # The portal lists a group's chargers to its members, so starting one
        # must follow the same rule.
        private = Charger.objects.get(charge_box_id="CP-001", connector_id=1)
        Charger.objects.filter(pk=private.pk).update(is_public=False)
        depot = ChargerGroup.objects.create(name="Depot")
        depot.chargers.add(private)
        depot.members.add(self.alice)
        self.assertEqual(self.create().status, "created")

    def test_a_cost_target_needs_a_rate(self) -> None:
        Rate.objects.all().delete()
        target = charging.SessionTarget(cost=Decimal("5"))
        with self.assertRaisesMessage(charging.SessionInvalid, "needs a rate"):
            self.create(target=target)

    def test_a_cost_target_the_flat_fee_already_reaches_is_invalid(self) -> None:
        # The rate charges 0.50 + 20 % = 0.60 the moment a session starts.
        for cost in ("0.30", "0.60"):
            target = charging.SessionTarget(cost=Decimal(cost))
            with self.assertRaisesMessage(
                charging.SessionInvalid, "target.cost must be more than 0.6 EUR"
            ):
                self.create(target=target)
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        target = charging.SessionTarget(cost=Decimal("0.61"))
        self.assertEqual(self.create(target=target).target_cost, Decimal("0.61"))

    def test_a_target_below_its_stored_precision_is_invalid(self) -> None:
        # Stored with 2, 4 and 3 decimal places, these would become 0.
        for target in (
            charging.SessionTarget(time_minutes=Decimal("0.001")),
            charging.SessionTarget(cost=Decimal("0.00001")),
            charging.SessionTarget(energy_kwh=Decimal("0.0004")),
        ):
            with self.assertRaisesMessage(charging.SessionInvalid, "at least"):
                self.create(target=target)
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_start_time_more_than_a_day_ahead_is_invalid(self) -> None:
        start_at = timezone.now() + timedelta(hours=24, minutes=1)
        target = charging.SessionTarget(start_at=start_at)
        with self.assertRaisesMessage(charging.SessionInvalid, "at most 24 hours"):
            self.create(target=target)
        self.assert_nothing_stored()

    def test_a_stop_time_in_the_past_is_invalid(self) -> None:
        target = charging.SessionTarget(stop_at=timezone.now() - timedelta(minutes=1))
        with self.assertRaisesMessage(charging.SessionInvalid, "in the future"):
            self.create(target=target)
        self.assertEqual(self.steve_requests(REMOTE_START), 0)


class ApiSessionOnBehalfTests(ChargingTestCase):
    """The services refuse a start or stop for another user by staff without
    `sessions_app.manage_any_session`, whoever calls them (not only the API)."""

    def test_a_start_for_someone_else_without_the_permission_is_forbidden(
        self,
    ) -> None:
        with self.assertRaisesMessage(
            charging.SessionForbidden, "sessions_app.manage_any_session"
        ):
            self.create(caller=self.staff)
        self.assertFalse(ApiSession.objects.exists())
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        self.assertFalse(AuditEntry.objects.exists())

    def test_a_stop_for_someone_else_without_the_permission_is_forbidden(
        self,
    ) -> None:
        session = self.begin_charging(self.create())
        with self.assertRaises(charging.SessionForbidden):
            charging.api_session_stop(
                session=session, caller=self.staff, client=self.steve
            )
        session.refresh_from_db()
        self.assertIsNone(session.stop_requested_at)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.assertFalse(AuditEntry.objects.exists())

    def test_the_owners_own_start_and_stop_are_not_audited(self) -> None:
        # The API names the caller; the portal leaves it out (the owner).
        for caller in (self.alice, None):
            with self.subTest(caller=caller):
                ApiSession.objects.all().delete()
                session = self.begin_charging(self.create(caller=caller))
                stopped = charging.api_session_stop(
                    session=session, caller=caller, client=self.steve
                )
                self.assertIsNotNone(stopped.stop_requested_at)
        self.assertFalse(AuditEntry.objects.exists())


class ApiSessionTargetTests(ChargingTestCase):
    def assert_stopped_once_by(self, session: ApiSession, target: str) -> None:
        session.refresh_from_db()
        self.assertEqual(session.target_reached, target)
        self.assertIsNotNone(session.stop_requested_at)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        tx = self.steve_transaction(session)
        self.assertEqual((tx["active"], tx["stopReason"]), (False, "Remote"))
        # Advancing again sends no second stop; the sync then ends the session.
        self.advance(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.ENDED)

    def test_the_energy_target_stops_the_session(self) -> None:
        session = self.create(target=charging.SessionTarget(energy_kwh=Decimal("0.5")))
        session = self.begin_charging(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.standin.tick(900)  # at least 0.7 kWh: stations here draw 3 kW or more
        self.advance(session)
        self.assert_stopped_once_by(session, "energy")

    def test_the_time_target_stops_at_the_last_check_before_it(self) -> None:
        # A max: waiting for the next check (SYNC_INTERVAL_SECONDS later) would
        # charge past the minute.
        session = self.create(target=charging.SessionTarget(time_minutes=Decimal(1)))
        session = self.begin_charging(session)
        assert session.transaction is not None
        started_at = session.transaction.started_at
        self.advance_around_the_last_check_before(
            session, started_at + timedelta(minutes=1)
        )
        self.assert_stopped_once_by(session, "time")

    def test_the_time_target_runs_on_the_stations_clock(self) -> None:
        # The station's clock is 10 minutes behind: its charge is stamped 10
        # minutes before the remote start that began it. Five minutes of charging
        # are five minutes on either clock, not "15 minutes since the start".
        session = self.create(target=charging.SessionTarget(time_minutes=Decimal(5)))
        sent_at = session.remote_start_sent_at
        assert sent_at is not None
        pk = self.station_starts(sent_at - timedelta(minutes=10))
        self.sync()
        session = self.advance(session)
        self.assert_started_on(session, pk)
        self.advance_around_the_last_check_before(
            session, sent_at + timedelta(minutes=5)
        )
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

    def advance_around_the_last_check_before(
        self, session: ApiSession, moment: datetime
    ) -> None:
        """Advance a second before the last check before `moment` (a sync
        interval earlier), which sends no stop, and a second after it."""
        last_check = moment - timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)
        with time_machine.travel(last_check - timedelta(seconds=1), tick=False):
            self.advance(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        with time_machine.travel(last_check + timedelta(seconds=1), tick=False):
            self.advance(session)

    def charge_at(self, session: ApiSession, delivered_wh: int, watts: int) -> None:
        """The station reports `delivered_wh` since the start, drawing `watts`."""
        tx = self.steve_transaction(session)
        now = iso(timezone.now())
        self.standin.add_meter_values(
            tx["id"],
            [
                {"value": str(int(tx["startValue"]) + delivered_wh), "unit": "Wh",
                 "measurand": "Energy.Active.Import.Register", "valueTimestamp": now},
                {"value": str(watts), "unit": "W",
                 "measurand": "Power.Active.Import", "valueTimestamp": now},
            ],
        )  # fmt: skip

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_the_energy_target_stops_before_the_next_check_would_pass_it(
        self,
    ) -> None:
        # 480 Wh of a 500 Wh max: at 9 kW the next check, 10 s on, would find
        # 505 Wh; at 3.6 kW, 490 Wh.
        target = charging.SessionTarget(energy_kwh=Decimal("0.5"))
        session = self.begin_charging(self.create(target=target))
        self.charge_at(session, delivered_wh=480, watts=3600)
        self.advance(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.charge_at(session, delivered_wh=480, watts=9000)
        self.advance(session)
        self.assert_stopped_once_by(session, "energy")

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_the_energy_target_projects_from_the_last_energy_reading(self) -> None:
        # The station samples its register on the minute and its power more
        # often: 400 Wh a minute before a check, 22 kW at it. By the next check,
        # 10 s on, about 830 Wh: past a 500 Wh max, though 22 kW for 10 s from the
        # power reading adds 61 Wh.
        target = charging.SessionTarget(energy_kwh=Decimal("0.5"))
        session = self.begin_charging(self.create(target=target))
        tx = self.steve_transaction(session)
        check = timezone.now() + timedelta(minutes=2)
        self.standin.add_meter_values(
            tx["id"],
            [
                {"value": str(int(tx["startValue"]) + 400), "unit": "Wh",
                 "measurand": "Energy.Active.Import.Register",
                 "valueTimestamp": iso(check - timedelta(minutes=1))},
                {"value": "22000", "unit": "W", "measurand": "Power.Active.Import",
                 "valueTimestamp": iso(check)},
            ],
        )  # fmt: skip
        with time_machine.travel(check, tick=False):
            self.sync()
            self.advance(session)
        self.assert_stopped_once_by(session, "energy")

    def charge_on_a_22_kw_charger(self, energy_kwh: str) -> ApiSession:
        """A session with an energy max begins at a 22 kW charger; the first check
        knows only the start's register reading, no power."""
        Charger.objects.filter(charge_box_id="CP-001").update(max_power_kw=22)
        target = charging.SessionTarget(energy_kwh=Decimal(energy_kwh))
        session = self.begin_charging(self.create(target=target))
        self.assertNotIn("power", session.energy_report or {})
        return session

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_before_the_first_power_reading_the_chargers_maximum_is_projected(
        self,
    ) -> None:
        # At 22 kW the next check, 10 s on, could find 61 Wh: past a 50 Wh max.
        session = self.charge_on_a_22_kw_charger("0.05")
        self.assert_stopped_once_by(session, "energy")

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_a_max_the_chargers_maximum_would_not_reach_charges_on(self) -> None:
        self.charge_on_a_22_kw_charger("1")
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)

    @override_settings(SYNC_INTERVAL_SECONDS=10)
    def test_the_cost_target_stops_before_the_next_check_would_pass_it(
        self,
    ) -> None:
        session = self.begin_charging(self.create())
        assert session.transaction is not None
        started_at = session.transaction.started_at
        # At 3.6 kW, the next check (10 s on) finds 10 Wh more: 0.0036 EUR of energy
        # and 0.0033 EUR of time, with tax. The max is just above the cost now.
        self.charge_at(session, delivered_wh=1000, watts=3600)
        now = timezone.now()
        cost = session_cost(
            rate=self.rate, kwh=Decimal(1), started_at=started_at, ended_at=now
        )
        ApiSession.objects.filter(pk=session.pk).update(
            target_cost=cost.amount + Decimal("0.0040")
        )
        self.advance(session, now=now)
        self.assert_stopped_once_by(session, "cost")

    def test_the_cost_target_stops_the_session(self) -> None:
        # The flat fee with tax is 0.60 EUR; 2 kWh (40 minutes at 3 kW or more) at
        # 0.36 EUR/kWh with tax take it past 1 EUR.
        session = self.create(target=charging.SessionTarget(cost=Decimal("1.00")))
        session = self.begin_charging(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.standin.tick(2400)
        self.advance(session)
        self.assert_stopped_once_by(session, "cost")

    def test_the_stop_time_stops_the_session(self) -> None:
        stop_at = timezone.now() + timedelta(hours=1)
        session = self.create(target=charging.SessionTarget(stop_at=stop_at))
        session = self.begin_charging(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        with time_machine.travel(stop_at + timedelta(seconds=1), tick=False):
            self.advance(session)
        self.assert_stopped_once_by(session, "energy_stop_time")

    def test_the_start_time_delays_the_remote_start(self) -> None:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            session = self.create(target=charging.SessionTarget(start_at=start_at))
            self.assertIsNone(self.advance(session).remote_start_sent_at)
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertEqual(self.steve_requests(REMOTE_START), 0)
        session = self.advance(session)
        self.assertIsNotNone(session.remote_start_sent_at)
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        self.begin_charging(session)

    def test_a_scheduled_start_whose_answer_was_stored_is_never_sent_again(
        self,
    ) -> None:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            session = self.create(target=charging.SessionTarget(start_at=start_at))
        session = self.advance(session)
        assert session.remote_start_sent_at is not None
        self.assertIsNotNone(session.remote_start_returned_at)
        later = session.remote_start_sent_at + timedelta(seconds=121) + CLOCK_SKEW
        with time_machine.travel(later, tick=False):
            self.sync()
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

    def test_a_scheduled_start_the_station_refuses_cancels_the_session(self) -> None:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            session = self.create(
                box="CP-004", target=charging.SessionTarget(start_at=start_at)
            )
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertIn("offline", session.status_message)


class ApiSessionStartStillAllowedTests(ChargingTestCase):
    """A start sent after its create (scheduled, or sent again after its first
    send was cut off) checks again what staff may have changed meanwhile."""

    def scheduled(self) -> ApiSession:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            return self.create(target=charging.SessionTarget(start_at=start_at))

    def assert_cancelled_unsent(self, session: ApiSession, message: str) -> None:
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertEqual(session.status_message, message)
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_scheduled_start_is_not_sent_with_a_card_deactivated_since(
        self,
    ) -> None:
        session = self.scheduled()
        UserMapping.objects.filter(user=self.alice).update(is_active=False)
        self.assert_cancelled_unsent(
            self.advance(session),
            "The scheduled start was not sent. This account has no active charging "
            "card to start with; ask your operator to link or reactivate one.",
        )
        # Nothing is left to send again later.
        window = timedelta(seconds=121) + CLOCK_SKEW
        self.sync()
        self.advance(session, now=timezone.now() + 2 * window)
        self.assertEqual(self.steve_requests(REMOTE_START), 0)

    def test_a_scheduled_start_is_not_sent_for_a_deactivated_account(self) -> None:
        session = self.scheduled()
        get_user_model().objects.filter(pk=self.alice.pk).update(is_active=False)
        self.assert_cancelled_unsent(
            self.advance(session),
            "The scheduled start was not sent. This account has been deactivated.",
        )

    def test_a_scheduled_start_is_not_sent_to_a_charger_made_private_since(
        self,
    ) -> None:
        session = self.scheduled()
        Charger.objects.filter(charge_box_id="CP-001").update(is_public=False)
        self.assert_cancelled_unsent(
            self.advance(session),
            "The scheduled start was not sent. CP-001 #1 is no longer open to this "
            "account: it is not a public charger, and none of the account's charger "
            "groups holds it.",
        )

    def test_a_cut_off_start_is_not_sent_again_with_its_card_deactivated(
        self,
    ) -> None:
        session = self.create()
        self.assertEqual(self.steve_requests(REMOTE_START), 1)
        # Its send never returned (the worker was killed after the claim), and
        # no charge began in its window.
        sent_at = timezone.now() - timedelta(seconds=121) - 2 * CLOCK_SKEW
        ApiSession.objects.filter(pk=session.pk).update(
            remote_start_sent_at=sent_at, remote_start_returned_at=None
        )
        UserMapping.objects.filter(user=self.alice).update(is_active=False)
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertEqual(
            session.status_message,
            "No charge began within the start window, and the start was not sent "
            "again. The session's card TAG-0001 is no longer an active card of this "
            "account.",
        )
        self.assertEqual(self.steve_requests(REMOTE_START), 1)


class ApiSessionTagTests(ChargingTestCase):
    """Which of a customer's tags a start sends: SteVe lets most tags run one
    transaction at a time, so one that a charge holds would be refused."""

    def setUp(self) -> None:
        super().setUp()
        UserMapping.objects.create(steve_ocpp_id_tag="TAG-0002", user=self.alice)

    def test_sessions_created_back_to_back_take_different_tags(self) -> None:
        # The first one's transaction is not synced yet: its session holds the tag.
        first = self.create(box="CP-001")
        self.standin.station_stop(42)  # frees CP-002
        second = self.create(box="CP-002")
        self.assertEqual((first.id_tag, second.id_tag), ("TAG-0001", "TAG-0002"))

    def test_a_card_that_has_charged_before_goes_before_a_new_one(self) -> None:
        # A card just imported sorts first by name, but SteVe may not know it yet:
        # its refusal would stop the customer charging with the cards it knows.
        UserMapping.objects.create(steve_ocpp_id_tag="NEW-CARD", user=self.alice)
        TransactionSyncStateFactory(
            ocpp_id_tag="TAG-0002",
            is_finalized=True,
            stopped_at=timezone.now() - timedelta(days=1),
        )
        self.assertEqual(self.create(box="CP-001").id_tag, "TAG-0002")

    def test_a_start_elsewhere_leaves_the_card_holding_a_reservation(self) -> None:
        # Taken here, TAG-0001 would be under SteVe's one-charge limit when Alice
        # came to use her reservation at CP-002.
        now = timezone.now()
        Reservation.objects.create(
            user=self.alice,
            charger=Charger.objects.get(charge_box_id="CP-002", connector_id=1),
            id_tag="tag-0001",
            starts_at=now,
            ends_at=now + timedelta(minutes=30),
        )
        self.assertEqual(self.create(box="CP-001").id_tag, "TAG-0002")

    def test_a_customers_starts_choose_their_cards_one_at_a_time(self) -> None:
        # Another start of Alice's, still in its transaction, is choosing a card:
        # this one waits for it to commit, then sees the session it stored.
        other = card_choice_taken_elsewhere(self, self.alice)
        with self.assertRaises(OperationalError):
            self.create(box="CP-001")
        self.assertFalse(ApiSession.objects.exists())
        other.rollback()  # the other start ends: this one chooses now
        self.assertEqual(self.create(box="CP-001").id_tag, "TAG-0001")

    def test_a_scheduled_start_takes_the_tag_free_when_it_is_sent(self) -> None:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            session = self.create(target=charging.SessionTarget(start_at=start_at))
        self.assertEqual(session.id_tag, "TAG-0001")
        # Meanwhile the card with TAG-0001 starts a charge at another station.
        self.standin.station_stop(42)  # frees CP-002
        self.standin.add_transaction("CP-002", 1, "TAG-0001")
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.id_tag, "TAG-0002")
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertEqual(session.status_message, "")
        self.begin_charging(session)


class ApiSessionFinalMessageTests(ChargingTestCase):
    """A session's message describes where it is now, never an earlier hiccup."""

    REFUSED = "The charge station refused to stop."

    def test_a_refused_target_stop_is_forgotten_when_the_station_stops(self) -> None:
        stop_at = timezone.now() + timedelta(minutes=5)
        target = charging.SessionTarget(stop_at=stop_at)
        session = self.begin_charging(self.create(target=target))
        pk = self.steve_transaction(session)["id"]
        # The station ends the charge but SteVe refuses its StopTransaction (a
        # meter below the start): SteVe still lists it, the station refuses a stop.
        self.assertIs(self.standin.station_stop(pk, stop_value=0)["accepted"], False)
        with time_machine.travel(stop_at + timedelta(seconds=1), tick=False):
            self.advance(session)
        session.refresh_from_db()
        self.assertEqual(session.status_message, self.REFUSED)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

        # The station's next StopTransaction is taken: the charge has ended.
        self.assertIs(self.standin.station_stop(pk)["accepted"], True)
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        self.assertEqual(session.status_message, "")

    def test_a_stop_before_charging_begins_is_sent_as_it_begins(self) -> None:
        # The driver plugs in a moment after the integrator changed its mind: the
        # charge must not run on, and nothing can be stopped before it starts.
        session = self.create()
        session = charging.api_session_stop(session=session, client=self.steve)
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIn("stopped as soon as the station starts", session.status_message)
        again = charging.api_session_stop(session=session, client=self.steve)
        self.assertEqual(again.stop_requested_at, session.stop_requested_at)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)

        session = self.begin_charging(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        self.assertEqual(session.status_message, "")
        self.assertFalse(self.steve_transaction(session)["active"])
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.ENDED)

    def test_a_stop_before_a_start_that_never_comes_cancels_saying_so(self) -> None:
        session = charging.api_session_stop(session=self.create(), client=self.steve)
        session = self.advance_past_the_start_deadline(session)
        self.assertEqual(session.status, ApiSession.Status.CANCELLED)
        self.assertEqual(
            session.status_message, "Cancelled: the stop came before charging began."
        )
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)

    def test_a_stop_before_start_that_could_not_be_sent_goes_out_next_time(
        self,
    ) -> None:
        session = charging.api_session_stop(session=self.create(), client=self.steve)
        self.standin.set_fault(
            "error", count=-1, status=503, path_contains="RemoteStop"
        )
        self.standin.tick()
        self.sync()
        with self.assertLogs("sessions_app.charging", "WARNING"):
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        self.assertTrue(self.steve_transaction(session)["active"])
        # Tried twice in that advance (sent, then resent at once as due); a
        # resend that failed is tried again one resend period later.
        self.assertEqual(self.steve_requests(REMOTE_STOP), 2)
        self.standin.clear_faults()
        self.advance(session, now=timezone.now() + charging.stop_resend_after())
        self.assertFalse(self.steve_transaction(session)["active"])

    def test_an_accepted_stop_forgets_a_refused_one(self) -> None:
        session = self.begin_charging(self.create())
        ApiSession.objects.filter(pk=session.pk).update(status_message=self.REFUSED)
        session.refresh_from_db()
        session = charging.api_session_stop(session=session, client=self.steve)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        self.assertEqual(session.status_message, "")

    def test_an_unexplained_stop_refusal_is_our_sentence_and_steves_is_logged(
        self,
    ) -> None:
        session = self.begin_charging(self.create())
        self.standin.set_fault("error", status=400, path_contains="RemoteStop")
        with (
            self.assertLogs("sessions_app.charging", "WARNING") as logs,
            self.assertRaises(charging.StationError) as refused,
        ):
            charging.api_session_stop(session=session, client=self.steve)
        self.assertEqual(
            refused.exception.message,
            "The charging network refused to stop this charge; try again in a "
            "few minutes, and contact support if it keeps happening.",
        )
        self.assertIn(f"api_session={session.pk}", logs.output[0])
        self.assertIn("stand-in fault injection", logs.output[0])

    def test_an_accepted_resend_forgets_a_refused_stop(self) -> None:
        session = self.begin_charging(self.create())
        asked_at = timezone.now() - charging.stop_resend_after()
        ApiSession.objects.filter(pk=session.pk).update(
            status_message=self.REFUSED, stop_requested_at=asked_at
        )
        self.advance(session)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        session.refresh_from_db()
        self.assertEqual(session.status_message, "")
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.ENDED)

    def test_a_session_whose_synced_record_was_removed_ends_saying_so(self) -> None:
        session = self.begin_charging(self.create())
        assert session.transaction is not None
        session.transaction.delete()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        self.assertIn("synced record was removed", session.status_message)


class ApiSessionStopDecisionTests(ChargingTestCase):
    """A stop decides on the session as stored when it runs, not as its caller
    read it, and on whether another stop still waits for the station."""

    def scheduled(self) -> ApiSession:
        start_at = timezone.now()
        with time_machine.travel(start_at - timedelta(minutes=5), tick=False):
            return self.create(target=charging.SessionTarget(start_at=start_at))

    def test_a_scheduled_start_sent_after_the_callers_read_is_stopped_not_cancelled(
        self,
    ) -> None:
        read = self.scheduled()
        self.advance(read)  # beat sends the start
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

        stopped = charging.api_session_stop(session=read, client=self.steve)

        # Cancelled, the session would leave the charge the station starts to run
        # on unfollowed; kept, its stop goes out as charging begins.
        self.assertEqual(stopped.status, ApiSession.Status.CREATED)
        self.assertEqual(stopped.status_message, STOP_BEFORE_START)
        self.begin_charging(stopped)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)

    def test_a_scheduled_start_claimed_as_the_stop_cancels_is_not_cancelled(
        self,
    ) -> None:
        # The stop reads the session, beat claims its start, then the stop's
        # cancel runs: the pieces of api_session_stop in that order.
        read = ApiSession.objects.select_related("transaction").get(
            pk=self.scheduled().pk
        )
        claimed = ApiSession.objects.filter(
            pk=read.pk, remote_start_sent_at__isnull=True
        ).update(remote_start_sent_at=timezone.now())
        self.assertEqual(claimed, 1)

        stopped = _stop(read, self.steve, timezone.now())

        self.assertEqual(stopped.status, ApiSession.Status.CREATED)
        self.assertEqual(stopped.status_message, STOP_BEFORE_START)
        # Beat's start then goes out and is taken: the stop's message stays, as
        # it says what happens next.
        sent = _send_claimed_start(stopped, self.steve, timezone.now())
        self.assertIsNotNone(sent.remote_start_returned_at)
        self.assertEqual(sent.status_message, STOP_BEFORE_START)

    def test_a_stop_cut_off_before_its_answer_holds_up_others_only_a_while(
        self,
    ) -> None:
        session = self.begin_charging(self.create())
        # Claimed, and no outcome stored: its answer may still come.
        ApiSession.objects.filter(pk=session.pk).update(
            stop_requested_at=timezone.now()
        )
        with self.assertRaisesMessage(charging.SessionConflict, STOP_UNDER_WAY):
            charging.api_session_stop(session=session, client=self.steve)

        # Past the longest the answer can take, the process sending it died: a
        # stop gets the session as it is, and the sync sends the stop again.
        cut_off_at = timezone.now() - operation_answer_window()
        ApiSession.objects.filter(pk=session.pk).update(stop_requested_at=cut_off_at)
        stopped = charging.api_session_stop(session=session, client=self.steve)
        self.assertEqual(stopped.stop_requested_at, cut_off_at)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        session = self.advance(session, now=cut_off_at + charging.stop_resend_after())
        self.assertEqual(self.steve_requests(REMOTE_STOP), 1)
        self.assertFalse(session.is_sending_stop)
        self.assertFalse(self.steve_transaction(session)["active"])


class ApiSessionManualStopTests(ChargingTestCase):
    """A manual stop in SteVe (`PATCH /transactions/{pk}/stop`) is bookkeeping:
    the station is told nothing, and its own stop may come later and replace it
    (CONTRACT §11)."""

    def manually_stopped(self) -> tuple[ApiSession, int]:
        session = self.begin_charging(self.create())
        pk = self.steve_transaction(session)["id"]
        self.standin.tick(60)
        self.steve.stop_transaction(pk)
        return session, pk

    def later(self, minutes: int) -> "time_machine.travel":
        return time_machine.travel(
            timezone.now() + timedelta(minutes=minutes), tick=False
        )

    def test_a_station_charging_on_keeps_the_session_started_until_its_own_stop(
        self,
    ) -> None:
        session, pk = self.manually_stopped()
        # SteVe dates the manual stop at the last reading: the next one comes only
        # after the sync saw the stop.
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        self.assertEqual(session.status_message, charging.CHARGING_PAST_MANUAL_STOP)
        self.standin.tick(60)  # the station's readings go on after the manual stop
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.STARTED)
        assert session.energy_report is not None
        self.assertIn("power", session.energy_report)
        # Its metrics follow the station's register past the manual stop.
        assert session.transaction is not None and session.transaction.stopped_at
        metered = api_session_metered(session)
        self.assertGreater(metered.until, session.transaction.stopped_at)
        self.assertGreater(metered.kwh, session.transaction.kwh_delivered)
        # SteVe would refuse a remote stop of a charge it lists as stopped: the
        # caller learns why and what to do, and SteVe is not asked.
        with self.assertRaisesMessage(
            charging.SessionConflict, "stop it at the station"
        ):
            charging.api_session_stop(session=session, client=self.steve)
        self.assertEqual(self.steve_requests(REMOTE_STOP), 0)
        self.standin.tick(60)
        self.standin.station_stop(pk)
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        self.assertEqual(session.status_message, "")
        assert session.transaction is not None
        self.assertEqual(session.transaction.stop_event_actor, "station")
        self.assertEqual(session.ended_at, session.transaction.stopped_at)

    def test_a_station_silent_after_it_ends_the_session_at_the_manual_stop(
        self,
    ) -> None:
        session, _ = self.manually_stopped()
        self.sync()
        self.assertEqual(self.advance(session).status, ApiSession.Status.STARTED)
        # Nothing for longer than stations sample their meters.
        with self.later(16):
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        assert session.transaction is not None
        self.assertEqual(session.ended_at, session.transaction.stopped_at)

    def test_a_charge_past_the_manual_stop_ends_with_what_its_station_metered(
        self,
    ) -> None:
        # Its readings stop without the station's own stop (offline, or the stop
        # lost): the figures the integrator saw do not fall back to SteVe's.
        session, _ = self.manually_stopped()
        self.standin.tick(120)
        self.sync()
        session = self.advance(session)
        charged = api_session_metered(session)
        with self.later(61):
            session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        self.assertEqual(api_session_metered(session), charged)
        self.assertEqual(api_session_document(session)["metrics"]["chargingStop"],
                         charged.until)  # fmt: skip

    def test_the_stations_later_stop_updates_the_ended_session(self) -> None:
        session, pk = self.manually_stopped()
        with self.later(16):
            self.sync()
            ended = self.advance(session)
            self.assertEqual(ended.status, ApiSession.Status.ENDED)
            self.assertEqual(charging.api_sessions_advance_all(client=self.steve), 0)
        # Back online, the station uploads its own stop, with later readings.
        with self.later(20):
            self.standin.tick(120)
            self.standin.station_stop(pk)
            self.sync()
            self.assertEqual(charging.api_sessions_advance_all(client=self.steve), 1)
            session = ApiSession.objects.get(pk=session.pk)
            # Once up to date, it is not read again.
            self.assertEqual(charging.api_sessions_advance_all(client=self.steve), 0)
        assert session.transaction is not None and ended.ended_at is not None
        self.assertEqual(session.ended_at, session.transaction.stopped_at)
        self.assertGreater(session.ended_at, ended.ended_at)
        self.assertGreater(session.updated_at, ended.updated_at)
        assert session.energy_report is not None and ended.energy_report is not None
        self.assertGreater(
            session.energy_report["timestamp"], ended.energy_report["timestamp"]
        )


class ApiSessionStuckChargeTests(ChargingTestCase):
    def test_a_charge_steve_keeps_active_after_a_refused_stop_ends_the_session(
        self,
    ) -> None:
        # SteVe refuses a stop below the start value and keeps the charge active
        # forever (CONTRACT §11); a newer charge on the connector gives it away.
        session = self.begin_charging(self.create())
        pk = self.steve_transaction(session)["id"]
        self.standin.tick(60)
        refused = self.standin.station_stop(pk, stop_value=1)
        self.assertFalse(refused["accepted"], refused)
        self.standin.add_transaction("CP-001", 1, "TAG-0003")
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        self.assertIn("stopped reporting this charge", session.status_message)
        assert session.transaction is not None
        self.assertTrue(session.transaction.is_suspected_stuck)
        self.assertEqual(session.ended_at, session.transaction.last_reading_at)
        self.assertFalse(ApiSession.objects.open().exists())
        metrics = api_session_document(session)["metrics"]
        self.assertEqual(metrics["chargingStop"], session.ended_at)


class ApiSessionDeletedInSteveTests(ChargingTestCase):
    def test_a_charge_steve_deleted_ends_the_session_saying_so(self) -> None:
        # SteVe deletes a tag's or a charge box's transactions with it.
        session = self.begin_charging(self.create())
        self.standin.delete_transaction(self.steve_transaction(session)["id"])
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        self.assertIn("deleted in the charging network", session.status_message)


class ApiSessionReadingsTests(ChargingTestCase):
    def ended_by_the_station(
        self, session: ApiSession, stop_value: int | None = None
    ) -> ApiSession:
        """`session` after its station stopped it on its own and a sync saw it."""
        self.standin.station_stop(
            self.steve_transaction(session)["id"], stop_value=stop_value
        )
        self.sync()
        session = self.advance(session)
        self.assertEqual(session.status, ApiSession.Status.ENDED)
        return session

    def test_the_report_has_the_stations_units_and_soc_only_when_reported(
        self,
    ) -> None:
        alice_session = self.begin_charging(self.create())
        self.standin.station_stop(42)
        bob_session = self.begin_charging(self.create(user=self.bob, box="CP-002"))
        self.standin.tick(300)
        alice_report = self.advance(alice_session).energy_report
        bob_report = self.advance(bob_session).energy_report
        assert alice_report is not None and bob_report is not None
        self.assertNotIn("state_of_charge", alice_report)
        self.assertEqual(alice_report["power"]["unit"], "W")
        self.assertEqual(alice_report["energy_meter"]["unit"], "Wh")
        self.assertEqual(bob_report["state_of_charge"]["unit"], "Percent")
        self.assertIsInstance(bob_report["state_of_charge"]["value"], int)
        self.assertEqual(bob_report["power"]["unit"], "kW")
        self.assertEqual(bob_report["energy_meter"]["unit"], "kWh")
        self.assertEqual(bob_report["current"]["unit"], "A")

    def test_a_charge_stopped_before_its_first_sample_reports_its_stop(self) -> None:
        # No periodic sample yet: only the start reading, and the stop value SteVe
        # keeps on the transaction.
        session = self.begin_charging(self.create())
        tx = self.steve_transaction(session)
        stop_wh = int(tx["startValue"]) + 5
        session = self.ended_by_the_station(session, stop_value=stop_wh)
        assert session.energy_report is not None
        self.assertEqual(
            session.energy_report["energy_meter"], {"value": stop_wh, "unit": "Wh"}
        )
        # Never sampled, and stopped: nothing is delivered.
        self.assertEqual(session.energy_report["power"], {"value": 0.0, "unit": "W"})
        self.assertEqual(session.energy_report["current"], {"value": 0.0, "unit": "A"})
        assert session.transaction is not None
        stopped = session.transaction.stopped_at
        assert stopped is not None
        self.assertEqual(
            [(p["status"], p["endTime"]) for p in session.charging_activity],
            [("Charging", format_timestamp(stopped))],
        )

    def test_a_station_metering_in_kwh_reports_its_stop_in_kwh(self) -> None:
        # SteVe keeps the stop value in Wh; CP-002's register readings are in kWh.
        self.standin.station_stop(42)  # frees CP-002
        session = self.begin_charging(self.create(user=self.bob, box="CP-002"))
        self.standin.tick(300)
        report = self.advance(session).energy_report
        assert report is not None
        self.assertEqual(report["energy_meter"]["unit"], "kWh")
        stop_wh = round(report["energy_meter"]["value"] * 1000) + 2
        session = self.ended_by_the_station(session, stop_value=stop_wh)
        assert session.energy_report is not None
        self.assertEqual(
            session.energy_report["energy_meter"],
            {"value": stop_wh / 1000, "unit": "kWh"},
        )

    def test_after_the_stop_the_report_is_the_stop_reading_with_no_power(
        self,
    ) -> None:
        session = self.begin_charging(self.create())
        self.standin.tick(300)
        self.assertGreater(self.advance(session).energy_report["power"]["value"], 0)
        session = self.ended_by_the_station(session)
        assert session.transaction is not None and session.transaction.stopped_at
        report = session.energy_report
        assert report is not None
        self.assertEqual(
            report["timestamp"], format_timestamp(session.transaction.stopped_at)
        )
        self.assertEqual(report["power"], {"value": 0.0, "unit": "W"})
        self.assertEqual(report["current"], {"value": 0.0, "unit": "A"})

    def test_zero_power_shows_as_suspended_ev(self) -> None:
        session = self.begin_charging(self.create())
        tx = self.steve_transaction(session)
        now = timezone.now()
        self.standin.add_meter_values(
            tx["id"],
            [
                {"value": "7000", "measurand": "Power.Active.Import", "unit": "W",
                 "valueTimestamp": iso(now + timedelta(minutes=1))},
                {"value": "0", "measurand": "Power.Active.Import", "unit": "W",
                 "valueTimestamp": iso(now + timedelta(minutes=4))},
            ],
        )  # fmt: skip
        activity = self.advance(session).charging_activity
        self.assertEqual(
            [period["status"] for period in activity], ["Charging", "SuspendedEV"]
        )
        self.assertEqual(activity[0]["endTime"], activity[1]["startTime"])


def reading(
    at: datetime, value: str, measurand: str, unit: str, location: str | None = None
) -> MeterReading:
    return MeterReading(
        timestamp=at,
        value=value,
        measurand=measurand,
        unit=unit,
        phase=None,
        location=location,
        reading_context=None,
        format=None,
    )


class ChargingActivityTests(SimpleTestCase):
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def at(self, minutes: int) -> datetime:
        return self.start + timedelta(minutes=minutes)

    def test_it_merges_samples_into_periods(self) -> None:
        readings = [
            reading(self.at(1), "3.3", "Power.Active.Import", "kW"),
            reading(self.at(2), "3.2", "Power.Active.Import", "kW"),
            reading(self.at(3), "0.0", "Power.Active.Import", "kW"),
            reading(self.at(4), "3.1", "Power.Active.Import", "kW"),
        ]
        activity = charging_activity(readings, start=self.start, end=self.at(5))
        self.assertEqual(
            activity,
            [
                {"startTime": "2026-01-01T12:00:00.000Z",
                 "endTime": "2026-01-01T12:03:00.000Z", "status": "Charging"},
                {"startTime": "2026-01-01T12:03:00.000Z",
                 "endTime": "2026-01-01T12:04:00.000Z", "status": "SuspendedEV"},
                {"startTime": "2026-01-01T12:04:00.000Z",
                 "endTime": "2026-01-01T12:05:00.000Z", "status": "Charging"},
            ],
        )  # fmt: skip

    def test_without_power_it_follows_the_energy_register(self) -> None:
        register = "Energy.Active.Import.Register"
        readings = [
            reading(self.at(0), "1000", register, "Wh"),
            reading(self.at(10), "2000", register, "Wh"),
            reading(self.at(20), "2000", register, "Wh"),
        ]
        activity = charging_activity(readings, start=self.start, end=None)
        self.assertEqual(
            [(p["status"], p["endTime"]) for p in activity],
            [
                ("Charging", "2026-01-01T12:10:00.000Z"),
                ("SuspendedEV", "2026-01-01T12:20:00.000Z"),
            ],
        )

    def test_the_state_of_charge_is_a_whole_percent(self) -> None:
        readings = [reading(self.at(1), "69.5", "SoC", "Percent")]
        report = energy_report(readings)
        assert report is not None
        self.assertEqual(report["state_of_charge"], {"value": 70, "unit": "Percent"})
        self.assertEqual(report["timestamp"], "2026-01-01T12:01:00.000Z")

    def test_the_report_holds_only_values_of_its_own_timestamp(self) -> None:
        readings = [
            reading(self.at(1), "3.3", "Power.Active.Import", "kW"),
            reading(self.at(1), "16", "Current.Import", "A"),
            reading(self.at(1), "1200", "Energy.Active.Import.Register", "Wh"),
            reading(self.at(1), "41", "SoC", "Percent"),
            reading(self.at(2), "1300", "Energy.Active.Import.Register", "Wh"),
            reading(self.at(2), "2.9", "Power.Active.Import", "kW"),
        ]
        self.assertEqual(
            energy_report(readings),
            {
                "timestamp": "2026-01-01T12:02:00.000Z",
                "power": {"value": 2.9, "unit": "kW"},
                "energy_meter": {"value": 1300.0, "unit": "Wh"},
            },
        )

    def test_from_the_stop_on_power_and_current_are_zero(self) -> None:
        readings = [
            reading(self.at(1), "3.3", "Power.Active.Import", "kW"),
            reading(self.at(1), "16", "Current.Import", "A"),
            reading(self.at(1), "1200", "Energy.Active.Import.Register", "Wh"),
            reading(self.at(2), "1300", "Energy.Active.Import.Register", "Wh"),
        ]
        self.assertEqual(
            energy_report(readings, stopped_at=self.at(2)),
            {
                "timestamp": "2026-01-01T12:02:00.000Z",
                "current": {"value": 0.0, "unit": "A"},
                "power": {"value": 0.0, "unit": "kW"},
                "energy_meter": {"value": 1300.0, "unit": "Wh"},
            },
        )

    def test_the_energy_meter_is_the_outlets_as_the_sync_counts_it(self) -> None:
        register = "Energy.Active.Import.Register"
        readings = [
            reading(self.at(1), "9000", register, "Wh", location="Inlet"),
            reading(self.at(1), "1200", register, "Wh", location="Outlet"),
            reading(self.at(2), "9200", register, "Wh", location="Inlet"),
            reading(self.at(2), "1300", register, "Wh"),
        ]
        report = energy_report(readings)
        assert report is not None
        self.assertEqual(report["energy_meter"], {"value": 1300.0, "unit": "Wh"})

    def test_no_readings_no_activity_and_no_report(self) -> None:
        self.assertEqual(charging_activity([], start=self.start, end=None), [])
        self.assertIsNone(energy_report([]))
