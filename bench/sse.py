"""Many SSE clients on one uvicorn process: delivery latency of one event, and RSS.

The clients are raw asyncio sockets in this process (one coroutine each), so the
load generator costs little next to the server it measures.
"""

import asyncio
import time
from dataclasses import dataclass

import psutil
from django.test import override_settings

from polaris import live
from polaris.browser import LIVE_CHANNEL_PREFIX, LiveServer

EVENTS = 5
HANDSHAKES = 50
CONNECT_TIMEOUT_S = 60.0
DELIVERY_TIMEOUT_S = 10.0


@dataclass
class SseResult:
    clients: int
    connected: int
    latencies_ms: list[float]
    rss_mb: float


def sse_load(*, clients: int, session_cookie: str) -> SseResult:
    """Open `clients` streams of the staff channel, publish EVENTS events, and
    measure per client how long each took to arrive."""
    # LiveServer runs polaris.settings_test (speed knobs only: hasher, locmem
    # cache); sessions live in the database, so this process's cookie works there.
    with (
        override_settings(LIVE_CHANNEL_PREFIX=LIVE_CHANNEL_PREFIX),
        # Plain http on loopback: no redirect to https, cookies not Secure-only.
        # These clients do not reconnect: no stream may reach its lifetime within
        # the run (about a minute at most), whatever the environment says. They
        # are one signed-in user, who may hold them all: the case measures the
        # process's capacity, not one person's share of it.
        LiveServer(
            SECURE_SSL_REDIRECT="false",
            SECURE_COOKIES="false",
            LIVE_STREAM_MAX_SECONDS="3600",
            LIVE_STREAMS_PER_USER=str(clients),
        ) as server,
    ):
        assert server.process is not None
        latencies, connected = asyncio.run(_drive(server.port, clients, session_cookie))
        rss = psutil.Process(server.process.pid).memory_info().rss / 2**20
    return SseResult(clients, connected, latencies, round(rss, 1))


async def _drive(port: int, clients: int, cookie: str) -> tuple[list[float], int]:
    ready = asyncio.Semaphore(0)
    # Clients arrive HANDSHAKES at a time (as tabs do, not all in one millisecond):
    # each handshake briefly takes a database connection for the session lookup.
    handshakes = asyncio.Semaphore(HANDSHAKES)
    arrivals: list[dict[int, float]] = [{} for _ in range(clients)]
    tasks = [
        asyncio.create_task(_client(port, cookie, ready, handshakes, arrivals[i]))
        for i in range(clients)
    ]
    connected = 0
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while connected < clients and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(ready.acquire(), deadline - time.monotonic())
            connected += 1
        except TimeoutError:
            break
    await asyncio.sleep(0.5)  # every stream is subscribed once its headers came
    sent: dict[int, float] = {}
    loop = asyncio.get_running_loop()
    for seq in range(EVENTS):
        sent[seq] = time.perf_counter()
        await loop.run_in_executor(
            None,
            live.publish,
            live.staff_channel(),
            "bench-ping",
            f"bench-{seq}",
        )
        await asyncio.sleep(DELIVERY_TIMEOUT_S / 10)
    await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = []
    for seen in arrivals:
        for seq, at in sent.items():
            # A missed event counts as the timeout, so losses show in p95.
            arrived = seen.get(seq)
            latency = (arrived - at) if arrived is not None else DELIVERY_TIMEOUT_S
            latencies.append(round(latency * 1000, 2))
    return latencies, connected


async def _client(
    port: int,
    cookie: str,
    ready: asyncio.Semaphore,
    handshakes: asyncio.Semaphore,
    seen: dict[int, float],
) -> None:
    async with handshakes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        writer.write(
            (
                "GET /admin/live/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Cookie: sessionid={cookie}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        try:
            await writer.drain()
            status = await reader.readline()
        except OSError:
            writer.close()
            return
    try:
        if b" 200 " not in status:
            return
        ready.release()
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: bench-"):
                seen[int(line[len(b"data: bench-") :].strip())] = time.perf_counter()
    finally:
        writer.close()
