"""Live updates over server-sent events (django-eventstream under ASGI).

Channels: `staff` (the console) and `customer-<user id>` (one per driver). Events
carry HTML rendered from the page's own template partials; htmx's SSE extension
swaps it in (`sse-swap="<event type>"`). Publishing goes through Redis, so an event
sent by a Celery worker reaches every web process, and Redis storage lets a
reconnecting browser replay what it missed (Last-Event-ID, EVENT_REPLAY_SECONDS).

Redis pub/sub ignores the database number, so environments sharing one Redis keep
apart by LIVE_CHANNEL_PREFIX.

Redis may restart under us. Publishing then logs and carries on (a live update is
best effort; the data is in Postgres). Each web process's pub/sub listener ends
the streams open in that process as soon as it loses Redis (their pages would
otherwise go on saying "Live"; they reconnect after a few seconds and say they
are disconnected until Redis answers). It reconnects with backoff, and once it
is subscribed again it ends the streams open then too: they may have missed
events, and a browser that reconnects replays the stored ones (Last-Event-ID)
and re-reads the page's live parts (static/js/polaris.js), which also covers
events Redis never got.

A stream is authorised when it connects, so it also ends when that may no longer
hold: after LIVE_STREAM_MAX_SECONDS (the bound for anything that changes who may
read: a user deactivated or no longer staff, acting as a customer ended, a session
expired or dropped by a password change), and at once when its browser session
signs out (in any web process, through the same pub/sub). The lifetime's end says
`stream-renew` first: the browser reconnects by itself, Last-Event-ID replays what
came in between, and the page neither re-reads nor says it was disconnected. The
reconnect runs the stream view's checks again. A sign-out's end says `signed-out`:
the page stops its stream and reloads, which takes it to the sign-in page, rather
than retrying a stream that can only redirect there; and a reconnect that the
checks turn away to sign in gets `signed-out` too (`signed_out_response`), so a
tab whose sign-in ended while its stream renewed goes there as well.

The stream view alone chooses the channel and knows the user: of the query it keeps
only lastEventId (see `stream`).

Each stream holds a socket and some memory for as long as its tab is open, so one
user may hold LIVE_STREAMS_PER_USER of them in one web process (20: tabs and
devices together). One more ends at once, telling its browser to come back in 30 s
(the page says live updates are disconnected until then), so a script opening
thousands cannot exhaust the process.
"""

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any, cast
from urllib.parse import quote, unquote, urlencode

import redis
import redis.asyncio
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.auth.signals import user_logged_out
from django.db import connection
from django.dispatch import receiver
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    QueryDict,
    StreamingHttpResponse,
)
from django_eventstream import storage as eventstream_storage
from django_eventstream import views as eventstream_views
from django_eventstream.channelmanager import DefaultChannelManager
from django_eventstream.event import Event
from django_eventstream.utils import get_storage
from django_eventstream.views import events
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = logging.getLogger(__name__)

STAFF = "staff"
CUSTOMER = "customer-"

# django-eventstream's pub/sub channel between processes.
PUBSUB_CHANNEL = "events_channel"
# Fail fast: a publisher must not hold up a sync run, and a stream that cannot read
# storage should end so the browser retries.
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_TIMEOUT_S = 5.0
# The listener's reconnect backoff, and how often it checks an idle connection.
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 2.0
LISTENER_PING_S = 15.0
# How long a new stream waits for the listener to subscribe (see _subscribed).
LISTENER_READY_S = 1.0
# What an ended stream tells the browser (EventSource `retry:`, ms): come back soon
# once Redis is back, back off while it is down.
RETRY_AFTER_RESYNC_MS = 1000
RETRY_WHILE_REDIS_DOWN_MS = 5000
# A planned end (lifetime over, signed out): the event that says so, and how soon
# the browser comes back. Each stream's lifetime is LIVE_STREAM_MAX_SECONDS less up
# to this share, so that streams opened together (after a restart) do not all
# reconnect together again.
RENEW_EVENT = "stream-renew"
SIGNED_OUT_EVENT = "signed-out"
RETRY_AFTER_RENEW_MS = 1000
LIFETIME_SPREAD = 0.2
# A stream beyond the user's LIVE_STREAMS_PER_USER: how soon its browser tries again.
RETRY_OVER_STREAM_LIMIT_MS = 30_000
# The one query parameter a stream takes (django-eventstream's resume id).
RESUME_PARAMETER = "lastEventId"

# How long a stored event can be replayed to a browser that reconnects: a
# stream's renewal or a network blip takes seconds, and a page away for longer
# re-reads its live parts instead (`stream-reset`). django-eventstream keeps
# events a day, which at fleet scale held about 1.6 GB of Redis.
EVENT_REPLAY_SECONDS = 15 * 60


