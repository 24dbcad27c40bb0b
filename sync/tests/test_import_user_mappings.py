"""`manage.py import_user_mappings FILE.csv`."""

import tempfile
from io import StringIO
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from sessions_app.forms import MAPPING_IMPORT_MAX_BYTES
from sessions_app.models import AuditEntry
from sync.models import UserMapping
from sync.services.imports import user_mapping_import_text
from sync.tests.factories import (
    TransactionSyncStateFactory,
    UserFactory,
    UserMappingFactory,
)

GOOD_AND_BAD = """steveOcppIdTag,email,label
TAG-0001,dana@example.com,Dana's car
TAG-0002,dana@example.com,Dana's van
bad tag!,eli@example.com,Spaces are not allowed
TAG-0003,not-an-email,Broken email
TAG-0001,eli@example.com,Duplicate in file
TAG-0004,eli@example.com
TAG-0005,Eli@Example.com,Eli
"""


def import_file(path: Path, *args: str) -> tuple[str, str]:
    """The command's output and errors. A file with bad rows imports the others,
    then ends in a CommandError (exit status 1) that says so."""
    out, err = StringIO(), StringIO()
    try:
        call_command("import_user_mappings", str(path), *args, stdout=out, stderr=err)
    except CommandError as error:
        if "skipped (see above); the other rows were imported" not in str(error):
            raise
        assert "skipped:" in err.getvalue(), err.getvalue()
    else:
        assert " 0 skipped" in out.getvalue(), out.getvalue()
    return out.getvalue(), err.getvalue()


