"""Settings for mypy's Django plugin: the production settings, started offline.

The plugin imports the settings to learn the apps and models. With DATABASE_URL or
REDIS_URL unset, polaris/settings.py starts the embedded servers, and mypy exits
without running the atexit hook that stops them (polaris/embedded.py): a type check
would leave both running. These placeholders keep it from starting anything; nothing
connects to them.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://mypy@127.0.0.1:9/mypy")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:9/0")
os.environ.setdefault("SECRET_KEY", "mypy")

from polaris.settings import *  # noqa: F403