def channel_name(name: str) -> str:
    """The channel's name as published, with this environment's prefix."""
    return f"{settings.LIVE_CHANNEL_PREFIX}{name}"


def customer_channel(user_id: int) -> str:
    return channel_name(f"{CUSTOMER}{user_id}")


def staff_channel() -> str:
    return channel_name(STAFF)


def redis_options(**overrides: Any) -> dict[str, Any]:
    """EVENTSTREAM_REDIS with short timeouts and no client-side retries: whoever
    calls decides what a failure means (log it, end a stream, reconnect later)."""
    options: dict[str, Any] = {
        **settings.EVENTSTREAM_REDIS,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
        "socket_timeout": REDIS_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }
    options.update(overrides)
    return options


_client: redis.Redis | None = None


def _shared_client() -> redis.Redis:
    """The process's one client for publishing and event storage, thread-safe with
    its connection pool. Django runs each request in a thread of its own: a client
    per thread, as django-eventstream's storage keeps, connected to Redis anew for
    every page that asks for its stream's latest event id (3 ms of a 12 ms page)."""
    global _client
    if _client is None:
        _client = redis.Redis(**redis_options())
    return _client


def stream_url(url: str, channel: str) -> str:
    """`url`, the page's stream of `channel`, resuming after the channel's latest
    event: what a page's `sse-connect` should say.

    A page shows what was true when it was rendered, and its EventSource connects
    a moment later; an event published in between (a resync that took 30 ms) would
    be missed until the next one. Call it before the page's own queries, so an
    event is at worst received twice. Without Redis it is the plain URL: the page
    then relies on the re-read after its stream reconnects.
    """
    try:
        current = get_storage().get_current_id(channel)
    except RedisError:
        return url
    # django-eventstream's resume id: the quoted channel, a colon, the event id.
    query = urlencode({"lastEventId": f"{quote(channel, safe='')}:{current}"})
    return f"{url}?{query}"


def publish(channel: str, event_type: str, html: str) -> None:
    """Store `html` as one event and fan it out to every web process.

    Never raises: a live update is best effort, and whoever publishes (a sync run, a
    service after commit) has already saved its data. With Redis down the event is
    lost; pages re-read their live parts when their stream reconnects.
    """
    try:
        event = get_storage().append_event(channel, event_type, html)
        message = {
            "channel": channel,
            "event_type": event_type,
            "data": html,
            "pub_id": str(event.id),
        }
        _shared_client().publish(PUBSUB_CHANNEL, json.dumps(message))
    except RedisError as error:
        logger.warning(
            "Live update %s on %s not sent, Redis is unavailable: %s",
            event_type,
            channel,
            error,
        )
    except Exception:
        logger.exception("Could not publish %s on %s", event_type, channel)


class RedisStorage(eventstream_storage.RedisStorage):
    """django-eventstream's Redis storage, for a Redis that can restart, keeping
    each event EVENT_REPLAY_SECONDS.

    It fails fast (see `redis_options`). A replay that cannot be whole gives
    `stream-reset` with the current id, so the page re-reads its live parts: a
    Last-Event-ID above the channel's counter (Redis restarted without its
    data; the stream would stay silent until the counter passed the old id
    again), or events after it that have expired.
    """

    def _connect(self) -> redis.Redis:
        # EVENTSTREAM_STORAGE_CONNECTION is EVENTSTREAM_REDIS (settings.py).
        return _shared_client()

    def append_event(self, channel: str, event_type: str, data: Any) -> Event:
        # Under the keys the library's get_events and get_current_id read.
        event_id = int(self.redis.incr(f"event_counter:{channel}"))
        self.redis.setex(
            f"event:{channel}:{event_id}",
            EVENT_REPLAY_SECONDS,
            json.dumps({"type": event_type, "data": data}),
        )
        return Event(channel, event_type, data, id=event_id)

    def get_events(self, channel: str, last_id: int, limit: int = 100) -> list[Event]:
        current_id = self.get_current_id(channel)
        if last_id > current_id:
            raise eventstream_storage.EventDoesNotExist(
                f"Event {last_id} is gone (Redis lost its data)", current_id
            )
        events: list[Event] = super().get_events(channel, last_id, limit)
        if len(events) < min(limit, current_id - last_id):
            raise eventstream_storage.EventDoesNotExist(
                f"Events after {last_id} have expired", current_id
            )
        return events


