"""`manage.py create_api_token USERNAME`."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase

from sessions_app.models import ApiToken


class CreateApiTokenTests(TestCase):
    def setUp(self) -> None:
        self.user = get_user_model().objects.create_user(
            "driver@example.com", "driver@example.com", "pw"
        )

    def run_command(self, *args: str) -> str:
        out = StringIO()
        call_command("create_api_token", *args, stdout=out)
        return out.getvalue()

    def test_it_prints_a_working_token_as_its_last_line(self) -> None:
        output = self.run_command("driver@example.com", "--name", "fleet app")
        raw = output.strip().splitlines()[-1]
        self.assertTrue(raw.startswith("pol_"))
        token = ApiToken.objects.get()
        self.assertEqual((token.user, token.name), (self.user, "fleet app"))
        response = self.client.get(
            "/api/v1/sessions", headers={"Authorization": f"Bearer {raw}"}
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["result"]["items"], [])

    def test_each_run_makes_a_new_token(self) -> None:
        first = self.run_command("driver@example.com").splitlines()[-1]
        second = self.run_command("driver@example.com").splitlines()[-1]
        self.assertNotEqual(first, second)
        self.assertEqual(ApiToken.objects.count(), 2)

    def test_an_unknown_user_is_an_error(self) -> None:
        with self.assertRaisesMessage(CommandError, "no user 'nobody'"):
            self.run_command("nobody")
        self.assertFalse(ApiToken.objects.exists())

    def test_an_inactive_user_is_an_error(self) -> None:
        self.user.is_active = False
        self.user.save()
        with self.assertRaisesMessage(CommandError, "inactive"):
            self.run_command("driver@example.com")

    def test_an_over_long_name_is_refused_with_a_sentence(self) -> None:
        with self.assertRaisesMessage(
            CommandError,
            "name: Ensure this value has at most 120 characters (it has 121).",
        ):
            self.run_command("driver@example.com", "--name", "n" * 121)
        self.assertFalse(ApiToken.objects.exists())

    def test_a_username_in_another_letter_case_is_suggested(self) -> None:
        with self.assertRaisesMessage(
            CommandError,
            "There is no user 'Driver@Example.com'; did you mean 'driver@example.com'?",
        ):
            self.run_command("Driver@Example.com")
        self.assertFalse(ApiToken.objects.exists())

    def test_a_token_expires_in_90_days_unless_told_otherwise(self) -> None:
        now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
        with time_machine.travel(now, tick=False):
            default = self.run_command("driver@example.com")
            week = self.run_command("driver@example.com", "--expires-in-days", "7")
            never = self.run_command("driver@example.com", "--never-expires")
        self.assertIn("It works until 2027-03-07 10:00 UTC", default)
        self.assertIn("It works until 2026-12-14 10:00 UTC", week)
        self.assertIn("It works until revoked", never)
        self.assertEqual(
            list(ApiToken.objects.order_by("id").values_list("expires_at", flat=True)),
            [now + timedelta(days=90), now + timedelta(days=7), None],
        )

    def test_a_lifetime_out_of_range_or_given_twice_is_refused(self) -> None:
        refusals = {
            ("--expires-in-days", "0"): "expected a number of days from 1 to 3650",
            ("--expires-in-days", "soon"): "not 'soon'",
            ("--expires-in-days", "3651"): "from 1 to 3650",
            ("--expires-in-days", "7", "--never-expires"): "not allowed with",
        }
        for args, message in refusals.items():
            with (
                self.subTest(args=args),
                self.assertRaisesMessage(CommandError, message),
            ):
                self.run_command("driver@example.com", *args)
        self.assertFalse(ApiToken.objects.exists())
