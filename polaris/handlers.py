"""The ASGI handler uvicorn runs: Django's, with a synchronous middleware stack."""

import sys

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncStackASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware stack and the view in one thread.

    Our views are synchronous, and so is most of Django's middleware (the
    MiddlewareMixin kind). On the async stack Django runs each such middleware's
    process_request and process_response through its own sync_to_async: about
    seventeen hops between the event loop and a worker thread per request, each one
    a chance for the request to wait behind others' work. Here the whole stack runs
    as under WSGI, in a single hop; the loop still reads requests and writes
    responses, so streaming responses (the SSE channels) stay asynchronous. Async
    views still work: Django's sync stack calls them through async_to_sync.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def uvicorn_command(
    port: int, *, workers: int = 1, access_log: bool = True
) -> list[str]:
    """uvicorn serving polaris.asgi on a loopback port, as the demo and tests run it."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "polaris.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--lifespan",
        "off",
        "--timeout-graceful-shutdown",
        "2",
        # asyncio's loop accepts a connection in Python, so a worker whose request
        # thread holds the GIL is slow to take it and an idle worker gets it first;
        # uvloop accepts in C, busy or not. In paired 3-minute load tests, half as
        # many pages met another in the same process, and page p95 fell 10-30%.
        "--loop",
        "asyncio",
    ]
    if not access_log:
        command.append("--no-access-log")
    return command
