"""Server-Timing for HTTP responses, measured at the ASGI boundary."""

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

# As Django's ASGIHandler takes them.
Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerTimingMiddleware:
    """Adds `Server-Timing: app;dur=<ms>` to every HTTP response: the time from the
    request entering the application to its response headers.

    Django sends the headers of an ordinary response once the view has run and the
    template is rendered, so this is the server's whole work on the request,
    including any wait for a database connection or for the thread that runs sync
    views, and excluding the network and the client. The load test reads it to
    compare server time under load with the benchmark's server time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - began) * 1000
                timing = (b"server-timing", f"app;dur={ms:.2f}".encode())
                message = {**message, "headers": [*message.get("headers", []), timing]}
            await send(message)

        await self.app(scope, receive, send_with_timing)


def server_ms(header: str | None) -> float | None:
    """The `app` duration of a Server-Timing header, or None."""
    for metric in (header or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name != "app":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None
