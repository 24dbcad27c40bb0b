"""The sign-in page with login throttling (polaris/throttle.py).

A locked username+address gets the sign-in page again with HTTP 429 and one
sentence saying when to retry; the password is not even checked while locked.
"""

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponse

from polaris import throttle

LOCKED_MESSAGE = (
    "Too many failed sign-ins for this account from your network. "
    "Sign-in is paused for {minutes} minutes; try again later or contact your "
    "operator."
)


def locked_message() -> str:
    minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
    return LOCKED_MESSAGE.format(minutes=minutes)


class ThrottledAuthenticationForm(AuthenticationForm):
    """AuthenticationForm that counts failures and refuses locked pairs."""

    locked = False

    def clean(self) -> dict[str, object]:
        username = str(self.data.get("username") or "")[:254]
        address = throttle.client_address(self.request)
        if username and throttle.is_locked(username, address):
            self.locked = True
            raise forms.ValidationError(locked_message(), code="locked")
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if (
                getattr(error, "code", None) == "invalid_login"
                and username
                and throttle.record_failure(username, address)
            ):
                self.locked = True
                raise forms.ValidationError(locked_message(), code="locked") from None
            raise
        throttle.reset(username, address)
        return cleaned


class LoginView(auth_views.LoginView):
    """`/accounts/login/`: answers 429 while the username is locked."""

    form_class = ThrottledAuthenticationForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "locked", False):
            response.status_code = 429
        return response
