"""`manage.py create_api_token USERNAME [--name NAME]`: print a new Sessions API token.

The token is the last line of the output, so scripts can take it with `tail -n 1`.
It is shown only this once: Polaris stores a hash of it.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from polaris.commands import DatabaseCommand
from sessions_app.api_auth import api_token_create


class Command(DatabaseCommand):
    help = "Create a Sessions API token for USERNAME and print it (last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the token.")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive.")
        token, raw = api_token_create(user=user, name=options["name"])
        self.stdout.write(
            f"Created token {token.prefix}… for {username}. It is shown only once:"
        )
        self.stdout.write(raw)
