"""The SteVe REST client: the only code in Polaris that speaks HTTP to SteVe.

Responses are parsed into typed, immutable objects here, at the boundary, so nothing
deeper in the code sees raw JSON. Every failure becomes a `SteveError` whose message
is a short sentence safe to show to staff; raw details go to the log.
"""

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError

logger = logging.getLogger(__name__)

ENERGY_REGISTER = "Energy.Active.Import.Register"
# SteVe's 400 message when no station of an operation is connected (CONTRACT §7).
NO_ELIGIBLE_STATIONS = "No stations are eligible for communication."
RESERVATION_NOT_ACTIVE = "This reservation is not active at this station."
TAG_NOT_ELIGIBLE = "Requested OCPP Tag is not eligible for this operation."
RETRY_DELAYS = (0.2, 0.6, 1.5)


class SteveError(Exception):
    """SteVe could not be used. `permanent` errors will not heal by retrying.

    `message` is for the staff who read sync runs and the console;
    `operator_message` (by default the same) is for the people who run Polaris, in
    sync runs and commands, and may say which setting to check. Drivers and
    integrators get neither: the Sessions API says what failed in its own words.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        operator_message: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.operator_message = operator_message or message
        self.permanent = permanent
        self.status = status


class SteveAuthError(SteveError):
    """SteVe refused our credentials (401 or 403)."""


class SteveNotFound(SteveError):
    """SteVe has no such object (404)."""


class SteveRouteMissing(SteveError):
    """A 404 without SteVe's message: no SteVe API route at that path."""


class SteveRejected(SteveError):
    """SteVe refused the request with a business rule (400), e.g. a station offline."""

    @property
    def no_station_connected(self) -> bool:
        """SteVe's refusal of an operation none of whose stations is connected."""
        return self.message.startswith(NO_ELIGIBLE_STATIONS)

    @property
    def tag_not_eligible(self) -> bool:
        """SteVe's refusal of a tag that is unknown, blocked, expired or, for a
        start, already at its limit of active transactions."""
        return self.message.startswith(TAG_NOT_ELIGIBLE)

    @property
    def reservation_not_active(self) -> bool:
        """SteVe's refusal to cancel a reservation the station no longer holds
        (expired, used or cancelled there)."""
        return self.message.startswith(RESERVATION_NOT_ACTIVE)


class SteveUnanswered(SteveError):
    """SteVe received the request but its answer was lost or unreadable: no answer
    before our timeout, or a success whose body is not what SteVe sends. SteVe may
    have acted on it (an operation may have reached the station)."""


class SteveBadResponse(SteveUnanswered):
    """SteVe answered with a body Polaris cannot read: not JSON, or not the shape
    SteVe sends. Unlike a lost answer, it is about what was asked for, so asking
    for something else may well work."""


@dataclass(frozen=True, slots=True)
class SteveTransaction:
    """One item of `GET /transactions`; meter values are whole Wh."""

    id: int
    charge_box_id: str
    connector_id: int
    ocpp_id_tag: str
    start_timestamp: datetime
    start_value_wh: int
    stop_timestamp: datetime | None
    stop_value_wh: int | None
    stop_reason: str | None
    stop_event_actor: str | None
    user_id: int | None

    @property
    def is_active(self) -> bool:
        return self.stop_timestamp is None


# OCPP's default measurement location, the connector the car charges from.
OUTLET = "Outlet"
# The largest sampled value taken as a number: beyond it Decimal arithmetic and
# our bigint columns stop being safe.
MAX_READING = Decimal(10**15)
# The largest energy register reading taken as real: 100 GWh, more than a 350 kW
# charger delivers in thirty years. kWh columns (numeric(12,3)) hold under 10^12 Wh,
# and a glitching meter's 0xFFFFFFFF kWh (4.3 x 10^12 Wh) is no reading at all.
MAX_REGISTER_WH = Decimal(10**11)


KILO = Decimal(1000)


