"""Forms of the admin console."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import validate_email
from django.http import QueryDict
from django.utils import timezone

from sessions_app.models import ApiToken
from sessions_app.models.tokens import DEFAULT_EXPIRY_DAYS
from sync.models import SyncRun, UserMapping
from sync.services.mappings import (
    ID_TAG_MAX_LENGTH,
    customers_by_email,
    new_customer_account,
    validate_id_tag,
    validate_tag_is_free,
)

STATUS_CHOICES = [("all", "All"), ("active", "Active"), ("completed", "Completed")]
TAG_MAX_LENGTH = 100
SEARCH_MAX_LENGTH = 100


def _search_text(raw: str) -> str:
    """Typed search text, trimmed and without NUL: Postgres text cannot hold it,
    so a search containing one would be a 500."""
    return raw.replace("\x00", "").strip()


@dataclass(frozen=True)
class SessionFilters:
    """The Charging Sessions filters after fallbacks, plus notes for the person."""

    status: str = "all"
    date_from: date | None = None
    date_to: date | None = None
    tag: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def updated_from(self) -> datetime | None:
        """Midnight at the start of From, in the operator's time zone."""
        if self.date_from is None:
            return None
        return timezone.make_aware(datetime.combine(self.date_from, time.min))

    @property
    def updated_to(self) -> datetime | None:
        """The last microsecond of To, in the operator's time zone (To is inclusive).

        Counted back from the next local midnight, not written as 23:59:59.999999:
        where the clock goes back at midnight (America/Santiago in April) the day's
        last hour happens twice, and the second one belongs to To as well.
        """
        if self.date_to is None:
            return None
        try:
            next_day = self.date_to + timedelta(days=1)
        except OverflowError:  # To is 9999-12-31.
            return timezone.make_aware(datetime.combine(self.date_to, time.max))
        next_midnight = timezone.make_aware(datetime.combine(next_day, time.min))
        # In UTC: arithmetic on a zoned datetime moves the wall clock.
        return timezone.localtime(
            next_midnight.astimezone(UTC) - timedelta(microseconds=1)
        )

    def chips(self) -> list[tuple[str, str, str]]:
        """(name, label, value as the page writes it) of each active filter, for
        removable chips: "Status: Completed", "From: Dec 1, 2026"."""
        shown = {"status": dict(STATUS_CHOICES).get(self.status, self.status)}
        for name, day in (("from", self.date_from), ("to", self.date_to)):
            if day:
                shown[name] = f"{day:%b} {day.day}, {day.year}"
        labels = {"status": "Status", "from": "From", "to": "To", "tag": "Tag"}
        return [
            (name, labels[name], shown.get(name, value))
            for name, value in self.as_query().items()
        ]

    def as_query(self) -> dict[str, str]:
        """The active filters as query parameters (for links that keep them)."""
        query = {}
        if self.status != "all":
            query["status"] = self.status
        if self.date_from:
            query["from"] = self.date_from.isoformat()
        if self.date_to:
            query["to"] = self.date_to.isoformat()
        if self.tag:
            query["tag"] = self.tag
        return query


def _parse_date(raw: str, label: str, notes: list[str]) -> date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        notes.append(f"{label} date “{raw[:40]}” is not a date (YYYY-MM-DD); ignored.")
        return None


def parse_session_filters(query: QueryDict) -> SessionFilters:
    """Read the filters from a query string, never failing.

    A status other than all, active or completed (in those letters: the seed's
    "any other value falls back to all") falls back to all with a note; a
    malformed date is ignored with a note.
    """
    notes: list[str] = []
    status = query.get("status", "all")
    if status not in {value for value, _ in STATUS_CHOICES}:
        if status:
            notes.append(
                f"Status “{status[:40]}” is not all, active or completed; showing all."
            )
        status = "all"
    date_from = _parse_date(query.get("from", ""), "From", notes)
    date_to = _parse_date(query.get("to", ""), "To", notes)
    if date_from and date_to and date_to < date_from:
        notes.append("To is before From, so no session can match.")
    tag = _search_text(query.get("tag", ""))
    if len(tag) > TAG_MAX_LENGTH:
        notes.append(
            f"Tag is longer than {TAG_MAX_LENGTH} characters; "
            f"searching for its first {TAG_MAX_LENGTH}."
        )
        tag = tag[:TAG_MAX_LENGTH].rstrip()
    return SessionFilters(
        status=status,
        date_from=date_from,
        date_to=date_to,
        tag=tag,
        notes=tuple(notes),
    )


def parse_user_mapping_search(query: QueryDict) -> str:
    """The mapping list's search (`q`), at most SEARCH_MAX_LENGTH characters."""
    return _search_text(query.get("q", ""))[:SEARCH_MAX_LENGTH]


