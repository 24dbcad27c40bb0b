"""Sending Celery tasks from a request.

The broker is Redis. If it cannot be reached (restarting, say), the person who
clicked is told so on the page they return to, rather than getting a server error:
pages and sessions live in Postgres and keep working through a Redis outage.
"""

import logging
from typing import Any, Protocol

from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)


class _Task(Protocol):
    name: str

    def delay(self, *args: Any) -> object: ...


def enqueue(task: _Task, *args: Any) -> bool:
    """Send `task` with `args` to the workers now; False when the broker cannot be
    reached (logged).

    Not deferred with `transaction.on_commit`, as tasks sent after writes are: its
    answer must reach the person in this response. Its callers write nothing first.
    """
    try:
        task.delay(*args)
    except OperationalError as error:
        logger.error("Could not queue %s%r: %s", task.name, args, error)
        return False
    return True
