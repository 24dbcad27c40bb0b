"""Start charging from the portal's charger cards, against the stand-in."""

from django.contrib.messages import constants
from django.http import HttpResponse
from django.urls import reverse

from sessions_app.models import ApiSession
from sessions_app.tests.test_charging import REMOTE_START, ChargingTestCase
from sync.models import Charger


class ChargerStartTests(ChargingTestCase):
    def start(self) -> HttpResponse:
        charger = Charger.objects.get(charge_box_id="CP-001", connector_id=1)
        self.client.force_login(self.alice)
        url = reverse("portal:charger-start", args=[charger.pk])
        return self.client.post(url, follow=True)

    def only_message(self, response: HttpResponse) -> tuple[int, str]:
        sent = list(response.context["messages"])
        self.assertEqual(len(sent), 1, sent)
        return sent[0].level, sent[0].message

    def test_an_accepted_start_says_charging_is_starting(self) -> None:
        response = self.start()
        self.assertEqual(
            self.only_message(response),
            (constants.SUCCESS, "Charging is starting at CP-001."),
        )

    def test_a_start_whose_answer_was_lost_says_what_its_session_says(self) -> None:
        self.standin.set_fault("malformed", path_contains="RemoteStartTransaction")
        response = self.start()
        session = ApiSession.objects.get()
        self.assertEqual(session.status, ApiSession.Status.CREATED)
        self.assertIn("answer was lost", session.status_message)
        self.assertEqual(
            self.only_message(response), (constants.WARNING, session.status_message)
        )
        self.assertNotContains(response, "Charging is starting")
        self.assertEqual(self.steve_requests(REMOTE_START), 1)

    def test_a_start_the_station_did_not_answer_in_time_says_so(self) -> None:
        self.standin.set_fault(
            "timeout_operation", delay=0.1, path_contains="RemoteStartTransaction"
        )
        response = self.start()
        level, text = self.only_message(response)
        self.assertEqual(level, constants.WARNING)
        self.assertEqual(text, ApiSession.objects.get().status_message)
        self.assertIn("did not answer SteVe in time", text)

    def test_a_refused_start_is_an_error_and_stores_nothing(self) -> None:
        self.standin.set_fault("error", status=503, path_contains="operations")
        level, text = self.only_message(self.start())
        self.assertEqual(level, constants.ERROR)
        self.assertIn("could not be sent", text)
        self.assertFalse(ApiSession.objects.exists())
