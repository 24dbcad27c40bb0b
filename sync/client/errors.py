"""The SteVe client's failures: one `SteveError` subclass for each failure its
callers handle differently. Kept apart from the HTTP code, which turns every
`requests` failure and HTTP status into one of these.
"""

# SteVe's 400 message when no station of an operation is connected (CONTRACT §7).
NO_ELIGIBLE_STATIONS = "No stations are eligible for communication."
RESERVATION_NOT_ACTIVE = "This reservation is not active at this station."
TRANSACTION_NOT_ACTIVE = "This transaction is not active at this station."
TAG_NOT_ELIGIBLE = "Requested OCPP Tag is not eligible for this operation."


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
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.operator_message = operator_message or message
        self.permanent = permanent
        self.status = status
        # Seconds the answer asked us to wait before the next request (its
        # Retry-After header), when it said.
        self.retry_after = retry_after

    def add_sentence(self, sentence: str) -> None:
        """Say `sentence` after the message, wherever the error is read (the
        logs print `str(error)`)."""
        self.message += f" {sentence}"
        self.operator_message += f" {sentence}"
        self.args = (self.message,)


class SteveMisconfigured(SteveError):
    """Polaris's settings for SteVe are wrong: no retry helps until an operator
    fixes them."""


class SteveAuthError(SteveMisconfigured):
    """SteVe refused our credentials (401 or 403)."""


class SteveNotFound(SteveError):
    """SteVe has no such object (404)."""


class SteveRouteMissing(SteveMisconfigured):
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

    @property
    def transaction_not_active(self) -> bool:
        """SteVe's refusal to stop a transaction it no longer lists as active at
        that station (the station stopped it, or an operator closed it)."""
        return self.message.startswith(TRANSACTION_NOT_ACTIVE)


class SteveUnanswered(SteveError):
    """SteVe received the request but its answer was lost or unreadable: no answer
    before our timeout, or a success whose body is not what SteVe sends. SteVe may
    have acted on it (an operation may have reached the station)."""


class SteveBadResponse(SteveUnanswered):
    """SteVe answered with a body Polaris cannot read: not JSON, or not the shape
    SteVe sends. Unlike a lost answer, it is about what was asked for, so asking
    for something else may well work."""
