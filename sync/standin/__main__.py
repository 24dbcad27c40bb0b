"""``python -m sync.standin``: run the SteVe stand-in in the foreground.

Credentials default to ``STEVE_USERNAME``/``STEVE_PASSWORD`` (else
``polaris``/``polaris``) so the stand-in accepts what Polaris is configured to
send. Prints one line with the base URL once listening; SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sync.standin.server import (
    StandinOptions,
    add_arguments,
    cannot_listen,
    serve,
)

DEFAULT_CREDENTIAL = "polaris"


def parse_options(argv: Sequence[str] | None = None) -> StandinOptions:
    """Read the command line into ``StandinOptions``."""
    parser = argparse.ArgumentParser(
        prog="python -m sync.standin", description="Run the SteVe stand-in."
    )
    add_arguments(parser)
    parser.add_argument(
        "--username",
        default=os.environ.get("STEVE_USERNAME") or DEFAULT_CREDENTIAL,
        help="API user name (default: $STEVE_USERNAME, else polaris).",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("STEVE_PASSWORD") or DEFAULT_CREDENTIAL,
        help="API password (default: $STEVE_PASSWORD, else polaris).",
    )
    arguments = vars(parser.parse_args(argv))
    return StandinOptions.from_arguments(
        arguments, username=arguments["username"], password=arguments["password"]
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT; exit with status 1 if the port is taken."""
    options = parse_options(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        serve(options, announce=lambda line: print(line, flush=True))
    except OSError as error:
        sys.exit(cannot_listen(options.port, error))


if __name__ == "__main__":
    main()
