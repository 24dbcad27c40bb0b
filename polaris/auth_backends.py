"""Sign-in by username, where a customer's username is their email."""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest


class EmailCaseBackend(ModelBackend):
    """ModelBackend that also finds a customer whose email was typed with capitals.

    Customers' usernames are their emails, and people type `Driver1@Example.com`
    as often as not. The exact username is tried first; then the one account
    whose username is the email in any letter case, as accounts made before
    usernames were stored in lower case may have capitals. Staff usernames
    without an @ stay exact.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        user = super().authenticate(
            request, username=username, password=password, **kwargs
        )
        if user is None and username and "@" in username:
            spelled = self._spelling_of(username)
            if spelled is not None and spelled != username:
                user = super().authenticate(
                    request, username=spelled, password=password, **kwargs
                )
        return user

    @staticmethod
    def _spelling_of(email: str) -> str | None:
        """The username stored for this email in another letter case, if one only."""
        usernames = list(
            User.objects.filter(username__iexact=email.strip()).values_list(
                "username", flat=True
            )[:2]
        )
        return usernames[0] if len(usernames) == 1 else None
