"""Browser tests: the app under uvicorn in a child process and a headless Chromium.

Browser tests must commit their data (`TransactionTestCase` or
`django_db(transaction=True)`), because the uvicorn child reads the test database
through its own connection. Each test process uses its own live-channel prefix, so
parallel runs never see each other's live events.
"""

import os
import shutil
import signal
import time
import unittest
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from django.test import override_settings
from playwright.sync_api import Browser, Page, sync_playwright

from polaris.testing import (
    UvicornServer,
    child_environment,
    wait_for_other_connections_to_close,
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_CHANNEL_PREFIX = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}-"


class LiveServer(UvicornServer):
    """uvicorn on the test settings and this test process's live-channel prefix."""

    def __init__(self, **env_overrides: str) -> None:
        env = child_environment(
            # The test settings: same hasher as the test process, so users created
            # there can sign in here.
            DJANGO_SETTINGS_MODULE="polaris.settings_test",
            LIVE_CHANNEL_PREFIX=LIVE_CHANNEL_PREFIX,
            **env_overrides,
        )
        super().__init__(env)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        super().stop(sig)
        wait_for_other_connections_to_close()


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


def serve_and_browse(
    test: unittest.TestCase, **env_overrides: str
) -> tuple[LiveServer, Browser]:
    """A LiveServer and Chromium for `test`, both stopped by its cleanups, which
    run before a TransactionTestCase empties the tables: a page left open keeps
    calling the server (a live stream reconnects, a timed re-read fires), and a
    request joining tables while TRUNCATE locks them one by one can deadlock it."""
    stack = ExitStack()
    test.addCleanup(stack.close)
    server = stack.enter_context(live_server(**env_overrides))
    browser = stack.enter_context(chromium())
    return server, browser


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form and wait for the landing page."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")


def wait_for_live_stream(page: Page, timeout: float = 20) -> None:
    """Wait until htmx reports the page's SSE stream open. Polled from Python:
    `page.wait_for_function` polls by eval in the page, which our CSP forbids, so
    it fails unless its first check already passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate(
            """() => {
                const container = document.querySelector('[sse-connect]');
                const data = container && container['htmx-internal-data'];
                return data && data.sseEventSource
                    ? data.sseEventSource.readyState : -1;
            }"""
        )
        if state == 1:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the SSE stream of {page.url} did not open")


def watch_live_updates(page: Page) -> None:
    """Record, from now on, each live update that reaches the page: an event's
    HTML (htmx:sseBeforeMessage) and each request a part makes by itself
    (htmx:confirm), with whether the page held it back (a paused page does)."""
    page.evaluate(
        """() => {
            window.liveUpdatesHeld = [];
            for (const name of ["htmx:sseBeforeMessage", "htmx:confirm"]) {
                // On window: after the page's own handlers on document.
                window.addEventListener(name, (event) => {
                    window.liveUpdatesHeld.push(event.defaultPrevented);
                });
            }
        }"""
    )


def live_updates_held(page: Page, timeout: float = 20) -> list[bool]:
    """Wait until a live update watched by `watch_live_updates` reached the page;
    for each, whether it was held back. What a paused page did not show is an
    update that arrived and was held, not one that never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = page.evaluate("() => window.liveUpdatesHeld")
        if held:
            return list(held)
        time.sleep(0.1)
    raise TimeoutError(f"no live update reached {page.url}")
