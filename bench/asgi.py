"""GET requests to the production ASGI handler, in-process.

The benchmark times what uvicorn would call, `SyncStackASGIHandler` (the handler
of polaris/asgi.py), without the socket: the request's ASGI messages in, the
response's messages out. So its server time includes what a served request
pays and the test `Client` skips: the hop to the worker thread, and the database
connection taken from the pool and given back (the test Client keeps one
connection open across requests). The load test reads the same span from its
`Server-Timing` header.
"""

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from polaris.handlers import SyncStackASGIHandler

Message = Mapping[str, Any]

# One event loop for every request, as in a server process.
_runner = asyncio.Runner()


def session_key(user: User) -> str:
    """A new signed-in session of `user` (a real session row), as its cookie value."""
    login = Client()
    login.force_login(user)
    return login.cookies[settings.SESSION_COOKIE_NAME].value


@dataclass
class AsgiResponse:
    status: int
    body: bytes
    # How many http.response.body messages carried it (a streamed body has several).
    body_messages: int


@dataclass
class AsgiClient:
    """A signed-in browser (or an API client) talking to the handler directly."""

    handler: SyncStackASGIHandler
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def signed_in(cls, handler: SyncStackASGIHandler, user: User) -> "AsgiClient":
        cookie = f"{settings.SESSION_COOKIE_NAME}={session_key(user)}"
        return cls(handler, {"cookie": cookie})

    def get(self, url: str, **headers: str) -> AsgiResponse:
        return self._run(self._get(url, {**self.headers, **headers}, None))

    def get_then_leave(self, url: str, *, body_messages: int) -> AsgiResponse:
        """GET `url` as a client that goes away once `body_messages` have come."""
        return self._run(self._get(url, self.headers, body_messages))

    @staticmethod
    def _run(request: Coroutine[Any, Any, AsgiResponse]) -> AsgiResponse:
        # Not _runner.run(): on the main thread it installs and checks a SIGINT
        # handler per call, and the check formats a repr of the running task,
        # about a millisecond that uvicorn never spends.
        return _runner.get_loop().run_until_complete(request)

    async def _get(
        self, url: str, headers: dict[str, str], leave_after: int | None
    ) -> AsgiResponse:
        parts = urlsplit(url)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            # https: settings may redirect plain http outside local mode.
            "scheme": "https",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                *(
                    (name.lower().encode(), value.encode())
                    for name, value in headers.items()
                ),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 443),
        }
        request_sent = False
        gone: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        status = 0
        body = bytearray()
        body_messages = 0

        async def receive() -> Message:
            nonlocal request_sent
            if request_sent:
                # The handler listens for a disconnect until the response is sent.
                return await gone
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, body_messages
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                body_messages += 1
                if body_messages == leave_after:
                    gone.set_result({"type": "http.disconnect"})

        await self.handler(scope, receive, send)
        return AsgiResponse(status, bytes(body), body_messages)
