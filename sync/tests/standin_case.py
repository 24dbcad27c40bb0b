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