def in_base_unit(value: Decimal, unit: str | None) -> Decimal:
    """A reading in W or Wh: kW and kWh values times 1000, others as they are."""
    return value * KILO if unit in ("kW", "kWh") else value


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One sampled value as the station sent it (no unit conversion)."""

    timestamp: datetime
    value: str
    measurand: str | None
    unit: str | None
    phase: str | None
    location: str | None
    reading_context: str | None
    format: str | None

    @property
    def is_energy_total(self) -> bool:
        """A phase-less Energy.Active.Import.Register reading in Wh or kWh."""
        return (
            (self.measurand or ENERGY_REGISTER) == ENERGY_REGISTER
            and not self.phase
            and (self.unit or "Wh") in ("Wh", "kWh")
            and self.format != "SignedData"
            and (number := self.decimal_value) is not None
            and abs(in_base_unit(number, self.unit)) <= MAX_REGISTER_WH
        )

    @property
    def decimal_value(self) -> Decimal | None:
        """The value as a number, or None when it is not one a meter could read.

        SteVe stores a sampled value as the station sent it (a string), so
        "NaN" or "1e40" reach us; bounded, every later sum and quantize is safe.
        """
        try:
            number = Decimal(self.value)
        except (InvalidOperation, TypeError):
            return None
        if not number.is_finite() or abs(number) > MAX_READING:
            return None
        return number

    @property
    def energy_wh(self) -> int:
        """The reading normalised to whole Wh (kWh times 1000, half up)."""
        number = self.decimal_value
        if number is None:
            raise ValueError(f"{self.value!r} is not an energy reading")
        wh = in_base_unit(number, self.unit)
        return int(wh.quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def metered_energy_totals(readings: Iterable[MeterReading]) -> list[MeterReading]:
    """The phase-less energy register readings of the one place the charge is
    metered at, in the order given.

    A station may meter more than one place (OCPP's location: Outlet, Inlet,
    EV, …), and two registers interleaved would look like one meter going back
    and forth. The outlet's, OCPP's default location, is the one that delivers
    the charge; a station without it keeps the first location it reported.
    """
    totals = [reading for reading in readings if reading.is_energy_total]
    locations = [reading.location or OUTLET for reading in totals]
    if len(set(locations)) > 1:
        kept = OUTLET if OUTLET in locations else locations[0]
        totals = [r for r, at in zip(totals, locations, strict=True) if at == kept]
    return totals


@dataclass(frozen=True, slots=True)
class TransactionDetails:
    transaction: SteveTransaction
    readings: tuple[MeterReading, ...]

    def energy_readings(self) -> list[tuple[datetime, int]]:
        """(timestamp, Wh) of `metered_energy_totals`, oldest first."""
        totals = metered_energy_totals(self.readings)
        return [(reading.timestamp, reading.energy_wh) for reading in totals]


@dataclass(frozen=True, slots=True)
class OperationResult:
    """The answer to an OCPP operation; `responses` maps chargeBoxId → status."""

    task_finished: bool
    responses: Mapping[str, str]
    errors: Mapping[str, str]
    # Stations that answered with an OCPP CallError (errorResponses): reached,
    # unlike the send failures that `errors` also holds.
    call_errors: frozenset[str] = frozenset()

    def accepted(self, charge_box_id: str) -> bool:
        # CONTRACT §7: compare case-insensitively to be safe.
        return self.responses.get(charge_box_id, "").lower() == "accepted"

    def answered(self, charge_box_id: str) -> bool:
        """The station replied, whatever it said: it is connected."""
        return charge_box_id in self.responses or charge_box_id in self.call_errors

    def status_of(self, charge_box_id: str) -> str:
        """'Accepted', 'Rejected', …, 'Error' or 'Timeout' for one charge box."""
        if charge_box_id in self.responses:
            return self.responses[charge_box_id]
        if charge_box_id in self.errors:
            return "Error"
        return "Timeout" if not self.task_finished else "Unknown"


def parse_timestamp(value: str) -> datetime:
    """Parse SteVe's `2024-08-25T14:30:00.000Z` (always UTC) into an aware datetime."""
    return datetime.fromisoformat(value)