class SessionFilterForm(forms.Form):
    """Renders the filter bar; values come from `SessionFilters`, never errors."""

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    tag = forms.CharField(
        required=False,
        max_length=TAG_MAX_LENGTH,
        label="Tag",
        help_text="EV card / idTag, any part of it",
    )

    def __init__(self, filters: SessionFilters) -> None:
        super().__init__(
            initial={
                "status": filters.status,
                "from": filters.date_from,
                "to": filters.date_to,
                "tag": filters.tag,
            }
        )
        # `from` is a Python keyword, so these fields are added by name. Both are
        # described by the help under To, which names the operator's time zone.
        date_attrs = {"type": "date", "aria-describedby": "dates-help"}
        self.fields["from"] = forms.DateField(
            required=False, label="From", widget=forms.DateInput(attrs=date_attrs)
        )
        self.fields["to"] = forms.DateField(
            required=False, label="To", widget=forms.DateInput(attrs=date_attrs)
        )
        self.order_fields(["status", "from", "to", "tag"])


class UserMappingForm(forms.ModelForm):
    """Create or edit a mapping; the customer is chosen by email."""

    customer_email = forms.CharField(
        label="Customer email",
        help_text="The customer's account email: the card's sessions are theirs.",
        widget=forms.EmailInput,
    )
    create_customer = forms.BooleanField(
        required=False,
        label="Create the customer's account if this email has none",
        help_text="Its sign-in name is the email. It has no password until staff "
        "set one in Django admin: Polaris sends no email.",
    )

    class Meta:
        model = UserMapping
        fields = ["steve_ocpp_id_tag", "label", "billing_customer_id", "is_active"]
        labels = {
            "steve_ocpp_id_tag": "idTag",
            "billing_customer_id": "Billing customer id",
            "is_active": "Active",
        }
        help_texts = {
            "steve_ocpp_id_tag": (
                "The card's idTag as SteVe knows it. Sessions are linked by the "
                "exact idTag: once the sync has seen this card, its letter case is "
                "kept."
            ),
            "label": (
                "The name the console shows for this card's sessions; without one, "
                "the customer's email."
            ),
            "billing_customer_id": "The customer's id in the billing system, if any.",
            "is_active": (
                "With an inactive card the customer can no longer start or reserve "
                "a charger in the portal; its sessions stay in their history."
            ),
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Labels without Django's colon, like every other form in the console.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # The tag and whose it is first; the extra field would come last.
        self.order_fields(["steve_ocpp_id_tag", "customer_email", "create_customer"])
        # validate_id_tag's limit, not the column's: typing stops where saving would
        # fail, instead of the browser cutting a pasted tag at 255 silently.
        self.fields["steve_ocpp_id_tag"].widget.attrs["maxlength"] = ID_TAG_MAX_LENGTH
        if self.instance.pk:
            customer = self.fields["customer_email"]
            customer.initial = self.instance.user.email or (
                self.instance.user.get_username()
            )
            if not _is_email(customer.initial):
                # A sign-in name Django admin made no address: kept as it is.
                customer.widget = forms.TextInput(attrs=customer.widget.attrs)
            # Sessions belong to a card, not to whoever held it then.
            self.fields["customer_email"].help_text += (
                " Another email moves the card with its whole history: that "
                "customer's portal then shows its past sessions and usage, and "
                "this one's no longer does."
            )

    def clean_customer_email(self) -> str:
        email: str = self.cleaned_data["customer_email"].strip()
        if self.instance.pk and email == self.instance.user.get_username():
            return email  # the customer the card has, whatever their sign-in name
        validate_email(email)
        return email

    def clean_steve_ocpp_id_tag(self) -> str:
        tag = validate_id_tag(self.cleaned_data["steve_ocpp_id_tag"])
        validate_tag_is_free(tag, mapping=self.instance if self.instance.pk else None)
        return tag

    def clean(self) -> dict[str, Any]:
        """The customer: the account with this email, or a new one (unsaved, as
        `user_mapping_create` saves it) when staff asked for it."""
        super().clean()
        cleaned = self.cleaned_data
        email = cleaned.get("customer_email", "").strip()
        if not email:
            return cleaned
        user = customers_by_email([email]).get(email)
        if user is None and cleaned.get("create_customer"):
            try:
                user = new_customer_account(email)
            except forms.ValidationError as error:
                self.add_error("customer_email", error)
                return cleaned
        if user is None:
            self.add_error(
                "customer_email",
                "No customer account has this email: tick “Create the customer's "
                "account if this email has none” to create one.",
            )
            return cleaned
        cleaned["customer_email"] = user
        return cleaned


def _is_email(value: str) -> bool:
    try:
        validate_email(value)
    except forms.ValidationError:
        return False
    return True


# A mapping row (an idTag, an email, a label) is some 50 to 100 bytes, so 1 MB
# holds 10,000 to 20,000 rows: more than anyone imports from the console at once.
# The import reads, checks and saves every row inside the request: a 3 MB file of
# junk took 8 s of CPU there, a 1 MB file of 19,000 new customers takes some 4 s
# (2 MB, twice that). A bigger file goes through `manage.py import_user_mappings`,
# which runs outside a request and takes any size. The limit is below Django's
# FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, the default): a file within it is held in
# memory, and a bigger one is spooled to disk and refused unread.
MAPPING_IMPORT_MAX_BYTES = 1024 * 1024
MAPPING_IMPORT_MAX_SIZE = "1 MB"
CHOOSE_A_CSV_FILE = "Choose a CSV file to import."


class UserMappingImportForm(forms.Form):
    # An empty file is the import's to refuse, with the sentence it gives for any
    # file without the header; the form only asks for a file when there is none.
    file = forms.FileField(
        label="CSV file",
        help_text=f"Up to {MAPPING_IMPORT_MAX_SIZE}; import a bigger file on the "
        "server with manage.py import_user_mappings FILE.csv.",
        allow_empty_file=True,
        error_messages={
            "required": CHOOSE_A_CSV_FILE,
            "invalid": CHOOSE_A_CSV_FILE,
            "missing": CHOOSE_A_CSV_FILE,
        },
    )

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        size = upload.size or 0
        if size > MAPPING_IMPORT_MAX_BYTES:
            megabytes = f"{size / 1024 / 1024:.1f}"
            # A file just over the limit would round to it and read as within it.
            if float(megabytes) * 1024 * 1024 <= MAPPING_IMPORT_MAX_BYTES:
                shown = f"just over {MAPPING_IMPORT_MAX_SIZE}"
            else:
                shown = f"{megabytes} MB"
            raise forms.ValidationError(
                f"This file is {shown}; the console imports files of up to "
                f"{MAPPING_IMPORT_MAX_SIZE}, so nothing was imported. Split it "
                "into smaller files, or import it on the server with manage.py "
                "import_user_mappings FILE.csv, which takes files of any size.",
                code="too_big",
            )
        return upload


NEVER_EXPIRES = "never"


class ApiTokenForm(forms.Form):
    """A new Sessions API token's name and lifetime, in the console and the
    portal."""

    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        required=False,
        label="Token name",
        widget=forms.TextInput(
            attrs={
                "class": "input",
                "placeholder": "What it is for, e.g. fleet app",
            }
        ),
    )
    # Days, or never, which is asked for by name: a form sent without the field
    # gets the default, not the most lasting token.
    expires_in_days = forms.ChoiceField(
        choices=[
            ("30", "30 days"),
            ("90", "90 days"),
            ("365", "1 year"),
            (NEVER_EXPIRES, "Never"),
        ],
        required=False,
        initial=str(DEFAULT_EXPIRY_DAYS),
        label="Expires in",
        widget=forms.Select(attrs={"class": "select"}),
    )

    def expires_at(self) -> datetime | None:
        """When the valid form's token stops working, None for never."""
        choice = self.cleaned_data["expires_in_days"] or str(DEFAULT_EXPIRY_DAYS)
        if choice == NEVER_EXPIRES:
            return None
        return timezone.now() + timedelta(days=int(choice))


