"""The ASGI handler uvicorn runs: Django's, with a synchronous middleware stack."""

import sys
from collections.abc import Iterator
from typing import cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse


class SyncStackASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware stack and the view in one thread.

    Our views are synchronous, and so is most of Django's middleware (the
    MiddlewareMixin kind). On the async stack Django runs each such middleware's
    process_request and process_response through its own sync_to_async: about
    seventeen hops between the event loop and a worker thread per request, each one
    a chance for the request to wait behind others' work. Here the whole stack runs
    as under WSGI, in a single hop; the loop still reads requests and writes
    responses, so streaming responses (the SSE channels) stay asynchronous, and a
    synchronous one (a CSV export, a static file) is read in batches, not whole.
    Async views still work: Django's sync stack calls them through async_to_sync.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response = await sync_to_async(self.get_response, thread_sensitive=True)(
            request
        )
        if isinstance(response, StreamingHttpResponse) and not response.is_async:
            # Django would read it whole, off the event loop, before its first byte
            # (and warn): a million-row export would sit in memory.
            content = cast(Iterator[bytes], response.streaming_content)
            response.streaming_content = _InBatches(content)
        return response


# Bytes a synchronous streaming response reads per hop to the request's thread: a
# million-row CSV export goes out in about 800 messages, not a million.
STREAM_BATCH_BYTES = 256 * 1024


class _InBatches:
    """A synchronous streaming response's content as an async iterator of batches,
    each read in the request's thread, where its database connection (and any
    transaction or server-side cursor on it) lives.

    Django still closes the content it was given (a generator, a file) through the
    response's `close()`, from that thread, whether it was read to the end or the
    client went away.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._next_batch = sync_to_async(self._read_batch, thread_sensitive=True)

    def _read_batch(self) -> bytes:
        batch = bytearray()
        for chunk in self._chunks:
            batch += chunk
            if len(batch) >= STREAM_BATCH_BYTES:
                break
        return bytes(batch)

    def __aiter__(self) -> "_InBatches":
        return self

    async def __anext__(self) -> bytes:
        if batch := await self._next_batch():
            return batch
        raise StopAsyncIteration


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
