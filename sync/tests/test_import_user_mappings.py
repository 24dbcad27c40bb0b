"""`manage.py import_user_mappings FILE.csv`."""

import tempfile
from io import StringIO
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase

from sessions_app.models import AuditEntry
from sync.models import UserMapping

GOOD_AND_BAD = """steveOcppIdTag,email,label
TAG-0001,dana@example.com,Dana's car
TAG-0002,dana@example.com,Dana's van
bad tag!,eli@example.com,Spaces are not allowed
TAG-0003,not-an-email,Broken email
TAG-0001,eli@example.com,Duplicate in file
TAG-0004,eli@example.com
TAG-0005,Eli@Example.com,Eli
"""


class ImportUserMappingsTests(TestCase):
    def run_import(self, text: str) -> tuple[str, str]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mappings.csv"
            path.write_text(text, encoding="utf-8")
            out, err = StringIO(), StringIO()
            call_command("import_user_mappings", str(path), stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    def test_it_imports_good_rows_and_reports_each_bad_row(self) -> None:
        out, err = self.run_import(GOOD_AND_BAD)
        self.assertIn("Line 4 skipped: An idTag is 1 to 40", err)
        self.assertIn("Line 5 skipped: not-an-email is not an email address.", err)
        self.assertIn("Line 6 skipped: The idTag TAG-0001 appears twice", err)
        self.assertIn("Line 7 skipped: Expected 3 columns, found 2.", err)
        self.assertIn("3 created, 0 updated, 0 unchanged, 4 rejected", out)
        self.assertIn("2 customer accounts created", out)
        tags = dict(
            UserMapping.objects.values_list("steve_ocpp_id_tag", "user__username")
        )
        self.assertEqual(
            tags,
            {
                "TAG-0001": "dana@example.com",
                "TAG-0002": "dana@example.com",
                "TAG-0005": "eli@example.com",
            },
        )
        dana = get_user_model().objects.get(username="dana@example.com")
        self.assertFalse(dana.has_usable_password())
        self.assertEqual(
            AuditEntry.objects.filter(action=AuditEntry.Action.MAPPING_CREATED).count(),
            3,
        )

    def test_it_is_idempotent(self) -> None:
        self.run_import(GOOD_AND_BAD)
        audit_entries = AuditEntry.objects.count()
        out, _ = self.run_import(GOOD_AND_BAD)
        self.assertIn("0 created, 0 updated, 3 unchanged, 4 rejected", out)
        self.assertIn("0 customer accounts created", out)
        self.assertEqual(UserMapping.objects.count(), 3)
        self.assertEqual(AuditEntry.objects.count(), audit_entries)

    def test_it_refuses_to_move_a_tag_to_another_customer(self) -> None:
        self.run_import("steveOcppIdTag,email,label\nTAG-0001,dana@example.com,\n")
        _, err = self.run_import(
            "steveOcppIdTag,email,label\nTAG-0001,eli@example.com,\n"
        )
        self.assertIn("already mapped to dana@example.com", err)
        self.assertEqual(UserMapping.objects.get().user.username, "dana@example.com")

    def test_it_updates_a_label_and_audits_before_and_after(self) -> None:
        self.run_import("steveOcppIdTag,email,label\nTAG-0001,dana@example.com,Old\n")
        out, _ = self.run_import(
            "steveOcppIdTag,email,label\nTAG-0001,dana@example.com,New\n"
        )
        self.assertIn("0 created, 1 updated", out)
        entry = AuditEntry.objects.get(action=AuditEntry.Action.MAPPING_UPDATED)
        self.assertEqual(entry.before["label"], "Old")
        self.assertEqual(entry.after["label"], "New")
        self.assertIsNone(entry.actor)

    def test_it_explains_a_wrong_header(self) -> None:
        with self.assertRaisesMessage(
            CommandError,
            "The first line must be the header steveOcppIdTag,email,label.",
        ):
            self.run_import("tag,email\nTAG-0001,dana@example.com\n")

    def test_it_explains_a_missing_file(self) -> None:
        with self.assertRaisesMessage(CommandError, "There is no file at /nope.csv."):
            call_command("import_user_mappings", "/nope.csv")
