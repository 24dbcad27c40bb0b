"""Run the SteVe stand-in in the foreground.

A thin wrapper around ``python -m sync.standin`` for people who live in
``manage.py``: it serves SteVe's REST API subset over a simulated fleet so Polaris
can be run and demonstrated without a real SteVe. It accepts the credentials
Polaris itself is configured with (``STEVE_USERNAME``/``STEVE_PASSWORD``).
SIGTERM or Ctrl-C stops it.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.standin.server import (
    StandinOptions,
    add_arguments,
    cannot_listen,
    serve,
)

DEFAULT_CREDENTIAL = "polaris"


class Command(BaseCommand):
    help = "Serve SteVe's REST API over a simulated charge-point fleet."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        standin = StandinOptions.from_arguments(
            options,
            username=_credential("STEVE_USERNAME"),
            password=_credential("STEVE_PASSWORD"),
        )
        try:
            serve(standin, announce=self._announce)
        except OSError as error:
            raise CommandError(cannot_listen(standin.port, error)) from error
        self.stdout.write("SteVe stand-in stopped.")

    def _announce(self, line: str) -> None:
        self.stdout.write(self.style.SUCCESS(line))
        # Whoever started us may be waiting for this line on a pipe.
        self.stdout.flush()


def _credential(name: str) -> str:
    """The setting ``name`` (read from the environment), else ``polaris``."""
    return str(getattr(settings, name, None) or DEFAULT_CREDENTIAL)
