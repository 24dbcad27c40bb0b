"""Browser tests: the app under uvicorn in a child process and a headless Chromium.

Browser tests must commit their data (`TransactionTestCase` or
`django_db(transaction=True)`), because the uvicorn child reads the test database
through its own connection. Each test process uses its own live-channel prefix, so
parallel runs never see each other's live events.
"""

import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.test import override_settings
from playwright.sync_api import Browser, Page, sync_playwright

from polaris.testing import ChildProcess, child_environment, free_port

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_CHANNEL_PREFIX = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}-"


class LiveServer(ChildProcess):
    """uvicorn serving polaris.asgi on a free loopback port."""

    def __init__(self, **env_overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = child_environment(
            # The test settings: same hasher as the test process, so users created
            # there can sign in here.
            DJANGO_SETTINGS_MODULE="polaris.settings_test",
            LIVE_CHANNEL_PREFIX=LIVE_CHANNEL_PREFIX,
            **env_overrides,
        )
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "polaris.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--lifespan",
            "off",
            "--timeout-graceful-shutdown",
            "2",
        ]
        super().__init__(command, env)

    def __enter__(self) -> "LiveServer":
        super().__enter__()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError):
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"uvicorn exited:\n{self.log()[-3000:]}"
                    ) from None
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"uvicorn did not start:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        super().stop(sig)
        _wait_for_other_connections_to_close()


def _wait_for_other_connections_to_close(timeout: float = 5) -> None:
    # Postgres ends a dead client's backend asynchronously; the test database can
    # only be dropped (or flushed without waiting on locks) once it is gone.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)


@contextmanager
def live_server(**env_overrides: str) -> Iterator[LiveServer]:
    """A running LiveServer; live events of this test process use its prefix."""
    with (
        override_settings(LIVE_CHANNEL_PREFIX=LIVE_CHANNEL_PREFIX),
        LiveServer(**env_overrides) as server,
    ):
        yield server


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium (never `playwright install`), headless."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise RuntimeError("chromium is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form and wait for the landing page."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
