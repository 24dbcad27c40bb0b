"""Sign-in by username, where a customer's username is their email."""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest


class EmailCaseBackend(ModelBackend):
    """ModelBackend that also finds a customer whose email was typed with capitals.

    Customers' usernames are their emails, stored in lower case (user mappings
    create them so), and people type `Driver1@Example.com` as often as not. The
    exact username is tried first, so an account created with capitals still
    signs in as it was created; staff usernames without an @ stay exact.
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
            lowered = username.strip().lower()
            if lowered != username:
                user = super().authenticate(
                    request, username=lowered, password=password, **kwargs
                )
        return user
