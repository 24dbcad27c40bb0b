"""The SteVe REST client: the only code in Polaris that speaks HTTP to SteVe.

Responses are parsed into typed, immutable objects (`sync.client.types`) at the
boundary, so nothing deeper in the code sees raw JSON. Every failure becomes a
`SteveError` (`sync.client.errors`) whose message is a short sentence safe to show
to staff; raw details go to the log. Of the package, only this module imports
`requests`; callers import every name from `sync.client`, which re-exports them.
"""

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError

from sync.client.errors import (
    SteveAuthError,
    SteveBadResponse,
    SteveError,
    SteveMisconfigured,
    SteveNotFound,
    SteveRejected,
    SteveRouteMissing,
    SteveUnanswered,
)
from sync.client.types import (
    ENERGY_REGISTER,
    MeterReading,
    OperationResult,
    SteveTransaction,
    TransactionDetails,
    format_timestamp,
    in_base_unit,
    metered_energy_totals,
    parse_operation,
    parse_reading,
    parse_transaction,
)

__all__ = [
    "ENERGY_REGISTER",
    "MeterReading",
    "OperationResult",
    "SteveAuthError",
    "SteveBadResponse",
    "SteveClient",
    "SteveError",
    "SteveMisconfigured",
    "SteveNotFound",
    "SteveRejected",
    "SteveRouteMissing",
    "SteveTransaction",
    "SteveUnanswered",
    "TransactionDetails",
    "format_timestamp",
    "given_or_new",
    "in_base_unit",
    "metered_energy_totals",
    "require_steve_settings",
]

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.2, 0.6, 1.5)
# The longest a Retry-After may hold one retry: a run's requests wait within its
# interval, and the next run asks again anyway.
RETRY_AFTER_CAP = 5.0


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
        require_steve_settings(self.base_url, username, password)
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
        found = self._parse(body, lambda items: [parse_transaction(i) for i in items])
        if transaction_pks is not None:
            asked = {int(pk) for pk in pks}
            if any(t.id not in asked for t in found):
                # Taken as they came, they would never let a probe by pk end.
                raise SteveBadResponse(
                    "SteVe answered with transactions it was not asked for: "
                    "something between Polaris and SteVe (a cache or proxy) "
                    "dropped the transactionPk filter.",
                    permanent=False,
                )
        return found

    def transaction_details(
        self,
        pk: int,
        *,
        energy_values_only: bool = True,
        given_up: threading.Event | None = None,
    ) -> TransactionDetails:
        """`GET /transactions/{pk}` with its meter values, oldest first. Once
        `given_up` is set, it tries no more (see `_request`).

        Raises SteveNotFound when SteVe has no such transaction, else SteveError.
        """
        try:
            body = self._get(
                f"/api/v1/transactions/{pk}",
                {"energyValuesOnly": "true" if energy_values_only else "false"},
                given_up=given_up,
            )
        except SteveRouteMissing as error:
            raise self._explained_by_version(
                error, pk, "GET /transactions/{pk}", "for meter values"
            ) from error
        return self._parse(
            body,
            lambda data: TransactionDetails(
                transaction=parse_transaction(data["transaction"]),
                readings=tuple(
                    sorted(
                        (parse_reading(item) for item in data.get("values") or []),
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
        return self._parse(data, parse_operation)

    def _get(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        given_up: threading.Event | None = None,
    ) -> Any:
        return self._request("GET", path, params=params, retry=True, given_up=given_up)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        retry: bool = False,
        timeout: float | None = None,
        given_up: threading.Event | None = None,
    ) -> Any:
        """Send the request, and retry a transient failure after each of the
        client's delays, unless `given_up` is set: by then whoever asked has failed
        (a sync run whose batch broke off) and must not go on calling SteVe from
        threads it no longer waits for."""
        delays = list(self.retry_delays) if retry else []
        stop = given_up or threading.Event()
        began = time.monotonic()
        attempts = 0
        while True:
            if stop.is_set():
                raise SteveError("Not sent: its caller has given up.", permanent=True)
            attempts += 1
            try:
                return self._send_once(
                    method, path, params=params, json=json, timeout=timeout
                )
            except SteveError as error:
                if error.permanent or not delays or stop.is_set():
                    elapsed = time.monotonic() - began
                    if elapsed >= 2 * (timeout or self.timeout):
                        # "Did not answer within 10 s" of a run that waited 42:
                        # the reader learns where the rest went.
                        tried = "once" if attempts == 1 else f"{attempts} times"
                        error.add_sentence(f"Tried {tried} in {elapsed:.0f} s.")
                    raise
                # No sooner than the answer asked (a rate limit's Retry-After).
                delay = max(delays.pop(0), min(error.retry_after or 0, RETRY_AFTER_CAP))
                logger.info("SteVe %s %s failed (%s); retrying", method, path, error)
                if stop.wait(delay):
                    raise

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> Any:
        response = self._exchange(
            method, path, params=params, json=json, timeout=timeout or self.timeout
        )
        self._raise_for_status(method, path, response)
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

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout: float,
    ) -> requests.Response:
        """Send the request and return SteVe's answer, whatever its status; a
        failure to send, or to receive, raises the SteveError it amounts to."""
        url = self.base_url + path
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
            # INFO: each attempt's detail; the caller's error says it in a sentence.
            logger.info("SteVe %s %s: no connection: %s", method, url, error)
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
            logger.info("SteVe %s %s: no connection: %s", method, url, error)
            raise self._unreachable(error) from error
        return response

    def _raise_for_status(
        self, method: str, path: str, response: requests.Response
    ) -> None:
        """Raise the SteveError an HTTP error status amounts to."""
        url = self.base_url + path
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
            raise SteveNotFound(
                message,
                permanent=True,
                status=status,
                # A run's error says which of its requests SteVe refused.
                operator_message=f"SteVe answered {method} {path} with HTTP 404: "
                f"{message}",
            )
        if status == 504:
            # A gateway in front of SteVe stopped waiting for it: SteVe has the
            # request, and may be acting on it, as when our own timeout ends.
            logger.warning(
                "SteVe %s %s answered 504: %s", method, path, response.text[:500]
            )
            raise SteveUnanswered(
                "SteVe did not answer in time (a gateway timed out, HTTP 504).",
                permanent=False,
                status=status,
                operator_message=f"A gateway in front of SteVe at {self.base_url} "
                "timed out waiting for it (HTTP 504): SteVe or its database is slow "
                "or stuck; its own log says why. The next run tries again.",
            )
        if status == 429 or status >= 500:
            logger.warning(
                "SteVe %s %s answered %s: %s", method, path, status, response.text[:500]
            )
            raise SteveError(
                f"SteVe failed with HTTP {status}.",
                permanent=False,
                status=status,
                operator_message=_failure_sentence(self.base_url, response),
                retry_after=_retry_after(response),
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
        except (AttributeError, KeyError, TypeError, ValueError, InvalidOperation):
            logger.warning("Unexpected SteVe response: %r", str(body)[:500])
            raise SteveBadResponse(
                "SteVe sent a response Polaris could not understand.", permanent=False
            ) from None


def require_steve_settings(
    base_url: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Raise ImproperlyConfigured naming the SteVe settings that are missing,
    the given values standing in for the settings."""
    missing = [
        name
        for name, value in (
            ("STEVE_URL", base_url or settings.STEVE_URL),
            ("STEVE_USERNAME", username or settings.STEVE_USERNAME),
            ("STEVE_PASSWORD", password or settings.STEVE_PASSWORD),
        )
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} must be set to talk to SteVe."
        )


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


def _retry_after(response: requests.Response) -> float | None:
    """The seconds of a Retry-After header; None without one, or with a date
    (which no proxy in front of SteVe is known to send)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _failure_sentence(base_url: str, response: requests.Response) -> str:
    """The operator's sentence for a 429 or 5xx: SteVe's own error (its body), or
    what answered in its place (a proxy's page), whose cause SteVe's log lacks."""
    status = response.status_code
    said = _error_message(response)
    if said is not None:
        return (
            f"SteVe at {base_url} failed with HTTP {status} ({said}); its own log "
            "says why. The next run tries again."
        )
    if status == 429:
        return (
            f"SteVe at {base_url}, or a proxy in front of it, asked for fewer "
            "requests (HTTP 429, too many requests). The next run tries again; if "
            "it keeps happening, raise the proxy's rate limit for Polaris."
        )
    return (
        f"SteVe at {base_url} answered HTTP {status} without SteVe's error body: "
        "a proxy or gateway in front of it answered, as when SteVe is down or "
        "restarting; that proxy's log and SteVe's say why. The next run tries again."
    )


def _error_message(response: requests.Response) -> str | None:
    """SteVe's own `message` from an ApiErrorResponse body, when there is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else None
