"""Test settings: the production settings with faster knobs only."""

import os

from polaris.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The real Redis cache, with keys of this test process's own, so parallel test
# processes never see each other's login counters.
CACHES["default"]["KEY_PREFIX"] = f"polaris-test-{os.getpid()}"  # noqa: F405
# Tasks a test process sends without naming a queue wait in a queue of its own, where
# the test can read them (polaris.testing.take_queued_tasks) and no worker takes them.
CELERY_TASK_DEFAULT_QUEUE = f"polaris-test-{os.getpid()}"
