"""The stand-in's HTTP server (standard library only, no Django).

SteVe's REST API is served under ``/{context}/api/v1`` behind HTTP Basic auth,
the control API under ``/_standin``. Requests are handled on their own threads;
``Fleet`` serialises access to the simulation.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import io
import json
import logging
import signal
import threading
import time
from argparse import ArgumentParser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from sync.arguments import MAX_FLEET_SIZE, int_between, number_between
from sync.standin import api
from sync.standin.binding import ApiError, QueryParams
from sync.standin.control import Control, ControlError, FleetDefaults, RequestCounter
from sync.standin.faults import REQUEST_FAULTS, Fault, FaultBoard
from sync.standin.fleet import Fleet, LiveTicker
from sync.standin.timestamps import utc_now

logger = logging.getLogger(__name__)

# testing.py reads the base URL from this line, so keep the wording.
LISTENING_PREFIX = "SteVe stand-in listening on "

# Spring Security's default response headers on SteVe's API filter chain.
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-XSS-Protection", "0"),
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
    ("X-Frame-Options", "DENY"),
)
_UNKNOWN_USER = (
    "The user does not exist, exists but is disabled or has API access disabled."
)
_JSON = "application/json"


@dataclass(frozen=True)
class StandinOptions:
    """How to run the stand-in; ``port=0`` picks a free port."""

    port: int = 8180
    host: str = "127.0.0.1"
    context_path: str = "steve"
    username: str = "polaris"
    password: str = "polaris"
    fleet_size: int = 6
    seed: int = 1
    scenarios: bool = True
    live: bool = True
    start_delay: float = 3.0
    first_transaction_pk: int = 1

    @classmethod
    def from_arguments(
        cls, arguments: Mapping[str, Any], *, username: str, password: str
    ) -> StandinOptions:
        """Build options from values parsed with ``add_arguments``."""
        return cls(
            port=arguments["port"],
            context_path=arguments["context_path"].strip("/"),
            username=username,
            password=password,
            fleet_size=arguments["fleet_size"],
            seed=arguments["seed"],
            scenarios=arguments["scenarios"],
            live=arguments["live"],
            start_delay=arguments["start_delay"],
            first_transaction_pk=arguments["first_transaction_pk"],
        )


def add_fleet_size_argument(parser: ArgumentParser) -> None:
    """--fleet-size, of the stand-in and of the demo that starts one."""
    parser.add_argument(
        "--fleet-size",
        type=int_between(1, MAX_FLEET_SIZE, what="a number of charge points"),
        default=6,
        help="Number of simulated charge points (default %(default)s).",
    )


def add_arguments(parser: ArgumentParser) -> None:
    """Add the options ``python -m sync.standin`` and ``steve_standin`` share."""
    parser.add_argument(
        "--port",
        type=int_between(0, 65535, what="a port"),
        default=8180,
        help="TCP port on 127.0.0.1 (default %(default)s; 0 picks a free one).",
    )
    add_fleet_size_argument(parser)
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="Seed of the fleet and its history (default %(default)s).",
    )
    parser.add_argument(
        "--context-path", default="steve", help="SteVe's context path ('' for none)."
    )
    parser.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="Freeze the fleet: nothing changes unless the control API says so.",
    )
    parser.add_argument(
        "--start-delay",
        type=number_between(0, what="seconds"),
        default=3.0,
        help="Seconds from an accepted RemoteStart to its start (default %(default)s).",
    )
    parser.add_argument(
        "--first-transaction-pk",
        # SteVe's transaction_pk is a MySQL INT, and so is Polaris's copy of it;
        # a fleet runs some thousands of transactions past its first.
        type=int_between(1, 2_000_000_000, what="a transaction pk"),
        default=1,
        help="Number transactions from here, 1 to 2,000,000,000 (default "
        "%(default)s), e.g. above the pks a database already holds, so a sync "
        "against it adds rather than mixes.",
    )
    parser.add_argument(
        "--no-scenarios",
        dest="scenarios",
        action="store_false",
        help="Leave out the CONTRACT §11 edge-case transactions.",
    )


@dataclass(frozen=True)
class Reply:
    """A complete HTTP response."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # The connection drops halfway through the body (a restart, a proxy timeout).
    cut: bool = False
    # The connection closes before a byte of the answer: the request was carried
    # out, and the client cannot tell it from a request never received.
    hangup: bool = False

    @classmethod
    def json(cls, status: int, payload: object) -> Reply:
        """A JSON response, written compactly as Jackson does."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, _JSON)


class _Anonymous(Exception):
    """No Basic credentials were sent: Spring's 403 entry point answers."""


