"""A test case mixin for tests that talk to the SteVe stand-in over HTTP."""

import pytest

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
