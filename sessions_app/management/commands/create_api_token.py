"""`manage.py create_api_token USERNAME [--name NAME] [--expires-in-days N |
--never-expires]`: print a new Sessions API token.

The token is the last line of the output, so scripts can take it with `tail -n 1`.
It is shown only this once: Polaris stores a hash of it. Like one made on a tokens
page, it expires in 90 days unless told otherwise.
"""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from polaris.commands import DatabaseCommand
from sessions_app.models.tokens import DEFAULT_EXPIRY_DAYS
from sessions_app.services import api_token_create
from sync.arguments import int_between

MAX_EXPIRY_DAYS = 3650


class Command(DatabaseCommand):
    interrupted_consequence_text = "no token was shown; run the command again."
    help = (
        "Create a Sessions API token for USERNAME and print it (last line). It is "
        "shown only this once: Polaris keeps only its hash."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "username", help="The account the token acts as (a customer's email)."
        )
        parser.add_argument("--name", default="", help="A label for the token.")
        lifetime = parser.add_mutually_exclusive_group()
        lifetime.add_argument(
            "--expires-in-days",
            type=int_between(1, MAX_EXPIRY_DAYS, what="a number of days"),
            default=DEFAULT_EXPIRY_DAYS,
            metavar="DAYS",
            help=f"Days until the token stops working (default {DEFAULT_EXPIRY_DAYS}).",
        )
        lifetime.add_argument(
            "--never-expires",
            action="store_true",
            help="The token works until it is revoked.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        if not username.strip():
            raise CommandError(
                "Give the username of the token's owner: create_api_token USERNAME."
            )
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            other = users.filter(username__iexact=username).first()
            hint = f"; did you mean {other.get_username()!r}?" if other else "."
            raise CommandError(f"There is no user {username!r}{hint}")
        if not user.is_active:
            raise CommandError(
                f"User {username!r} is inactive; activate them in Django admin first."
            )
        expires_at = None
        if not options["never_expires"]:
            expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
        token, raw = api_token_create(
            user=user, name=options["name"], expires_at=expires_at
        )
        lifetime = (
            f"It works until {expires_at:%Y-%m-%d %H:%M} UTC"
            if expires_at
            else "It works until revoked"
        )
        self.stdout.write(
            f"Created token {token.prefix}… for {username}. {lifetime}, and is "
            "shown only once:"
        )
        self.stdout.write(raw)