class _BadCredentials(Exception):
    """``ApiAuthenticationManager`` refused the credentials: a 401 with JSON."""


def authenticate(header: str | None, username: str, password: str) -> None:
    """Check an ``Authorization`` header as SteVe's API filter chain does (§1).

    Raises:
        _Anonymous: no ``Basic`` header, so no login was attempted.
        _BadCredentials: with the message SteVe puts into the 401 body.
    """
    value = (header or "").strip()
    if not value.lower().startswith("basic"):
        raise _Anonymous
    if value.lower() == "basic":
        raise _BadCredentials("Empty basic authentication token")
    try:
        decoded = base64.b64decode(value[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise _BadCredentials("Failed to decode basic authentication token") from error
    user, colon, secret = decoded.partition(":")
    if not colon:
        raise _BadCredentials("Invalid basic authentication token")
    if not user or not secret:
        raise _BadCredentials("Required parameters missing")
    if not hmac.compare_digest(user.encode(), username.encode()):
        raise _BadCredentials(_UNKNOWN_USER)
    if not hmac.compare_digest(secret.encode(), password.encode()):
        raise _BadCredentials("Invalid password")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _control_refusal(method: str, headers: Message) -> tuple[HTTPStatus, str] | None:
    """Why a control request is refused, or None. The control API has no
    password (tests and the demo drive it), so only programs on this machine may
    use it: not a web page open in a browser here, which could send it a form's
    text/plain POST, or read it through a host name of its own rebound to
    127.0.0.1 (its Host header then names that host)."""
    try:
        host = urlsplit(f"//{headers.get('Host') or ''}").hostname
    except ValueError:  # an unclosed [
        host = None
    if host not in LOOPBACK_HOSTS:
        return HTTPStatus.FORBIDDEN, "The control API answers only to 127.0.0.1."
    content_type = (headers.get("Content-Type") or "").partition(";")[0].strip()
    if method == "POST" and content_type.lower() != "application/json":
        return (
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "Control requests send JSON (Content-Type: application/json).",
        )
    return None


class StandinServer(ThreadingHTTPServer):
    """The HTTP server plus the state its handlers share."""

    daemon_threads = True

    def __init__(self, options: StandinOptions) -> None:
        self.options = options
        # Bind first: a port already taken is refused at once, not after the fleet
        # (seconds for a large one) has been built.
        super().__init__((options.host, options.port), StandinRequestHandler)
        self.fleet = Fleet(
            fleet_size=options.fleet_size,
            seed=options.seed,
            scenarios=options.scenarios,
            start_delay=options.start_delay,
            first_transaction_pk=options.first_transaction_pk,
        )
        self.faults = FaultBoard()
        self.counter = RequestCounter()
        defaults = FleetDefaults(options.fleet_size, options.seed, options.scenarios)
        self.control = Control(self.fleet, self.faults, self.counter, defaults)
        context = f"/{options.context_path}" if options.context_path else ""
        # SteVe's API filter chain covers /api/**; the controllers live in /api/v1.
        self.api_prefix = f"{context}/api/"

    @property
    def base_url(self) -> str:
        """The SteVe base URL a client is configured with, context path included."""
        port = self.server_address[1]
        context = f"/{self.options.context_path}" if self.options.context_path else ""
        return f"http://{self.options.host}:{port}{context}"


class StandinRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the control API or to SteVe's REST API."""

    server: StandinServer
    protocol_version = "HTTP/1.1"  # keep-alive, as Jetty/Tomcat offer
    server_version = "SteVe-standin"
    sys_version = ""
    # On a kept-alive connection, a response written in two small segments
    # (headers, then body) waits for the client's delayed ACK of the first:
    # 40 ms per request on Linux. Buffer the response so it leaves in one write
    # (``handle_one_request`` flushes after each request) and send at once.
    wbufsize = io.DEFAULT_BUFFER_SIZE
    disable_nagle_algorithm = True
    # One handler serves one connection, however many requests it carries.
    _api_connection_counted = False

    def do_GET(self) -> None:
        """Handle GET."""
        self._handle()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Send access logs to ``logging`` instead of stderr."""
        logger.debug(format, *args)

    def _handle(self) -> None:
        target = urlsplit(self.path)
        self.server.counter.count(target.path)
        try:
            body = self._read_body()
            if target.path.startswith("/_standin/"):
                reply = self._control(target.path, body)
            elif target.path.startswith(self.server.api_prefix):
                self.server.counter.record_api_target(self.path)
                if not self._api_connection_counted:
                    self._api_connection_counted = True
                    self.server.counter.count_api_connection()
                reply = self._api(target.path, target.query, body)
            else:
                reply = _boot_error(HTTPStatus.NOT_FOUND, target.path)
        except Exception as error:
            # SteVe's catch-all @ExceptionHandler(Exception.class) (CONTRACT §2).
            logger.exception("Request %s %s failed", self.command, self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            reply = Reply.json(status, api.error_json(status, str(error), self._url()))
        self._write(reply)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            # The body cannot be skipped, so this connection cannot carry on.
            self.close_connection = True
            raise
        return self.rfile.read(length) if length > 0 else b""

    def _write(self, reply: Reply) -> None:
        if reply.hangup:
            self.close_connection = True
            return
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.cut:
            self.close_connection = True
            self.wfile.write(reply.body[: len(reply.body) // 2])
            return
        self.wfile.write(reply.body)

    def _url(self) -> str:
        """``HttpServletRequest.getRequestURL()``: the URL without query string."""
        host = self.headers.get("Host") or "{}:{}".format(
            *self.server.server_address[:2]
        )
        return f"http://{host}{urlsplit(self.path).path}"

    # -- control API --------------------------------------------------------------

    def _control(self, path: str, body: bytes) -> Reply:
        refusal = _control_refusal(self.command, self.headers)
        if refusal is not None:
            return Reply.json(refusal[0], {"error": refusal[1]})
        segments = [unquote(s) for s in path.removeprefix("/_standin/").split("/")]
        try:
            return Reply.json(
                HTTPStatus.OK, self.server.control.handle(self.command, segments, body)
            )
        except ControlError as error:
            return Reply.json(error.status, {"error": error.message})

    # -- SteVe REST API -----------------------------------------------------------

    def _api(self, path: str, query: str, body: bytes) -> Reply:
        reply = self._guarded_api(path, query, body)
        return replace(reply, headers=reply.headers + _SECURITY_HEADERS)

    def _guarded_api(self, path: str, query: str, body: bytes) -> Reply:
        """Authentication first (it is a servlet filter), then faults, then routing."""
        options = self.server.options
        try:
            authenticate(
                self.headers.get("Authorization"), options.username, options.password
            )
        except _Anonymous:
            # Http403ForbiddenEntryPoint: a bare 403, not SteVe's JSON (§1).
            return Reply(HTTPStatus.FORBIDDEN)
        except _BadCredentials as error:
            return self._unauthorized(str(error))
        fault = self.server.faults.take(self.path, REQUEST_FAULTS)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        elif fault is not None and fault.kind == "unauthorized":
            return self._unauthorized("Invalid password")
        elif fault is not None and fault.kind == "error":
            return self._injected_error(fault)
        segments = [
            unquote(s) for s in path.removeprefix(self.server.api_prefix).split("/")
        ]
        reply = self._route(segments, query, body)
        if fault is not None and fault.kind == "malformed":
            truncated = reply.body[: len(reply.body) // 2] or b'{"'
            return Reply(HTTPStatus.OK, truncated, _JSON)
        if fault is not None and fault.kind == "cut":
            return replace(reply, cut=True)
        if fault is not None and fault.kind == "hangup":
            return replace(reply, hangup=True)
        return reply

    def _route(self, segments: list[str], query: str, body: bytes) -> Reply:
        fleet, params = self.server.fleet, QueryParams(query)
        if _added_in_3_12(self.command, segments) and self.server.faults.take(
            self.path, ("steve_3_11",)
        ):
            # SteVe 3.11 has no such controller: Spring's 404, not SteVe's.
            return _boot_error(HTTPStatus.NOT_FOUND, urlsplit(self.path).path)
        try:
            match self.command, segments:
                case "GET", ["v1", "transactions"]:
                    return Reply.json(
                        HTTPStatus.OK, api.get_transactions(fleet, params)
                    )
                case "GET", ["v1", "transactions", pk]:
                    details = api.get_transaction_details(fleet, pk, params)
                    return Reply.json(HTTPStatus.OK, details)
                case "PATCH", ["v1", "transactions", pk, "stop"]:
                    api.stop_transaction(fleet, pk)
                    return Reply(HTTPStatus.OK)
                case "GET", ["v1", "ocppTags"]:
                    return Reply.json(HTTPStatus.OK, api.get_tags(fleet, params))
                case "POST", ["v1", "operations", name] if name in api.OPERATION_NAMES:
                    return self._operation(name, body)
        except ApiError as error:
            payload = api.error_json(error.status, error.message, self._url())
            return Reply.json(error.status, payload)
        status = (
            HTTPStatus.METHOD_NOT_ALLOWED
            if _is_route(segments)
            else HTTPStatus.NOT_FOUND
        )
        return _boot_error(status, urlsplit(self.path).path)

    def _operation(self, name: str, body: bytes) -> Reply:
        """Run an operation; with a timeout fault armed, SteVe's side effects
        happen but the station never answers, and the call blocks meanwhile."""
        timeout = self.server.faults.take(self.path, ("timeout_operation",))
        result = api.run_operation(
            self.server.fleet, name, body, answered=timeout is None
        )
        if timeout is not None:
            time.sleep(timeout.delay)
        return Reply.json(HTTPStatus.OK, result)

    def _unauthorized(self, message: str) -> Reply:
        # ApiAuthenticationManager.commence: JSON and no WWW-Authenticate header,
        # so clients must send credentials pre-emptively (CONTRACT §1).
        status = HTTPStatus.UNAUTHORIZED
        return Reply.json(status, api.error_json(status, message, self._url()))

    def _injected_error(self, fault: Fault) -> Reply:
        """What a proxy in front of SteVe sends for 502/503/429; any other
        status comes from SteVe itself, with its JSON error body."""
        status = HTTPStatus(fault.status)
        retry_after = (("Retry-After", "1"),)
        if status is HTTPStatus.TOO_MANY_REQUESTS:
            return Reply(status, status.phrase.encode(), "text/plain", retry_after)
        if status in (HTTPStatus.BAD_GATEWAY, HTTPStatus.SERVICE_UNAVAILABLE):
            title = f"{status.value} {status.phrase}"
            page = (
                f"<html><head><title>{title}</title></head><body>{title}</body></html>"
            )
            return Reply(status, page.encode(), "text/html", retry_after)
        message = f"Simulated {status.phrase} (stand-in fault injection)"
        return Reply.json(status, api.error_json(status, message, self._url()))


def _added_in_3_12(method: str, segments: list[str]) -> bool:
    """Whether a request goes to a route SteVe 3.12 added (CONTRACT §0)."""
    match method, segments:
        case "GET", ["v1", "transactions", _]:
            return True
        case "PATCH", ["v1", "transactions", _, "stop"]:
            return True
    return False


def _is_route(segments: list[str]) -> bool:
    """Whether a path names a supported resource, so a wrong method is a 405."""
    match segments:
        case ["v1", "transactions"] | ["v1", "transactions", _]:
            return True
        case ["v1", "transactions", _, "stop"] | ["v1", "ocppTags"]:
            return True
        case ["v1", "operations", name]:
            return name in api.OPERATION_NAMES
    return False


def _boot_error(status: HTTPStatus, path: str) -> Reply:
    """Spring Boot's own error body, not SteVe's ``ApiErrorResponse``: requests
    that match no controller never reach ``ApiControllerAdvice`` (CONTRACT §2)."""
    now = utc_now()
    timestamp = f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}+00:00"
    payload = {
        "timestamp": timestamp,
        "status": status.value,
        "error": status.phrase,
        "path": path,
    }
    return Reply.json(status, payload)


def cannot_listen(port: int, error: OSError) -> str:
    """Why the stand-in could not start on `port`, and what to do about it."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"Port {port} on 127.0.0.1 is already in use, perhaps by a stand-in or "
            "a demo already running: stop that one, or choose another port with "
            "--port (0 picks a free one)."
        )
    return f"Cannot listen on 127.0.0.1:{port}: {error.strerror or error}."


def serve(options: StandinOptions, announce: Callable[[str], None]) -> None:
    """Run the stand-in until SIGTERM or SIGINT, then shut down cleanly.

    ``announce`` receives the listening line once the port is bound. Must be
    called from the main thread (signal handlers).

    Raises:
        OSError: the port cannot be bound.
    """
    stopping = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with StandinServer(options) as server:
            _serve_until(server, stopping, announce)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("SteVe stand-in stopped")


def _serve_until(
    server: StandinServer, stopping: threading.Event, announce: Callable[[str], None]
) -> None:
    http_thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
    )
    http_thread.start()
    ticker = LiveTicker(server.fleet) if server.options.live else None
    try:
        if ticker is not None:
            ticker.start()
        announce(f"{LISTENING_PREFIX}{server.base_url}")
        # Poll so the signal handler gets to run promptly on every platform.
        while not stopping.wait(0.5):
            pass
    finally:
        if ticker is not None:
            ticker.stop()
        server.shutdown()
