"""Forms of the portal."""

from django import forms
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from portal.services import RESERVATION_MINUTES

RESERVATION_MINUTE_CHOICES = [(m, f"{m} minutes") for m in RESERVATION_MINUTES]


class ChargerForm(forms.Form):
    """The charger a card's Start or Reserve button acts on. A card names it in a
    field rather than in its form's URL: fifty cards would otherwise reverse two
    URLs each, a quarter of the time the dashboard spends rendering them."""

    charger = forms.IntegerField(min_value=1)


class ReservationForm(forms.Form):
    minutes = forms.TypedChoiceField(
        choices=RESERVATION_MINUTE_CHOICES,
        coerce=int,
        initial=30,
    )


# The <option>s of every charger card's reservation select (up to fifty a page),
# rendered once rather than once per card.
RESERVATION_MINUTE_OPTIONS = format_html_join(
    "",
    '<option value="{}"{}>{}</option>',
    (
        (value, mark_safe(" selected") if value == 30 else "", label)
        for value, label in RESERVATION_MINUTE_CHOICES
    ),
)


class SwitchForm(forms.Form):
    account = forms.ChoiceField(
        choices=[("console", "console"), ("customer", "customer")]
    )