def format_timestamp(moment: datetime) -> str:
    """An aware datetime as SteVe writes and reads timestamps: UTC, milliseconds,
    `Z` (2026-03-01T09:00:00.000Z). The Sessions API writes its times so too."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _wh(value: Any) -> int | None:
    if value is None:
        return None
    return int(Decimal(str(value)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _stop_wh(value: Any) -> int | None:
    """The stop value in whole Wh; None for none, or for one no meter could read.
    (A station's meterStop is a 32-bit integer, but SteVe copies a manual stop's
    value from the last reading, whatever the station sent there.)"""
    if value is None:
        return None
    number = Decimal(str(value))
    if not number.is_finite() or abs(number) > MAX_REGISTER_WH:
        return None
    return _wh(number)


def _parse_transaction(item: Mapping[str, Any]) -> SteveTransaction:
    stop_timestamp = item.get("stopTimestamp")
    start_value = _wh(item["startValue"])
    if start_value is None:
        raise ValueError("a transaction without its startValue")
    return SteveTransaction(
        id=int(item["id"]),
        charge_box_id=str(item["chargeBoxId"]),
        connector_id=int(item["connectorId"]),
        ocpp_id_tag=str(item["ocppIdTag"]),
        start_timestamp=parse_timestamp(item["startTimestamp"]),
        start_value_wh=start_value,
        stop_timestamp=parse_timestamp(stop_timestamp) if stop_timestamp else None,
        stop_value_wh=_stop_wh(item.get("stopValue")),
        stop_reason=item.get("stopReason") or None,
        stop_event_actor=item.get("stopEventActor") or None,
        user_id=item.get("userId"),
    )


def _parse_reading(item: Mapping[str, Any]) -> MeterReading:
    return MeterReading(
        timestamp=parse_timestamp(item["valueTimestamp"]),
        value=str(item.get("value") or ""),
        measurand=item.get("measurand") or None,
        unit=item.get("unit") or None,
        phase=item.get("phase") or None,
        location=item.get("location") or None,
        reading_context=item.get("readingContext") or None,
        format=item.get("format") or None,
    )


def _parse_operation(body: Mapping[str, Any]) -> OperationResult:
    call_errors = body.get("errorResponses") or []
    return OperationResult(
        task_finished=bool(body["taskFinished"]),
        responses={
            str(item["chargeBoxId"]): str(item["response"])
            for item in body.get("successResponses") or []
        },
        errors={
            **{
                str(item["chargeBoxId"]): str(item.get("errorCode") or "Error")
                for item in call_errors
            },
            **{
                str(item["chargeBoxId"]): str(item.get("exceptionMessage") or "Error")
                for item in body.get("exceptions") or []
            },
        },
        call_errors=frozenset(str(item["chargeBoxId"]) for item in call_errors),
    )


class SteveClient:
    """A SteVe REST client with one pooled session; safe to share between threads."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = None,
        retry_delays: Iterable[float] = RETRY_DELAYS,
    ) -> None:
        self.base_url = (base_url or settings.STEVE_URL or "").rstrip("/")
        username = username or settings.STEVE_USERNAME
        password = password or settings.STEVE_PASSWORD
        missing = [
            name
            for name, value in (
                ("STEVE_URL", self.base_url),
                ("STEVE_USERNAME", username),
                ("STEVE_PASSWORD", password),
            )
            if not value
        ]
        if missing:
            raise ImproperlyConfigured(
                f"{', '.join(missing)} must be set to talk to SteVe."
            )
        self.timeout = timeout or settings.STEVE_TIMEOUT
        self.operation_timeout = max(self.timeout, settings.STEVE_OPERATION_TIMEOUT)
        self.retry_delays = tuple(retry_delays)
        self.session = requests.Session()
        # SteVe sends no WWW-Authenticate challenge, so credentials go on every request.
        self.session.auth = (str(username), str(password))
        self.session.headers["Accept"] = "application/json"
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "SteveClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Transactions

    def list_transactions(
        self,
        *,
        type: str = "ALL",
        transaction_pks: Iterable[int] | None = None,
        charge_box_id: str | None = None,
        period_type: str | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
    ) -> list[SteveTransaction]:
        """`GET /transactions`: every match, newest pk first; periods apply to start.

        An empty `transaction_pks` matches nothing (SteVe would read the empty
        parameter as absent and answer every transaction). Raises SteveError.
        """
        params: dict[str, str] = {"type": type}
        if transaction_pks is not None:
            pks = [str(pk) for pk in transaction_pks]
            if not pks:
                return []
            params["transactionPk"] = ",".join(pks)
        if charge_box_id:
            params["chargeBoxId"] = charge_box_id
        if period_type:
            params["periodType"] = period_type
        if start_from:
            params["from"] = format_timestamp(start_from)
        if start_to:
            params["to"] = format_timestamp(start_to)
        body = self._get("/api/v1/transactions", params)
        return self._parse(body, lambda items: [_parse_transaction(i) for i in items])

    def transaction_details(
        self, pk: int, *, energy_values_only: bool = True
    ) -> TransactionDetails:
        """`GET /transactions/{pk}` with its meter values, oldest first.

        Raises SteveNotFound when SteVe has no such transaction, else SteveError.
        """
        try:
            body = self._get(
                f"/api/v1/transactions/{pk}",
                {"energyValuesOnly": "true" if energy_values_only else "false"},
            )
        except SteveRouteMissing as error:
            raise self._explained_by_version(
                error, pk, "GET /transactions/{pk}", "for meter values"
            ) from error
        return self._parse(
            body,
            lambda data: TransactionDetails(
                transaction=_parse_transaction(data["transaction"]),
                readings=tuple(
                    sorted(
                        (_parse_reading(item) for item in data.get("values") or []),
                        key=lambda reading: reading.timestamp,
                    )
                ),
            ),
        )

    def stop_transaction(self, pk: int) -> None:
        """`PATCH /transactions/{pk}/stop`: a bookkeeping stop, no OCPP message.

        Raises SteveNotFound for an unknown pk, else SteveError.
        """
        try:
            self._request("PATCH", f"/api/v1/transactions/{pk}/stop", retry=True)
        except SteveError as error:
            if not isinstance(error, SteveRouteMissing) and error.status != 405:
                raise
            raise self._explained_by_version(
                error, pk, "PATCH /transactions/{pk}/stop", "to stop a transaction"
            ) from error

    def _explained_by_version(
        self, error: SteveError, pk: int, route: str, use: str
    ) -> SteveError:
        """`error`, a bare 404 or a 405 from a route SteVe 3.12 added (CONTRACT §0),
        as SteVe being too old when its transaction list, older than that route,
        answers; otherwise `error` as it was (there is no SteVe API at all)."""
        try:
            self.list_transactions(transaction_pks=[pk])
        except SteveError:
            return error
        logger.warning(
            "SteVe at %s lists transactions but answers %s with HTTP %s: older "
            "than 3.12",
            self.base_url,
            route,
            error.status,
        )
        return SteveError(
            "SteVe is older than 3.12, the version Polaris needs.",
            permanent=True,
            status=error.status,
            operator_message=f"SteVe at {self.base_url} answers its transaction "
            f"list but not {route} (HTTP {error.status}), which Polaris uses {use}: "
            "Polaris needs SteVe 3.12 or newer. Upgrade SteVe.",
        )

    # OCPP operations: they block until the station answers, so they are not retried
    # after a timeout (a second RemoteStart could start a second charge).

    def remote_start(
        self, *, charge_box_id: str, connector_id: int, id_tag: str
    ) -> OperationResult:
        return self._operation(
            "RemoteStartTransaction",
            {
                "chargeBoxIdList": [charge_box_id],
                "connectorId": connector_id,
                "idTag": id_tag,
            },
        )

    def remote_stop(
        self, *, charge_box_id: str, transaction_id: int
    ) -> OperationResult:
        return self._operation(
            "RemoteStopTransaction",
            {"chargeBoxIdList": [charge_box_id], "transactionId": transaction_id},
        )

    def reserve_now(
        self, *, charge_box_id: str, connector_id: int, expiry: datetime, id_tag: str
    ) -> OperationResult:
        return self._operation(
            "ReserveNow",
            {
                "chargeBoxIdList": [charge_box_id],
                "connectorId": connector_id,
                "expiry": format_timestamp(expiry),
                "idTag": id_tag,
            },
        )

    def cancel_reservation(
        self, *, charge_box_id: str, reservation_id: int
    ) -> OperationResult:
        return self._operation(
            "CancelReservation",
            {"chargeBoxIdList": [charge_box_id], "reservationId": reservation_id},
        )

    def trigger_heartbeat(self, charge_box_ids: Iterable[str]) -> OperationResult:
        """Ask stations for a Heartbeat; the ones that answer are connected."""
        return self._operation(
            "TriggerMessage",
            {"chargeBoxIdList": list(charge_box_ids), "triggerMessage": "Heartbeat"},
        )

    # Plumbing

    def _operation(self, name: str, body: Mapping[str, Any]) -> OperationResult:
        data = self._request(
            "POST",
            f"/api/v1/operations/{name}",
            json=body,
            timeout=self.operation_timeout,
        )
        return self._parse(data, _parse_operation)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        return self._request("GET", path, params=params, retry=True)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        retry: bool = False,
        timeout: float | None = None,
    ) -> Any:
        delays = list(self.retry_delays) if retry else []
        while True:
            try:
                return self._send_once(
                    method, path, params=params, json=json, timeout=timeout
                )
            except SteveError as error:
                if error.permanent or not delays:
                    raise
                delay = delays.pop(0)
                logger.info("SteVe %s %s failed (%s); retrying", method, path, error)
                time.sleep(delay)

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> Any:
        url = self.base_url + path
        timeout = timeout or self.timeout
        try:
            response = self.session.request(
                method, url, params=params, json=json, timeout=timeout
            )
        except requests.ReadTimeout:
            # Sent: SteVe has it, and may be acting on it.
            raise SteveUnanswered(
                f"SteVe did not answer within {timeout:g} s.", permanent=False
            ) from None
        except requests.ConnectTimeout as error:
            logger.warning("SteVe %s %s: no connection: %s", method, url, error)
            raise SteveError(
                "SteVe cannot be reached (connecting timed out).",
                permanent=False,
                operator_message=f"SteVe cannot be reached at {self.base_url}: "
                f"connecting timed out after {timeout:g} s. Check that STEVE_URL's "
                "host and port are SteVe's and that no firewall drops the traffic.",
            ) from error
        except requests.Timeout:
            raise SteveError(
                f"SteVe did not answer within {timeout:g} s.", permanent=False
            ) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ):
            # Sent, and the answer broke off (SteVe restarting, a proxy timing
            # out): SteVe has it, and may have acted on it.
            raise SteveUnanswered(
                "SteVe's answer was cut off.", permanent=False
            ) from None
        except requests.ConnectionError as error:
            if _closed_after_sending(error):
                # SteVe took the request and closed the connection without an
                # answer (a restart, a proxy): it may have acted on it.
                raise SteveUnanswered(
                    "SteVe closed the connection before answering.", permanent=False
                ) from None
            logger.warning("SteVe %s %s: no connection: %s", method, url, error)
            raise self._unreachable(error) from error
        status = response.status_code
        if status in (401, 403):
            rejected = f"SteVe rejected Polaris's credentials (HTTP {status})."
            raise SteveAuthError(
                rejected,
                permanent=True,
                status=status,
                operator_message=f"{rejected} Check STEVE_USERNAME and "
                "STEVE_PASSWORD: they must be a SteVe web user and that user's API "
                "password, not its sign-in password.",
            )
        if status == 404:
            message = _error_message(response)
            if message is None:
                # SteVe names the object it lacks; a 404 without that message
                # comes from a server, or a context path, with no SteVe API.
                logger.warning(
                    "SteVe %s %s answered 404 without a message", method, url
                )
                raise SteveRouteMissing(
                    "SteVe's API was not found (HTTP 404).",
                    permanent=True,
                    status=status,
                    operator_message=f"There is no SteVe API at {self.base_url} (HTTP "
                    "404): check STEVE_URL, context path included (e.g. /steve).",
                )
            raise SteveNotFound(message, permanent=True, status=status)
        if status == 429 or status >= 500:
            logger.warning(
                "SteVe %s %s answered %s: %s", method, path, status, response.text[:500]
            )
            raise SteveError(
                f"SteVe failed with HTTP {status}.",
                permanent=False,
                status=status,
                operator_message=f"SteVe at {self.base_url} failed with HTTP "
                f"{status}; its own log says why. The next run tries again.",
            )
        if status >= 400:
            logger.warning(
                "SteVe %s %s answered %s: %s", method, path, status, response.text[:500]
            )
            refusal = (
                _error_message(response)
                or f"SteVe refused the request (HTTP {status})."
            )
            raise SteveRejected(
                refusal,
                permanent=True,
                status=status,
                # Which request, for a failed run's sentence: SteVe's own words
                # ("Error understanding the request") do not say.
                operator_message=f"SteVe refused {method} {path} (HTTP {status}): "
                f"{refusal}",
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            logger.warning(
                "SteVe %s %s sent malformed JSON: %s", method, path, response.text[:500]
            )
            raise SteveBadResponse(
                "SteVe sent a response that is not valid JSON.", permanent=False
            ) from None

    def _unreachable(self, error: requests.ConnectionError) -> SteveError:
        """A failure to connect, named by its kind: each has its own fix."""
        causes = list(_causes(error))
        where = f"SteVe cannot be reached at {self.base_url}"
        tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
        if isinstance(error, requests.exceptions.ProxyError):
            kind = "the proxy failed"
            detail = (
                f"{where}: the proxy in between failed. Check the proxy that "
                "HTTPS_PROXY or HTTP_PROXY names, or list SteVe's host in NO_PROXY."
            )
        elif isinstance(tls, ssl.SSLCertVerificationError):
            kind = "TLS certificate not trusted"
            detail = (
                f"{where}: its TLS certificate is not trusted ({tls.verify_message})."
                " Give SteVe a certificate from a trusted authority, or point "
                "REQUESTS_CA_BUNDLE at your own authority's certificate."
            )
        elif tls is not None:
            kind = "TLS handshake failed"
            reason = (tls.reason or str(tls)).replace("_", " ").lower()
            detail = (
                f"{where}: the TLS handshake failed ({reason}). Check that STEVE_URL "
                "says https only where SteVe, or a proxy before it, serves TLS on "
                "that port."
            )
        elif any(isinstance(c, socket.gaierror) for c in causes):
            kind = "host name not resolved"
            detail = (
                f"{where}: its host name {urlsplit(self.base_url).hostname} does not "
                "resolve (DNS). Check STEVE_URL's host name and this machine's DNS."
            )
        elif any(isinstance(c, ConnectionRefusedError) for c in causes):
            kind = "connection refused"
            detail = (
                f"{where}: the connection was refused, so nothing listens there. "
                "Check that SteVe is running and that STEVE_URL's host and port are "
                "its address."
            )
        else:
            return SteveError(
                "SteVe cannot be reached.",
                permanent=False,
                operator_message=f"{where}: check that SteVe is running and that "
                "STEVE_URL is its address, context path included (e.g. /steve).",
            )
        return SteveError(
            f"SteVe cannot be reached ({kind}).",
            # A certificate or a handshake does not heal by retrying at once.
            permanent=tls is not None,
            operator_message=detail,
        )

    @staticmethod
    def _parse[T](body: Any, parse: Callable[[Any], T]) -> T:
        try:
            return parse(body)
        except (KeyError, TypeError, ValueError, InvalidOperation):
            logger.warning("Unexpected SteVe response: %r", str(body)[:500])
            raise SteveBadResponse(
                "SteVe sent a response Polaris could not understand.", permanent=False
            ) from None


@contextmanager
def given_or_new(client: SteveClient | None) -> Iterator[SteveClient]:
    """`client` when the caller gives one (tests, a run that shares it), else a new
    one closed afterwards, so a run every few seconds leaves no pooled connections
    behind."""
    if client is not None:
        yield client
        return
    with SteveClient() as steve:
        yield steve


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception under it: urllib3 keeps causes in `reason` and
    in args (MaxRetryError, NewConnectionError) rather than chaining them."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        )
        pending.extend(item for item in nested if isinstance(item, BaseException))


def _closed_after_sending(error: requests.ConnectionError) -> bool:
    """Whether the connection broke after the request went out: urllib3 reports
    that as a ProtocolError, and a failure to connect as NewConnectionError inside
    MaxRetryError."""
    return bool(error.args) and isinstance(error.args[0], ProtocolError)


def _error_message(response: requests.Response) -> str | None:
    """SteVe's own `message` from an ApiErrorResponse body, when there is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else None