class ImportUserMappingsTests(TestCase):
    def run_import(self, text: str) -> tuple[str, str]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mappings.csv"
            path.write_text(text, encoding="utf-8")
            return import_file(path)

    def test_a_row_without_an_idtag_says_it_is_missing(self) -> None:
        _, err = self.run_import(
            "steveOcppIdTag,email,label\n,dana@example.com,Dana\n  ,eli@example.com,\n"
        )
        self.assertIn("Line 2 skipped: The idTag is missing.", err)
        self.assertIn("Line 3 skipped: The idTag is missing.", err)

    def test_it_imports_good_rows_and_reports_each_bad_row(self) -> None:
        out, err = self.run_import(GOOD_AND_BAD)
        self.assertIn("Line 4 skipped: An idTag is 1 to 40", err)
        self.assertIn("Line 5 skipped: not-an-email is not an email address.", err)
        self.assertIn("Line 6 skipped: The idTag TAG-0001 is on line 2 already", err)
        self.assertIn("Line 7 skipped: Expected 3 columns, found 2.", err)
        self.assertIn("3 created, 0 updated, 0 unchanged, 4 skipped", out)
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

    def test_it_says_which_tags_it_stored_in_steves_letter_case(self) -> None:
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0007")
        out, _ = self.run_import(
            "steveOcppIdTag,email,label\n"
            "tag-0007,dana@example.com,Dana\n"
            "TAG-0008,dana@example.com,Dana\n"
        )
        self.assertIn(
            "2 created, 0 updated, 0 unchanged, 0 skipped; 1 customer account "
            "created. 1 idTag was stored in the letter case SteVe uses, not the "
            "file's. No session with 1 of the new idTags has synced yet; the sync "
            "stores it in SteVe's letter case with the first one.",
            out,
        )
        self.assertTrue(UserMapping.objects.filter(steve_ocpp_id_tag="TAG-0007"))

    def test_a_tag_no_session_has_shown_is_never_said_to_be_in_steves_case(
        self,
    ) -> None:
        self.run_import("steveOcppIdTag,email,label\nTAG-0009,dana@example.com,Dana\n")
        out, _ = self.run_import(
            "steveOcppIdTag,email,label\ntag-0009,dana@example.com,Dana\n"
        )
        self.assertIn("0 created, 0 updated, 1 unchanged, 0 skipped", out)
        self.assertNotIn("letter case SteVe uses", out)
        # Once a session shows SteVe's spelling, the same file says so.
        TransactionSyncStateFactory(ocpp_id_tag="TAG-0009")
        out, _ = self.run_import(
            "steveOcppIdTag,email,label\ntag-0009,dana@example.com,Dana\n"
        )
        self.assertIn("1 idTag was stored in the letter case SteVe uses", out)

    def test_it_is_idempotent(self) -> None:
        self.run_import(GOOD_AND_BAD)
        audit_entries = AuditEntry.objects.count()
        out, _ = self.run_import(GOOD_AND_BAD)
        self.assertIn("0 created, 0 updated, 3 unchanged, 4 skipped", out)
        self.assertIn("0 customer accounts created", out)
        self.assertEqual(UserMapping.objects.count(), 3)
        self.assertEqual(AuditEntry.objects.count(), audit_entries)

    def test_a_dry_run_reports_what_the_import_would_do_and_saves_nothing(
        self,
    ) -> None:
        self.run_import("steveOcppIdTag,email,label\nTAG-0002,dana@example.com,Old\n")
        before = (
            list(get_user_model().objects.values()),
            list(UserMapping.objects.values()),
            list(AuditEntry.objects.values()),
        )
        out, err = StringIO(), StringIO()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mappings.csv"
            path.write_text(GOOD_AND_BAD, encoding="utf-8")
            with self.assertRaisesMessage(
                CommandError,
                "4 lines would be skipped (see above); fix them before importing "
                "the file.",
            ):
                call_command(
                    "import_user_mappings",
                    str(path),
                    "--dry-run",
                    stdout=out,
                    stderr=err,
                )
        self.assertIn(
            "Dry run, nothing was saved. The import would give 2 created, 1 updated, "
            "0 unchanged, 4 skipped, with 1 customer account created.",
            out.getvalue(),
        )
        self.assertIn("Line 5 would be skipped: not-an-email is not", err.getvalue())
        after = (
            list(get_user_model().objects.values()),
            list(UserMapping.objects.values()),
            list(AuditEntry.objects.values()),
        )
        self.assertEqual(after, before)
        # The import itself then does what the dry run said.
        out, _ = self.run_import(GOOD_AND_BAD)
        self.assertIn("2 created, 1 updated, 0 unchanged, 4 skipped", out)
        self.assertIn("1 customer account created", out)

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

    def test_it_says_how_many_deactivated_mappings_it_switched_back_on(self) -> None:
        text = (
            "steveOcppIdTag,email,label\n"
            "TAG-0001,dana@example.com,Car\nTAG-0002,dana@example.com,Van\n"
        )
        self.run_import(text)
        UserMapping.objects.filter(steve_ocpp_id_tag="TAG-0001").update(is_active=False)
        out, _ = self.run_import(text)
        self.assertIn("0 created, 1 updated (1 reactivated), 1 unchanged", out)
        self.assertTrue(UserMapping.objects.get(steve_ocpp_id_tag="TAG-0001").is_active)
        entry = AuditEntry.objects.get(action=AuditEntry.Action.MAPPING_UPDATED)
        self.assertEqual(
            (entry.before["isActive"], entry.after["isActive"]), (False, True)
        )

    def test_a_tag_repeated_in_another_letter_case_is_the_same_tag(self) -> None:
        # SteVe matches idTags without regard to case: 04A1 is the card 04a1.
        out, err = self.run_import(
            "steveOcppIdTag,email,label\n"
            "04a1,dana@example.com,Dana\n"
            "04A1,eli@example.com,Eli\n"
        )
        self.assertIn(
            "Line 3 skipped: The idTag 04A1 is on line 2 already; a tag maps to one "
            "customer.",
            err,
        )
        self.assertIn("1 created, 0 updated, 0 unchanged, 1 skipped", out)
        self.assertEqual(
            list(UserMapping.objects.values_list("user__username", flat=True)),
            ["dana@example.com"],
        )

    def test_a_tag_whose_row_was_skipped_is_mapped_by_its_corrected_row(self) -> None:
        # Skipped when read (no address) or when saved (no sign-in name).
        out, err = self.run_import(
            "steveOcppIdTag,email,label\n"
            "TAG-9,not-an-email,First try\n"
            "TAG-9,dana@example.com,Corrected\n"
            "TAG-8,o'brien@example.com,First try\n"
            "TAG-8,obrien@example.com,Corrected\n"
            "TAG-8,eli@example.com,Third\n"
        )
        self.assertIn("Line 2 skipped: not-an-email is not an email address.", err)
        self.assertIn("Line 4 skipped: o'brien@example.com cannot be", err)
        self.assertIn("Line 6 skipped: The idTag TAG-8 is on line 5 already", err)
        self.assertIn("2 created, 0 updated, 0 unchanged, 3 skipped", out)
        self.assertEqual(
            list(
                UserMapping.objects.order_by("steve_ocpp_id_tag").values_list(
                    "steve_ocpp_id_tag", "user__username", "label"
                )
            ),
            [
                ("TAG-8", "obrien@example.com", "Corrected"),
                ("TAG-9", "dana@example.com", "Corrected"),
            ],
        )

    def test_it_explains_a_wrong_header(self) -> None:
        refused = {
            "tag,email\r\nTAG-0001,dana@example.com\r\n": "; it is 'tag,email'.",
            "steveOcppIdTag;email;label\nTAG-0001;dana@example.com;Car\n": (
                "; it is 'steveOcppIdTag;email;label', separated by semicolons: save "
                "the file as CSV with commas."
            ),
        }
        for text, found in refused.items():
            with (
                self.subTest(text=text),
                self.assertRaisesMessage(
                    CommandError,
                    "The first line must be the header steveOcppIdTag,email,label"
                    + found,
                ),
            ):
                self.run_import(text)

    def test_a_file_with_only_its_header_says_nothing_was_imported(self) -> None:
        with self.assertRaisesMessage(
            CommandError, "has no rows under its header (steveOcppIdTag,email,label)"
        ):
            self.run_import("steveOcppIdTag,email,label\n\n")
        self.assertFalse(UserMapping.objects.exists())

    def test_it_imports_a_file_bigger_than_the_console_takes(self) -> None:
        # The console refuses a file over MAPPING_IMPORT_MAX_BYTES and sends staff
        # here: the command runs outside a web request and has no limit. (Padded
        # with a line of spaces, which the import skips as blank.)
        padding = " " * MAPPING_IMPORT_MAX_BYTES
        out, _ = self.run_import(
            f"steveOcppIdTag,email,label\nTAG-1,dana@example.com,Dana\n{padding}\n"
        )
        self.assertIn("1 created, 0 updated, 0 unchanged, 0 skipped", out)
        self.assertTrue(UserMapping.objects.filter(steve_ocpp_id_tag="TAG-1").exists())

    def test_it_explains_a_missing_file(self) -> None:
        with self.assertRaisesMessage(CommandError, "There is no file at /nope.csv."):
            call_command("import_user_mappings", "/nope.csv")