class _StreamsEnding(asyncio.Event):
    """Set when the listener ends the streams open now; `retry_ms` is how soon
    their browsers should come back."""

    retry_ms = RETRY_AFTER_RESYNC_MS


class _StreamGeneration:
    """Lets the listener end every stream open in this process (one event loop)."""

    def __init__(self) -> None:
        self._ended: _StreamsEnding | None = None

    def current(self) -> _StreamsEnding:
        if self._ended is None:
            self._ended = _StreamsEnding()
        return self._ended

    def end(self, *, retry_ms: int) -> None:
        if self._ended is not None:
            self._ended.retry_ms = retry_ms
            self._ended.set()
            self._ended = None


_streams = _StreamGeneration()


def session_tag(session_key: str) -> str:
    """What names a browser session on pub/sub: a digest, as the key signs in."""
    return hashlib.sha256(session_key.encode()).hexdigest()


class _StreamsBySession:
    """The streams open in this process, by browser session, so that signing out
    ends them. Used on the event loop only (streams and the listener)."""

    def __init__(self) -> None:
        self._ends: dict[str, set[asyncio.Event]] = {}

    def watch(self, tag: str) -> asyncio.Event:
        ended = asyncio.Event()
        self._ends.setdefault(tag, set()).add(ended)
        return ended

    def forget(self, tag: str, ended: asyncio.Event) -> None:
        ends = self._ends.get(tag)
        if ends is not None:
            ends.discard(ended)
            if not ends:
                del self._ends[tag]

    def end(self, tag: str) -> None:
        for ended in self._ends.pop(tag, ()):
            ended.set()


_sessions = _StreamsBySession()


class _StreamsByUser:
    """How many streams each user holds open in this process. Used on the event
    loop only."""

    def __init__(self) -> None:
        self._open: dict[int, int] = {}

    def take(self, user_id: int) -> bool:
        """Count one more stream of the user's; False, counting none, when they
        hold LIVE_STREAMS_PER_USER already."""
        held = self._open.get(user_id, 0)
        if held >= settings.LIVE_STREAMS_PER_USER:
            return False
        self._open[user_id] = held + 1
        return True

    def give_back(self, user_id: int) -> None:
        held = self._open.pop(user_id, 0) - 1
        if held > 0:
            self._open[user_id] = held


_users = _StreamsByUser()


@receiver(user_logged_out)
def end_streams_of_session(
    sender: object, request: HttpRequest | None, **kwargs: Any
) -> None:
    """Signing out ends the browser session's streams in every web process (the
    session is flushed right after this signal). Best effort, like `publish`: with
    Redis down the streams still end with their lifetime."""
    session = getattr(request, "session", None)
    key = session.session_key if session is not None else None
    if not key:
        return
    try:
        message = json.dumps({"signed_out": session_tag(key)})
        _shared_client().publish(PUBSUB_CHANNEL, message)
    except RedisError as error:
        logger.warning(
            "Live streams of a signed-out session not ended, Redis is unavailable: %s",
            error,
        )


class SupervisedRedisListener:
    """Replaces django-eventstream's RedisListener, which subscribes once and dies
    with its connection: this one reconnects with backoff, for as long as the
    process lives, and ends the local streams when it loses Redis and again when
    it is back (those opened meanwhile may have missed events)."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        # The manager keeps no reference to this task; an unreferenced task can be
        # garbage-collected while it waits.
        self.task = asyncio.current_task()
        delay = RECONNECT_MIN_S
        missed = False
        while True:
            client = redis.asyncio.Redis(
                **redis_options(retry=AsyncRetry(NoBackoff(), 0))
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(PUBSUB_CHANNEL)
                if missed:
                    logger.warning(
                        "Live updates: subscribed to Redis again; ending open "
                        "streams so that browsers reconnect and catch up"
                    )
                    _streams.end(retry_ms=RETRY_AFTER_RESYNC_MS)
                missed = False
                delay = RECONNECT_MIN_S
                self.connected.set()
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect
                if not missed:
                    logger.warning(
                        "Live updates: lost Redis (%s); ending open streams and "
                        "reconnecting",
                        error or "EOF",
                    )
                    # Their pages would go on saying "Live" while nothing can
                    # reach them: ended, they reconnect, and say they are
                    # disconnected until Redis answers again.
                    _streams.end(retry_ms=RETRY_WHILE_REDIS_DOWN_MS)
                missed = True
                self.connected.clear()
            finally:
                with suppress(Exception):
                    await pubsub.aclose()
                with suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen(self, pubsub: redis.asyncio.client.PubSub) -> None:
        waiting_for_pong = False
        while True:
            message = await pubsub.get_message(timeout=LISTENER_PING_S)
            if message is None:
                # A connection that died without a FIN stays silent: ping it, and
                # give up on it if the answer does not come within one period.
                if waiting_for_pong:
                    raise ConnectionError("Redis did not answer PING")
                await pubsub.ping()
                waiting_for_pong = True
                continue
            waiting_for_pong = False
            if message["type"] == "message":
                self._deliver(message["data"])

    @staticmethod
    def _deliver(raw: bytes) -> None:
        try:
            data = json.loads(raw)
            if "signed_out" in data:
                _sessions.end(str(data["signed_out"]))
                return
            event = Event(
                data["channel"], data["event_type"], data["data"], id=data["pub_id"]
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("Live updates: ignored a malformed pub/sub message")
            return
        eventstream_views.get_listener_manager().add_to_queues(event.channel, event)


async def _subscribed() -> None:
    """Start the process's Redis listener if no stream has yet, and wait a moment
    for it to subscribe. A stream reads the stored events once, then waits for the
    listener's: an event published between that read and the subscription would
    reach this stream only at its next reconnect. While Redis is away the wait
    gives up after LISTENER_READY_S, and the stream meets Redis's absence itself."""
    manager = eventstream_views.get_listener_manager()
    listener = manager.redis_listener
    if not isinstance(listener, SupervisedRedisListener):
        return
    with manager.lock:
        if not manager.redis_listener_started:
            asyncio.get_running_loop().create_task(manager.start_redis_listener())
            manager.redis_listener_started = True
    with suppress(TimeoutError):
        await asyncio.wait_for(listener.connected.wait(), LISTENER_READY_S)


