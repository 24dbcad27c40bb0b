#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import signal
import sys
from types import FrameType

STILL_STARTING = "Polaris was still starting; nothing was changed."


# The signal that came while starting, if any.
_stopped_by: int | None = None


def _stopped_while_starting(signum: int, frame: FrameType | None) -> None:
    global _stopped_by
    if _stopped_by is None:
        sys.stderr.write(f"Interrupted: {STILL_STARTING}\n")
    _stopped_by = signum
    raise SystemExit(128 + signum)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit, so that atexit handlers run (leaving the embedded servers); our
    # commands install handlers of their own that also say what was left done.
    raise SystemExit(128 + signum)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polaris.settings")
    # Importing Django and setting up take a second or two: a signal then ends
    # the process with the same one line as a Ctrl-C, not a traceback or nothing.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stopped_while_starting)
    from django.core.management import execute_from_command_line

    from polaris.commands import exit_interrupted
    from polaris.startup import setup_or_exit

    setup_or_exit()
    if _stopped_by is not None:
        # Its SystemExit landed in a finalizer, which Python reports and ignores.
        raise SystemExit(128 + _stopped_by)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        execute_from_command_line(sys.argv)
    except KeyboardInterrupt:
        # Our commands say what Ctrl-C left done (polaris/commands.py); this is
        # for Django's own, and the moments before a command runs.
        exit_interrupted("the command stopped part way.")


if __name__ == "__main__":
    main()