class ImportBadFilesTests(TestCase):
    """Files that stopped the import part way, or imported less than they said."""

    def run_import(self, content: bytes, *args: str) -> tuple[str, str]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "mappings.csv"
            path.write_bytes(content)
            return import_file(path, *args)

    def imported_tags(self) -> list[str]:
        return sorted(UserMapping.objects.values_list("steve_ocpp_id_tag", flat=True))

    def test_a_quote_left_open_rejects_only_its_own_line(self) -> None:
        out, err = self.run_import(
            b"steveOcppIdTag,email,label\n"
            b"TAG-0001,dana@example.com,\"Dana's car\n"
            b"TAG-0002,dana@example.com,Van\n"
            b"TAG-0003,dana@example.com,Bike\n"
        )
        self.assertIn("Line 2 skipped: The line is not valid CSV", err)
        self.assertIn("2 created, 0 updated, 0 unchanged, 1 skipped", out)
        self.assertEqual(self.imported_tags(), ["TAG-0002", "TAG-0003"])

    def test_a_value_past_the_csv_field_limit_is_said_to_be_too_long(self) -> None:
        _, err = self.run_import(
            b"steveOcppIdTag,email,label\n"
            + b"TAG-0001,dana@example.com,"
            + b"L" * 140_000
            + b"\n"
            + b"TAG-0002,dana@example.com,Van\n"
        )
        self.assertIn(
            "Line 2 skipped: A value on the line is longer than 131,072 characters",
            err,
        )
        self.assertEqual(self.imported_tags(), ["TAG-0002"])

    def test_a_nul_character_rejects_its_line_and_the_rest_is_imported(self) -> None:
        out, err = self.run_import(
            b"steveOcppIdTag,email,label\n"
            b"TAG-0001,dana@example.com,Car\n"
            b"TAG-0002,dana@example.com,V\x00an\n"
            b"TAG-0003,dana@example.com,Bike\n"
        )
        self.assertIn("Line 3 skipped: The line holds a NUL character", err)
        self.assertIn("2 created, 0 updated, 0 unchanged, 1 skipped", out)
        self.assertEqual(self.imported_tags(), ["TAG-0001", "TAG-0003"])

    def test_a_rejected_row_creates_no_account_and_names_its_column(self) -> None:
        long_label = "L" * 121
        out, err = self.run_import(
            b"steveOcppIdTag,email,label\n"
            + f"TAG-0001,dana@example.com,{long_label}\n".encode()
            + b"TAG-0002,o!brien@example.com,Car\n"
        )
        self.assertIn(
            "Line 2 skipped: The label is 121 characters long; at most 120 fit.", err
        )
        self.assertIn(
            "Line 3 skipped: o!brien@example.com cannot be a customer's sign-in name",
            err,
        )
        self.assertIn("0 created, 0 updated, 0 unchanged, 2 skipped", out)
        self.assertIn("; 0 customer accounts created.", out)
        self.assertFalse(get_user_model().objects.exists())

    def test_a_file_that_is_not_utf8_is_refused_before_any_row(self) -> None:
        rows = "".join(f"TAG-{n:04d},dana@example.com,Card {n}\n" for n in range(500))
        latin1 = "TAG-9999,dana@example.com,Café\n".encode("latin-1")
        with self.assertRaisesMessage(
            CommandError,
            "Line 502 is not UTF-8 text (byte 0xe9), so nothing was imported: save "
            'the file as UTF-8 ("CSV UTF-8" in a spreadsheet) and import it again.',
        ):
            self.run_import(f"steveOcppIdTag,email,label\n{rows}".encode() + latin1)
        self.assertFalse(UserMapping.objects.exists())

    def test_a_bom_and_crlf_line_ends_are_read_as_text(self) -> None:
        out, _ = self.run_import(
            b"\xef\xbb\xbfsteveOcppIdTag,email,label\r\n"
            b"TAG-0001,dana@example.com,Car\r\n\r\n"
            b"TAG-0002,dana@example.com,Van\r\n"
        )
        self.assertIn("2 created, 0 updated, 0 unchanged, 0 skipped", out)
        self.assertEqual(
            UserMapping.objects.get(steve_ocpp_id_tag="TAG-0002").label, "Van"
        )

    def test_a_long_file_reports_its_progress(self) -> None:
        blank_lines = b"\n" * 2500
        out, _ = self.run_import(
            b"steveOcppIdTag,email,label\n"
            + blank_lines
            + b"TAG-0001,dana@example.com,Car\n"
        )
        self.assertEqual(
            out.splitlines(),
            [
                "Line 1000 of 2502…",
                "Line 2000 of 2502…",
                "1 created, 0 updated, 0 unchanged, 0 skipped; 1 customer account "
                "created. No session with this idTag has synced yet; the sync stores "
                "it in SteVe's letter case with the first one.",
            ],
        )


