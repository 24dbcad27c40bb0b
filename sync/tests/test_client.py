"""The SteVe client's sentences for a SteVe it cannot use, over real HTTP."""

from django.test import TestCase

from sync import services
from sync.client import SteveClient, SteveError
from sync.models import SyncRun
from sync.tests.standin_case import StandinTestMixin


class OldSteveTests(StandinTestMixin, TestCase):
    """SteVe before 3.12 lists transactions but has no /transactions/{pk} and no
    PATCH …/stop (CONTRACT §0): that is not a wrong STEVE_URL."""

    def test_a_sync_against_steve_3_11_says_it_needs_3_12(self) -> None:
        self.standin.set_fault("steve_3_11", count=-1)
        run = services.sync_run_transactions(trigger="command", client=self.steve)
        self.assertEqual(run.status, SyncRun.Status.FAILED)
        self.assertEqual(
            run.error,
            f"SteVe at {self.steve.base_url} answers its transaction list but not "
            "GET /transactions/{pk} (HTTP 404), which Polaris uses for meter values: "
            "Polaris needs SteVe 3.12 or newer. Upgrade SteVe.",
        )

    def test_a_manual_stop_against_steve_3_11_says_it_needs_3_12(self) -> None:
        pk = self.standin.scenario("zombie")[0]
        self.standin.set_fault("steve_3_11", count=-1)
        with self.assertRaises(SteveError) as raised:
            self.steve.stop_transaction(pk)
        self.assertEqual(raised.exception.status, 404)
        self.assertIn(
            "not PATCH /transactions/{pk}/stop (HTTP 404), which Polaris uses to stop "
            "a transaction: Polaris needs SteVe 3.12 or newer.",
            raised.exception.operator_message,
        )

    def test_a_stop_refused_as_a_method_says_it_needs_3_12(self) -> None:
        pk = self.standin.scenario("zombie")[0]
        self.standin.set_fault("error", status=405, path_contains="/stop")
        with self.assertRaises(SteveError) as raised:
            self.steve.stop_transaction(pk)
        self.assertIn(
            "not PATCH /transactions/{pk}/stop (HTTP 405)",
            raised.exception.operator_message,
        )
        self.assertEqual(
            raised.exception.message,
            "SteVe is older than 3.12, the version Polaris needs.",
        )

    def test_no_steve_api_at_all_is_still_a_wrong_url(self) -> None:
        # The list answers the same bare 404, so it is not SteVe's version.
        base_url = self.standin.base_url.removesuffix("/steve") + "/stevee"
        wrong = SteveClient(
            base_url=base_url,
            username=self.standin.username,
            password=self.standin.password,
            retry_delays=(),
        )
        with wrong, self.assertRaises(SteveError) as raised:
            wrong.transaction_details(1)
        self.assertEqual(
            raised.exception.operator_message,
            f"There is no SteVe API at {base_url} (HTTP 404): check STEVE_URL, "
            "context path included (e.g. /steve).",
        )