@dataclass(frozen=True)
class SyncRunFilters:
    """The Sync runs filters: a kind and a status, "" for all."""

    kind: str = ""
    status: str = ""
    notes: tuple[str, ...] = field(default=())

    def as_query(self) -> dict[str, str]:
        """The filters that narrow the list, as query parameters."""
        return {
            name: value
            for name, value in (("kind", self.kind), ("status", self.status))
            if value
        }

    def shows(self, *, kind: str, status: str) -> bool:
        """Whether a run of `kind` with `status` is among the runs listed."""
        return self.kind in ("", kind) and self.status in ("", status)

    @property
    def kind_label(self) -> str:
        """The kind as the filter offers it ("Charger probe"), "" for all."""
        return SyncRun.Kind(self.kind).label if self.kind else ""

    @property
    def status_label(self) -> str:
        """The status as the filter offers it ("Failed"), "" for all."""
        return SyncRun.Status(self.status).label if self.status else ""


def parse_sync_run_filters(query: QueryDict) -> SyncRunFilters:
    """Kind and status from a query string; a missing one means all, an unknown
    one too, with a note saying so."""
    notes = []
    kind = query.get("kind", "")
    if kind and kind not in SyncRun.Kind.values:
        notes.append(f"Kind “{kind[:40]}” is not a kind of sync run; showing all.")
        kind = ""
    status = query.get("status", "")
    if status and status not in SyncRun.Status.values:
        notes.append(
            f"Status “{status[:40]}” is not a status of a sync run; showing all."
        )
        status = ""
    return SyncRunFilters(kind=kind, status=status, notes=tuple(notes))


class SyncRunFilterForm(forms.Form):
    """Renders the Sync runs filter bar from `SyncRunFilters`."""

    kind = forms.ChoiceField(
        choices=[("", "All kinds"), *SyncRun.Kind.choices], required=False
    )
    status = forms.ChoiceField(
        choices=[("", "All statuses"), *SyncRun.Status.choices], required=False
    )

    def __init__(self, filters: SyncRunFilters) -> None:
        super().__init__(initial={"kind": filters.kind, "status": filters.status})
