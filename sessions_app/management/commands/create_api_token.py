"""`manage.py create_api_token USERNAME [--name NAME]`: print a new Sessions API token.

The token is the last line of the output, so scripts can take it with `tail -n 1`.
It is shown only this once: Polaris stores a hash of it.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from polaris.commands import DatabaseCommand
from sessions_app.services import api_token_create


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
        token, raw = api_token_create(user=user, name=options["name"])
        self.stdout.write(
            f"Created token {token.prefix}… for {username}. It is shown only once:"
        )
        self.stdout.write(raw)