class ImportInChunksTests(TestCase):
    """Accounts and mappings are read and written per chunk of lines, not per row:
    10,000 rows took about 13 queries each (64 s)."""

    def test_each_chunk_takes_a_bounded_number_of_queries(self) -> None:
        owner = UserFactory(username="owner@example.com")
        for n in range(0, 2500, 100):
            UserMappingFactory(steve_ocpp_id_tag=f"T-{n:05d}", user=owner, label="Old")
        other = UserFactory(username="other@example.com")
        UserMappingFactory(steve_ocpp_id_tag="t-00007", user=other)
        # Every chunk creates mappings, new accounts and updates and rejects a
        # row the database decides on (T-00007 is someone else's, in lower case).
        rows = "".join(
            f"T-{n:05d},{'owner' if n % 100 == 0 else f'c{n}'}@example.com,Card {n}\n"
            for n in range(2500)
        )
        with CaptureQueriesContext(connection) as queries:
            result = user_mapping_import_text(
                actor=None, text=f"steveOcppIdTag,email,label\n{rows}"
            )
        # Three chunks (lines 2-999, 1000-1999, 2000-2501), each a savepoint and
        # its release, the spelling lock, two reads, two of how SteVe writes the
        # tags (as typed, then in any letter case), at most one write per table,
        # and the read of the sessions to store in the mappings' spellings.
        self.assertLessEqual(len(queries), 3 * 12)
        self.assertEqual(
            (result.created, result.updated, result.unchanged, result.users_created),
            (2474, 25, 0, 2474),
        )
        self.assertEqual(
            [(r.line, r.reason) for r in result.rejected],
            [
                (
                    9,
                    "The idTag T-00007 is already mapped to other@example.com; to "
                    "move it to another customer, edit that mapping in the console.",
                )
            ],
        )
        # The rejected row's account was never created, nor counted.
        self.assertFalse(
            get_user_model().objects.filter(username="c7@example.com").exists()
        )
        self.assertEqual(
            AuditEntry.objects.filter(action=AuditEntry.Action.MAPPING_CREATED).count(),
            2474,
        )
        updated = AuditEntry.objects.get(
            action=AuditEntry.Action.MAPPING_UPDATED,
            after__steveOcppIdTag="T-01200",
        )
        self.assertEqual(
            (updated.before["label"], updated.after["label"]), ("Old", "Card 1200")
        )
        mapping = UserMapping.objects.get(steve_ocpp_id_tag="T-01201")
        self.assertEqual(
            (mapping.user.username, mapping.label), ("c1201@example.com", "Card 1201")
        )
        self.assertFalse(mapping.user.has_usable_password())

    def test_an_account_with_the_email_as_its_address_is_used_not_duplicated(
        self,
    ) -> None:
        # As the console's form finds a customer: by username, else by address.
        admin = UserFactory(username="admin", email="Admin@Example.com")
        # An older account with the address loses to the one named by it.
        UserFactory(username="fleet", email="fay@example.com")
        named = UserFactory(username="fay@example.com", email="fleet@example.com")
        result = user_mapping_import_text(
            actor=None,
            text="steveOcppIdTag,email,label\nX,admin@example.com,x\n"
            "Y,FAY@example.com,y\n",
        )
        self.assertEqual((result.created, result.users_created), (2, 0))
        self.assertEqual(
            dict(UserMapping.objects.values_list("steve_ocpp_id_tag", "user")),
            {"X": admin.pk, "Y": named.pk},
        )

    def test_an_account_in_another_letter_case_is_used_not_duplicated(self) -> None:
        dana = UserFactory(username="Dana@Example.com")
        result = user_mapping_import_text(
            actor=None,
            text="steveOcppIdTag,email,label\nTAG-1,dana@example.com,Car\n"
            "TAG-2,DANA@example.COM,Van\n",
        )
        self.assertEqual((result.created, result.users_created), (2, 0))
        self.assertEqual(
            set(UserMapping.objects.values_list("user", flat=True)), {dana.pk}
        )
