"""What the Sessions API refuses, each with a sentence for the caller."""


class ApiSessionError(Exception):
    """A request the Sessions API refuses; `message` is a sentence for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SessionNotFound(ApiSessionError):
    """The charger (or user) named does not exist for this caller."""


class SessionForbidden(ApiSessionError):
    """The caller may read the session (or name the user) but not start or stop
    sessions for another user: staff without the permission."""


class SessionConflict(ApiSessionError):
    """The session, connector or station is in a state that forbids the request."""


class StopUnderWay(SessionConflict):
    """Another stop of the session was sent and the station has not answered it
    yet: nothing more is sent."""


class SessionInvalid(ApiSessionError):
    """The request is well-formed but cannot be carried out as asked."""


class StationError(ApiSessionError):
    """SteVe or the station failed to answer."""


class StartUnconfirmed(StationError):
    """The remote start reached SteVe, but its answer was lost, or the station's
    answer did not reach SteVe in time: the station may start charging, so the
    session waits for it like any other start."""


class StopUnconfirmed(StationError):
    """The remote stop reached SteVe, but its answer was lost, or the station's
    answer did not reach SteVe in time: the station may have stopped, so the stop
    counts as requested, and it is sent again if the charge goes on."""