def _install_listener() -> None:
    manager = eventstream_views.get_listener_manager()
    if not isinstance(manager.redis_listener, SupervisedRedisListener):
        manager.redis_listener = SupervisedRedisListener()


_install_listener()


def can_read(user: User | AnonymousUser | None, channel: str) -> bool:
    """Staff read the staff channel; a customer reads their own channel only.

    Staff acting as a customer read that customer's channel: the stream view only
    offers it to them while the acting-as session is open.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    name = channel.removeprefix(settings.LIVE_CHANNEL_PREFIX)
    if name == STAFF:
        return bool(user.is_staff)
    if name.startswith(CUSTOMER):
        return name == f"{CUSTOMER}{user.pk}" or bool(user.is_staff)
    return False


class ChannelManager(DefaultChannelManager):
    """Decides who reads which channel; the channels come from the stream view."""

    def can_read_channel(self, user: User | AnonymousUser | None, channel: str) -> bool:
        return can_read(user, channel)

    def is_channel_reliable(self, channel: str) -> bool:
        return True


def stream(request: HttpRequest, channel: str) -> HttpResponse:
    """Serve one channel as an SSE stream without holding a database connection.

    The user and session are loaded first; then the connection goes back, because
    a stream stays open for as long as the tab does and would otherwise keep its
    connection for that long (a handful of tabs would exhaust Postgres). The stream
    ends with its lifetime or its session's sign-out (see the module's docstring).
    """
    _ = request.user.is_authenticated, request.session.items()
    connection.close()
    # django-eventstream reads more of the query than the resume id: es-meta (a
    # token signed with SECRET_KEY naming the channels and the user, which would
    # override ours; garbage was a 500), channel, link and recover (Pushpin's; a 500
    # without it). Our caller chose the channel: the rest is ignored.
    resume_ids = [(RESUME_PARAMETER, i) for i in request.GET.getlist(RESUME_PARAMETER)]
    request.GET = QueryDict(urlencode(resume_ids))
    if not _resumable_from(request):
        # django-eventstream only finds a bad id once the stream has started,
        # and then cuts it: answer with a sentence instead.
        return HttpResponseBadRequest(
            "lastEventId must be the id of an event this stream sent (channel:number).",
            content_type="text/plain",
        )
    response = events(request, channels=[channel])
    if isinstance(response, StreamingHttpResponse) and response.is_async:
        # An async response's content is an async iterator; the stubs allow both.
        content = cast(AsyncIterator[bytes], response.streaming_content)
        key = request.session.session_key
        # A stream is only ever served to a reader `can_read` let in.
        user_id = request.user.pk
        assert user_id is not None
        response.streaming_content = _supervised(
            content,
            user_id=user_id,
            session=session_tag(key) if key else None,
            lifetime=settings.LIVE_STREAM_MAX_SECONDS
            * random.uniform(1 - LIFETIME_SPREAD, 1),
        )
    return response


def planned_end(event: str) -> str:
    """The last words of a stream the server ends on purpose: `event`, and come back
    soon (EventSource's `retry:`, ms)."""
    return f"retry: {RETRY_AFTER_RENEW_MS}\nevent: {event}\ndata:\n\n"


def signed_out_response() -> HttpResponse:
    """What a stream request turned away to sign in gets instead: one `signed-out`
    event, on which the page goes to sign in itself (static/js/polaris.js).

    A tab's reconnect lands here when its sign-in ended in between: signed out in
    another tab while the stream was renewing, expired, or no longer staff; when
    acting as a customer lapsed, which the reloaded page ends; and when the portal
    now shows another customer than the page (acting changed in another tab).
    EventSource can only fail on the sign-in page and retry it forever.
    """
    return HttpResponse(planned_end(SIGNED_OUT_EVENT), content_type="text/event-stream")


def resumes_another_channel(request: HttpRequest, channel: str) -> bool:
    """Whether the stream's resume id (Last-Event-ID, or the page's lastEventId)
    names a channel other than `channel`: the page was rendered for another. A
    malformed id names none (`stream` answers it)."""
    if not _resumable_from(request):
        return False
    raw = request.headers.get("Last-Event-ID") or next(
        (value for value in reversed(request.GET.getlist(RESUME_PARAMETER)) if value),
        "",
    )
    named = {unquote(part.partition(":")[0]) for part in raw.split(",") if part}
    return bool(named - {channel, "error"})


EVENT_ID_MAX_DIGITS = 19


def _resumable_from(request: HttpRequest) -> bool:
    """Whether the Last-Event-ID header or lastEventId parameter, when given, has
    the form of the ids streams send ("channel:number", comma-separated)."""
    raw = request.headers.get("Last-Event-ID") or next(
        (value for value in reversed(request.GET.getlist(RESUME_PARAMETER)) if value),
        "",
    )
    if not raw or raw == "error":  # "error": django-eventstream's own answer
        return True
    for part in raw.split(","):
        channel, colon, number = part.partition(":")
        if not (channel and colon and number.isascii() and number.isdigit()):
            return False
        # Event ids are 64-bit: a longer number is no event's, and past 4,300
        # digits Python refuses to read it as an int at all.
        if len(number) > EVENT_ID_MAX_DIGITS:
            return False
    return True


async def _supervised(
    content: AsyncIterator[bytes],
    *,
    user_id: int,
    session: str | None,
    lifetime: float,
) -> AsyncIterator[bytes]:
    """Pass the stream through, unless the user holds LIVE_STREAMS_PER_USER open
    already, and end it so that the browser reconnects (as EventSource does by
    itself):

    - when the listener resubscribed after a gap, or Redis fails under it: the
      stream may have missed events, and the page re-reads its live parts;
    - after `lifetime` seconds: a planned end, said with `stream-renew`; the
      reconnect replays what came in between, and the stream view checks again
      who may read;
    - when its browser session signs out, said with `signed-out`.
    """
    if not _users.take(user_id):
        logger.warning(
            "Live stream refused: user=%s holds %s open in this process",
            user_id,
            settings.LIVE_STREAMS_PER_USER,
        )
        yield (
            f": Too many live streams open for this user; retrying in "
            f"{RETRY_OVER_STREAM_LIMIT_MS // 1000} s.\n"
            f"retry: {RETRY_OVER_STREAM_LIMIT_MS}\n\n"
        ).encode()
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    generation = _streams.current()
    resynced = asyncio.ensure_future(generation.wait())
    signed_out = _sessions.watch(session) if session else asyncio.Event()
    renewed = asyncio.ensure_future(signed_out.wait())
    step: asyncio.Future[bytes] | None = None
    try:
        await _subscribed()
        while True:
            step = asyncio.ensure_future(anext(content))
            await asyncio.wait(
                {step, resynced, renewed},
                timeout=max(deadline - loop.time(), 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not step.done():
                step.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration, RedisError):
                    await step
                if resynced.done():
                    yield f"retry: {generation.retry_ms}\n\n".encode()
                else:
                    event = SIGNED_OUT_EVENT if renewed.done() else RENEW_EVENT
                    yield planned_end(event).encode()
                return
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            except RedisError as error:
                logger.warning("Live stream ended, Redis is unavailable: %s", error)
                yield f"retry: {RETRY_WHILE_REDIS_DOWN_MS}\n\n".encode()
                return
            yield chunk
    finally:
        # Also when the client went away: the step left running would hold the
        # channel's listener until its next keep-alive.
        if step is not None:
            step.cancel()
        resynced.cancel()
        renewed.cancel()
        if session:
            _sessions.forget(session, signed_out)
        _users.give_back(user_id)
