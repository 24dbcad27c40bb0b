#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polaris.settings")
    from django.core.management import execute_from_command_line

    from polaris.commands import exit_interrupted
    from polaris.startup import setup_or_exit

    try:
        setup_or_exit()
    except KeyboardInterrupt:
        exit_interrupted("Polaris was still starting; nothing was changed.")
    try:
        execute_from_command_line(sys.argv)
    except KeyboardInterrupt:
        # Our commands say what Ctrl-C left done (polaris/commands.py); this is
        # for Django's own, and the moments before a command runs.
        exit_interrupted("the command stopped part way.")


if __name__ == "__main__":
    main()
