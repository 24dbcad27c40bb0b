"""Sign-in and password change with login throttling (polaris/throttle.py), and
sign-out.

A locked username+address gets the sign-in page again with HTTP 429 and one
sentence saying when to retry; the password is not even checked while locked. The
password change page's check of the current password counts against the same
lock: a signed-in browser left open must not be a way to guess the password.

Signing out, or signing in as someone else, clears the browser session and with
it any acting as a customer: both end acting through the portal's service first,
so the audit log gets its `impersonation.ended` entry.
"""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import password_validation
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from polaris import throttle
from portal.acting import act_as_end

LOCKED_MESSAGES = {
    throttle.Lock.ACCOUNT: (
        "Too many failed sign-ins for this account from your network. "
        "Sign-in is paused for {minutes} minutes; try again later or contact your "
        "operator."
    ),
    throttle.Lock.ADDRESS: (
        "Too many failed sign-ins from your network. Sign-in from it is paused "
        "for {minutes} minutes; try again later or contact your operator."
    ),
}


def locked_message(
    lock: throttle.Lock, sentences: dict[throttle.Lock, str] = LOCKED_MESSAGES
) -> str:
    minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
    return sentences[lock].format(minutes=minutes)


class ThrottledAuthenticationForm(AuthenticationForm):
    """AuthenticationForm that counts failures and refuses locked pairs."""

    locked = False
    # Django's own adds that both fields may be case-sensitive; the email that
    # customers sign in with is not (EmailCaseBackend).
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": (
            "That email or username and password do not match an account. "
            "Check the password: it is case-sensitive."
        ),
    }

    def clean(self) -> dict[str, object]:
        # The username as the field cleaned it (NFKC-normalised and stripped), the
        # one the backends look up: the lock must hold for every spelling that
        # signs in as the same account, one typed in full-width letters included.
        username = str(self.cleaned_data.get("username") or "")
        address = throttle.client_address(self.request)
        lock = throttle.lock_of(username, address) if username else None
        if lock is not None:
            self.locked = True
            raise forms.ValidationError(locked_message(lock), code="locked")
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if getattr(error, "code", None) == "invalid_login" and username:
                lock = throttle.record_failure(username, address)
                if lock is not None:
                    self.locked = True
                    message = locked_message(lock)
                    raise forms.ValidationError(message, code="locked") from None
            raise
        throttle.reset(username, address)
        return cleaned


PASSWORD_CHECK_LOCKED_MESSAGES = {
    throttle.Lock.ACCOUNT: (
        "Too many wrong passwords for this account from your network. Password "
        "changes and sign-in are paused for {minutes} minutes; try again later or "
        "contact your operator."
    ),
    throttle.Lock.ADDRESS: (
        "Too many wrong passwords from your network. Password changes and sign-in "
        "from it are paused for {minutes} minutes; try again later or contact your "
        "operator."
    ),
}


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """PasswordChangeForm whose check of the current password counts failures
    against the sign-in lock of this account from this address."""

    locked = False
    error_messages = {
        **PasswordChangeForm.error_messages,
        "password_incorrect": (
            "Your current password was entered incorrectly. Please enter it again."
        ),
    }

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        self.fields["old_password"].label = "Current password"
        # One sentence in the form's help style, not Django's bulleted list.
        self.fields["new_password1"].help_text = " ".join(
            password_validation.password_validators_help_texts()
        )
        self.fields["new_password2"].help_text = "The new password again."

    def clean(self) -> dict[str, Any] | None:
        old = self.cleaned_data.get("old_password")
        if old and old == self.cleaned_data.get("new_password1"):
            # It would change nothing but sign the other devices out; the rules
            # it may also break are beside the point.
            self.add_error(
                "new_password1",
                "This is your current password; choose a different one.",
            )
        return super().clean()

    def validate_password_for_user(
        self, user: Any, password_field_name: str = "new_password1"
    ) -> None:
        # The rules are the new password's: their errors go under it, not under
        # its confirmation, which only says whether the two match.
        super().validate_password_for_user(user, "new_password1")

    def clean_old_password(self) -> str:
        username = self.user.get_username()
        address = throttle.client_address(self.request)
        lock = throttle.lock_of(username, address)
        if lock is not None:
            raise self._locked(lock)
        try:
            old_password: str = super().clean_old_password()
        except forms.ValidationError:
            lock = throttle.record_failure(username, address)
            if lock is not None:
                raise self._locked(lock) from None
            raise
        throttle.reset(username, address)
        return old_password

    def _locked(self, lock: throttle.Lock) -> forms.ValidationError:
        self.locked = True
        message = locked_message(lock, PASSWORD_CHECK_LOCKED_MESSAGES)
        return forms.ValidationError(message, code="locked")


class PasswordChangeView(auth_views.PasswordChangeView):
    """`/accounts/password_change/`: answers 429 while the account is locked."""

    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}

    def form_invalid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "locked", False):
            response.status_code = 429
        return response


class LoginView(auth_views.LoginView):
    """`/accounts/login/`: answers 429 while the username is locked."""

    form_class = ThrottledAuthenticationForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "locked", False):
            response.status_code = 429
        return response

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        # login() flushes the session when another user signs in over it.
        user = self.request.user
        if user.is_authenticated and user.pk != form.get_user().pk:
            act_as_end(agent=user, session=self.request.session)
        return super().form_valid(form)


class LogoutView(auth_views.LogoutView):
    """`/accounts/logout/` and Django admin's sign-out.

    Signing out is a POST (a link or an image elsewhere must not sign anyone out);
    the address opened as a page asks to confirm with that POST, instead of the
    blank 405 Django gives, and sends someone already signed out to sign in.
    """

    http_method_names = ["get", "post", "options"]

    def get(
        self, request: HttpRequest, *args: object, **kwargs: object
    ) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect(settings.LOGIN_URL)
        return render(request, "registration/logout_confirm.html")

    def post(
        self, request: HttpRequest, *args: object, **kwargs: object
    ) -> HttpResponse:
        signed_in = request.user.is_authenticated
        if request.user.is_authenticated:
            act_as_end(agent=request.user, session=request.session)
        response = super().post(request, *args, **kwargs)
        if signed_in:
            # Said on the sign-in page it leads to, which otherwise looks the same
            # as before signing out. The session is gone: the note goes by cookie.
            messages.success(request, "You have signed out.")
        return response
