"""Forms of the portal."""

from django import forms

from portal.services import RESERVATION_MINUTES


class ReservationForm(forms.Form):
    minutes = forms.TypedChoiceField(
        choices=[(m, f"{m} minutes") for m in RESERVATION_MINUTES],
        coerce=int,
        initial=30,
    )


class SwitchForm(forms.Form):
    account = forms.ChoiceField(
        choices=[("console", "console"), ("customer", "customer")]
    )


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
