"""``StandinProcess``: the SteVe stand-in as a subprocess, for every test suite.

Tests talk to SteVe over real HTTP on 127.0.0.1, never to an in-process mock::

    with StandinProcess(fleet_size=6, seed=1) as steve:
        client = SteveClient(steve.base_url, steve.username, steve.password)
        pk = steve.add_transaction("CP-001", 1, "TAG-0001")
        steve.tick(60)

The helpers wrap the control API (``/_standin``) with the standard library only,
so importing this module needs neither Django nor requests.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlsplit

from sync.standin.server import LISTENING_PREFIX

if TYPE_CHECKING:
    from sync.client import SteveClient

REPO_ROOT = Path(__file__).resolve().parents[2]
# Loopback only: ignore any http_proxy settings of the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 40.0


class StandinError(RuntimeError):
    """The stand-in did not start, or a control request failed."""


class StandinProcess:
    """Run ``python -m sync.standin`` on a free loopback port for a ``with`` block.

    Tests default to a frozen fleet (``live=False``): nothing changes unless the
    test calls ``tick`` or another control helper. ``start_delay=0`` makes an
    accepted RemoteStart begin on the next ``tick``.
    """

    def __init__(
        self,
        *,
        fleet_size: int = 6,
        seed: int = 1,
        live: bool = False,
        start_delay: float = 0.0,
        scenarios: bool = True,
        username: str = "polaris",
        password: str = "polaris",
        startup_timeout: float = STARTUP_TIMEOUT_S,
        first_transaction_pk: int = 1,
    ) -> None:
        self.fleet_size = fleet_size
        self.first_transaction_pk = first_transaction_pk
        self.seed = seed
        self.live = live
        self.start_delay = start_delay
        self.scenarios = scenarios
        self.username = username
        self.password = password
        # Seeding takes a while for big fleets, longer on a busy machine.
        self.startup_timeout = startup_timeout
        self.base_url = ""
        self._resources = ExitStack()
        self._stderr: IO[str] | None = None

    def polaris_settings(self) -> dict[str, str]:
        """The settings (or environment) that point Polaris's own SteVe clients here."""
        return {
            "STEVE_URL": self.base_url,
            "STEVE_USERNAME": self.username,
            "STEVE_PASSWORD": self.password,
        }

    def client(self, **options: Any) -> SteveClient:
        """A SteVe client of this stand-in; `options` as SteveClient takes them
        (timeout, retry_delays). The caller closes it."""
        from sync.client import SteveClient

        return SteveClient(
            base_url=self.base_url,
            username=self.username,
            password=self.password,
            **options,
        )

    @property
    def control_url(self) -> str:
        """The control API root, e.g. ``http://127.0.0.1:PORT/_standin``."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}/_standin"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the subprocess and wait until its health check answers."""
        resources = ExitStack()
        self._resources = resources
        # Closed by the ExitStack in stop(), not at the end of this method.
        log_file = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._stderr = resources.enter_context(log_file)
        process = resources.enter_context(
            subprocess.Popen(
                self._command(),
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
            )
        )
        # Registered last, so it runs first: stop the server, then close pipes.
        resources.callback(_terminate, process)
        try:
            self.base_url = self._read_base_url(process)
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the subprocess; kill it if it has not exited after 5 s."""
        resources, self._resources = self._resources, ExitStack()
        resources.close()

    def _command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "sync.standin",
            "--port=0",
            f"--fleet-size={self.fleet_size}",
            f"--seed={self.seed}",
            f"--start-delay={self.start_delay}",
            f"--username={self.username}",
            f"--password={self.password}",
            f"--first-transaction-pk={self.first_transaction_pk}",
        ]
        if not self.live:
            command.append("--no-live")
        if not self.scenarios:
            command.append("--no-scenarios")
        return command

    def _read_base_url(self, process: subprocess.Popen[str]) -> str:
        """Read the listening line, which tells the port the server bound."""
        stdout = process.stdout
        ready = stdout and select.select([stdout], [], [], self.startup_timeout)[0]
        line = stdout.readline() if stdout and ready else ""
        if not line.startswith(LISTENING_PREFIX):
            within = "" if ready else f" within {self.startup_timeout:g} s"
            raise StandinError(
                f"The stand-in did not start{within}:\n{self._error_output()}"
            )
        return line.removeprefix(LISTENING_PREFIX).strip()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if self._control("GET", "health").get("ok"):
                    return
            except (StandinError, OSError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _error_output(self) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-3000:]

    # -- control API --------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The whole simulation: chargeBoxes, tags, transactions, reservations,
        pendingRemoteStarts, failedStops, scenarios, requests (counts per path),
        apiConnections, apiRequests (the latest SteVe API request targets, query
        strings included, oldest first) and faults."""
        return self._control("GET", "state")

    def reset(
        self,
        *,
        fleet_size: int | None = None,
        seed: int | None = None,
        scenarios: bool | None = None,
    ) -> dict[str, Any]:
        """Rebuild the fleet (defaults: the constructor's values), clear faults
        and request counts; returns the new state."""
        body = {
            "fleet_size": self.fleet_size if fleet_size is None else fleet_size,
            "seed": self.seed if seed is None else seed,
            "scenarios": self.scenarios if scenarios is None else scenarios,
        }
        return self._control("POST", "reset", body)

    def scenario(self, name: str) -> list[int]:
        """The transaction pks of a scenario, e.g. ``scenario("zombie")``."""
        pks: list[int] = self.state()["scenarios"][name]
        return pks

    def add_transaction(
        self,
        charge_box_id: str,
        connector_id: int,
        id_tag: str,
        *,
        start_timestamp: str | None = None,
        start_value: int | None = None,
    ) -> int:
        """The station starts a transaction (StartTransaction); returns its pk.

        An unknown ``id_tag`` is auto-created blocked, as SteVe does.
        ``start_timestamp`` is ISO 8601; both default to now / the meter register.
        """
        body: dict[str, Any] = {
            "chargeBoxId": charge_box_id,
            "connectorId": connector_id,
            "idTag": id_tag,
        }
        if start_timestamp is not None:
            body["startTimestamp"] = start_timestamp
        if start_value is not None:
            body["startValue"] = start_value
        pk: int = self._control("POST", "transactions", body)["id"]
        return pk

    def add_meter_values(self, pk: int, values: list[dict[str, Any]]) -> dict[str, int]:
        """The station sends MeterValues for ``pk``'s connector.

        Each value: ``value`` plus optional ``unit``, ``valueTimestamp``,
        ``phase``, ``measurand``, ``readingContext``, ``format``, ``location``
        and ``transaction`` (false files it without a transaction pk).
        Returns ``{"stored": n, "dropped": m}``.
        """
        return self._control("POST", f"transactions/{pk}/meter", {"values": values})

    def station_stop(
        self,
        pk: int,
        stop_value: int | None = None,
        *,
        stop_timestamp: str | None = None,
        stop_reason: str | None = "Local",
    ) -> dict[str, Any]:
        """The station sends StopTransaction; returns ``{"accepted", "reason"}``.

        SteVe ≥3.12 refuses a stop below the start value or before the start
        time: the transaction then stays active (``accepted`` is false).
        """
        body: dict[str, Any] = {"stopReason": stop_reason}
        if stop_value is not None:
            body["stopValue"] = stop_value
        if stop_timestamp is not None:
            body["stopTimestamp"] = stop_timestamp
        return self._control("POST", f"transactions/{pk}/stop", body)

    def delete_transaction(self, pk: int) -> None:
        """Remove ``pk`` as SteVe's FK cascade does when its tag is deleted."""
        self._control("DELETE", f"transactions/{pk}")

    def set_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        delay: float | None = None,
        status: int | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Arm a fault for ``count`` SteVe API requests (-1: until cleared).

        ``slow`` sleeps ``delay`` s first; ``error`` answers ``status`` (a
        SteVe JSON error, or a proxy's page for 502/503/429); ``malformed``
        answers 200 with truncated JSON; ``cut`` sends the headers and half the
        body, then drops the connection; ``unauthorized`` answers 401 as for a
        wrong password; ``timeout_operation`` makes an operation block ``delay``
        s and return ``taskFinished=false``; ``steve_3_11`` answers the routes
        SteVe 3.12 added (``GET /transactions/{pk}``, ``PATCH …/stop``) with
        Spring's 404 without a message, as an older SteVe does (use ``count=-1``
        for an old SteVe throughout). ``path_contains`` limits the fault
        to request targets (path and query) containing it. Delays cap at 30 s.
        """
        body: dict[str, Any] = {"kind": kind, "count": count}
        if delay is not None:
            body["delay"] = delay
        if status is not None:
            body["status"] = status
        if path_contains is not None:
            body["path_contains"] = path_contains
        self._control("POST", "fault", body)

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._control("DELETE", "fault")

    def tick(self, seconds: float = 0.0) -> dict[str, list[int]]:
        """Advance charging by ``seconds`` and start due remote starts; returns
        ``{"started": [...], "stopped": [...]}``."""
        return self._control("POST", "tick", {"seconds": seconds})

    def set_online(self, charge_box_id: str, online: bool) -> None:
        """Connect or disconnect a station."""
        self._control("POST", f"stations/{quote(charge_box_id)}", {"online": online})

    def set_trigger_answer(self, charge_box_id: str, answer: str) -> None:
        """How a station answers TriggerMessage: Accepted, Rejected or
        NotImplemented (a CallError, as from a station without RemoteTrigger)."""
        body = {"triggerAnswer": answer}
        self._control("POST", f"stations/{quote(charge_box_id)}", body)

    def _control(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.control_url}/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=CONTROL_TIMEOUT_S) as response:
                document: dict[str, Any] = json.loads(response.read())
                return document
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise StandinError(
                f"{method} /_standin/{path}: {error.code} {detail}"
            ) from error


def _terminate(process: subprocess.Popen[str]) -> None:
    """SIGTERM first (the stand-in shuts down cleanly), SIGKILL after 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
