"""A test case mixin for tests that talk to the SteVe stand-in over HTTP."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from sync.client import SteveClient
from sync.standin.testing import StandinProcess


class StandinTestMixin:
    """`self.standin`, the stand-in with a freshly seeded fleet and no faults armed
    (conftest.py's `standin`), and `self.steve`, a client for it with short
    timeouts. Polaris's own clients follow `self.standin.polaris_settings()`."""

    standin: StandinProcess
    steve: SteveClient

    @pytest.fixture(autouse=True)
    def _attach_standin(
        self, standin: StandinProcess, steve_client: SteveClient
    ) -> None:
        self.standin = standin
        self.steve = steve_client

    def client_at_a_wrong_context_path(self) -> SteveClient:
        """A client for the stand-in's host and port under a context path where no
        SteVe answers (every path a bare 404), closed after the test."""
        client = SteveClient(
            base_url=self.standin.base_url.removesuffix("/steve") + "/stevee",
            username=self.standin.username,
            password=self.standin.password,
            retry_delays=(),
        )
        self.addCleanup(client.close)  # type: ignore[attr-defined]
        return client


class PolarisAtStandinMixin(StandinTestMixin):
    """For each test, the stand-in's fleet without scenarios, and Polaris's own
    SteVe clients (built from settings) pointed at it, with `polaris_overrides()`
    on top."""

    def polaris_overrides(self) -> dict[str, Any]:
        return {}

    @pytest.fixture(autouse=True)
    def _point_polaris_at_standin(self, _attach_standin: None) -> Iterator[None]:
        self.standin.reset(scenarios=False)
        with override_settings(
            **self.standin.polaris_settings(), **self.polaris_overrides()
        ):
            yield
