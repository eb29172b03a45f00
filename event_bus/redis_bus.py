"""The production event bus: Redis pub/sub for delivery, a capped stream as the journal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from fnmatch import fnmatchcase
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from event_bus.backoff import Backoff
from event_bus.channels import Channels, exact_channels, is_exact
from event_bus.codec import Codec, EventRejected
from event_bus.events import Event, new_event_id
from event_bus.outbox import Outbox, Outgoing
from event_bus.stats import REJECTIONS_LOGGED_AT_ONCE, BusStats, ThrottledLog
from event_bus.subscriber_socket import SubscriberSocket
from event_bus.subscription import Handler, Subscription
from event_bus.tasks import cancel_and_wait

log = structlog.get_logger()

# A subscriber connection this quiet gets a PING; no answer within as long again: reconnect.
SILENCE_BEFORE_PING_SECONDS = 15.0

# What "Redis went away" looks like from redis-py.
CONNECTION_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

# One call per batch: publish each event and append it to the journal, server-side, so a batch
# costs one command and one reply instead of two of each per event.
# KEYS[1] = journal; ARGV[1] = journal max length; then (publish flag, channel, payload) triples.
PUBLISH_BATCH_SCRIPT = """
local journal, maxlen = KEYS[1], ARGV[1]
for i = 2, #ARGV, 3 do
  if ARGV[i] == '1' then
    redis.call('PUBLISH', ARGV[i + 1], ARGV[i + 2])
  end
  redis.call('XADD', journal, 'MAXLEN', '~', maxlen, '*',
             'channel', ARGV[i + 1], 'event', ARGV[i + 2])
end
return (#ARGV - 1) / 3
"""


def connect_redis(url: str, *, timeout: float, name: str = "trading") -> aioredis.Redis:
    """A client that fails fast (the bus does its own backoff) and checks idle connections."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )


def _bulk(argument: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(argument), argument)


_PUBLISH, _JOURNAL_ONLY = _bulk(b"1"), _bulk(b"0")  # the batch script's per-event flag


# Channel and pattern names come and go with symbols, but few at a time: each is converted once.
@functools.lru_cache(maxsize=100_000)
def _bulk_channel(channel: str) -> bytes:
    return _bulk(channel.encode())


_name = functools.lru_cache(maxsize=100_000)(bytes.decode)  # a name off the wire, as str


def pack_command(arguments: list[bytes]) -> bytes:
    """One command in Redis's wire format. redis-py's own packer costs microseconds per
    argument, which dominates a batch of thousands of arguments."""
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        parts += (b"$%d\r\n" % len(argument), argument, b"\r\n")
    return b"".join(parts)


DataLossListener = Callable[[], Coroutine[Any, Any, None]]


class RecentIds:
    """The last `size` event ids seen, to drop the second copy of a replayed event."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; False if it was already there."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


class RedisEventBus:
    """Publishes every event on its channel (`Channels.for_event`) and appends it to the journal
    stream (`Channels.journal`) in the same round trip; delivers subscriptions to handlers (a
    pattern with glob characters by PSUBSCRIBE, an exact channel name by SUBSCRIBE).

    - Publishing only queues the encoded event in a bounded `Outbox`; one flusher task sends what
      has accumulated as one pipeline, so a burst costs one round trip. With `linger_seconds`,
      market data alone waits that long for company (fewer, larger writes: each write to a
      local socket costs the kernel ~100 us on a small VM); orders, fills and signals never
      wait. While Redis is away the outbox holds events and delivers them in order when it
      returns (at least once: a batch cut off mid-flight is sent again, and consumers
      deduplicate by event id).
    - One reader task owns the pub/sub connection; on loss it reconnects with backoff,
      subscribes every pattern again and replays from the journal the non-droppable events
      published while it was away (deduplicated by id), so no order, fill or signal is missed.
    - A payload that does not decode, or arrives on a channel it does not belong on, is logged
      with its channel and reason, counted in `stats.rejected`, and skipped.
    - With `local_delivery` (the default), an event published here reaches this bus's own
      matching subscriptions at once, without the round trip through Redis; Redis still gets
      it for every other process, watcher and the journal, and the copy Redis sends back is
      recognised by its bytes and skipped. Modules in one process then hand events on in
      microseconds, and the pub/sub copies they would have decoded again cost a lookup.
      Channels only this process publishes on (`publishes_alone`: the daemon declares ticks
      and bars when market data runs in it) are not subscribed in Redis at all.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        channels: Channels | None = None,
        codec: Codec | None = None,
        journal_maxlen: int = 1_000_000,
        outbox_capacity: int = 100_000,
        queue_size: int = 10_000,
        batch_size: int = 1_000,
        reconnect_cap_seconds: float = 30.0,
        replay_margin_seconds: float = 5.0,
        local_delivery: bool = True,
        linger_seconds: float = 0.0,
    ) -> None:
        self.redis = redis
        self.channels = channels or Channels()
        self.codec = codec or Codec()
        self.stats = BusStats()
        self.journal_maxlen = journal_maxlen
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.replay_margin_seconds = replay_margin_seconds
        self.local_delivery = local_delivery
        self.linger_seconds = linger_seconds
        self._outbox = Outbox(outbox_capacity)
        self._script_sha = hashlib.sha1(PUBLISH_BATCH_SCRIPT.encode()).hexdigest().encode()
        self._reconnect_cap = reconnect_cap_seconds
        # pattern -> its subscriptions (several handlers may share a pattern)
        self._subscriptions: dict[str, list[Subscription]] = {}
        # pattern -> ids of non-droppable events delivered to it lately
        self._recent: dict[str, RecentIds] = {}
        # pattern -> futures waiting for Redis to confirm the (P)SUBSCRIBE
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._subscriber: SubscriberSocket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._has_patterns = asyncio.Event()
        self._epoch: bytes | None = None  # the epoch marker's value when last seen
        self._data_loss_listeners: list[DataLossListener] = []
        self._listener_tasks: set[asyncio.Task[None]] = set()
        self._unconfirmed: set[str] = set()
        self._last_message_at = time.time()
        self._lost_at: float | None = None
        self._publisher_down_since: float | None = None
        self._log_rejected = ThrottledLog("event_rejected", burst=REJECTIONS_LOGGED_AT_ONCE)
        self._log_dropped = ThrottledLog("event_dropped")
        self._log_connect_failed = ThrottledLog("bus_connect_failed", per_second=0.2)
        # channel -> the subscribed patterns it matches (forgotten at every new subscription)
        self._matching: dict[str, list[str]] = {}
        # (pattern, payload) delivered locally -> copies Redis is still to send back; bounded
        # (a copy lost with a connection is never sent), the oldest forgotten first
        self._echoes: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._remember_at_most = outbox_capacity  # echoes and journaled ids, each
        # ids of orders, fills, signals... this bus has put in the journal: recent ones, bounded
        self._journaled_ids: OrderedDict[str, None] = OrderedDict()
        self._published_alone: set[str] = set()  # patterns only this process publishes on
        self._local_only: set[str] = set()  # subscribed patterns served without Redis
        # The last payload decoded: a message matching several subscriptions arrives once per
        # subscription, back to back, and is decoded once (events are immutable, so shared).
        self._last_decoded: tuple[str, bytes, Event | None] = ("", b"", None)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0, **options: Any) -> RedisEventBus:
        return cls(connect_redis(url, timeout=timeout), **options)

    # Lifecycle

    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Start the reader and the flusher; wait until subscribed, or log and go on retrying."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="bus:reader"),
            asyncio.create_task(self._flush_forever(), name="bus:flusher"),
        ]
        if self._redis_patterns():
            await self._wait_connected(wait_seconds)

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Deliver what is queued (bounded by `timeout`), then close everything."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout)
        await cancel_and_wait(*self._tasks, *self._listener_tasks)
        self._tasks = []
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                await subscription.stop()
        await self._close_subscriber()
        await self.redis.aclose()
        if len(self._outbox):
            log.error("bus_stopped_with_unsent_events", unsent=len(self._outbox))

    async def drain(self) -> None:
        """Wait until every subscription's queue is handled and the outbox is sent."""
        while True:
            for subscriptions in list(self._subscriptions.values()):
                for subscription in subscriptions:
                    await subscription.drain()
            await self._outbox.wait_empty()
            if all(s.backlog == 0 for subs in self._subscriptions.values() for s in subs):
                return

    def vital_tasks(self) -> list[asyncio.Task[None]]:
        """The reader and the flusher: neither may end while the bus runs."""
        return list(self._tasks)

    @property
    def connected(self) -> bool:
        """The subscriber side is connected and every pattern is subscribed."""
        return self._connected.is_set()

    # Publishing

    async def publish(self, event: Event) -> None:
        """Queue `event` for its channel and the journal, and hand it to this bus's own
        matching subscriptions. Waits only when the outbox or a subscription's queue is full."""
        channel, payload = await self._enqueue(event, publish=True)
        if not event.droppable:
            self._remember_journaled(event.id)
        if self.local_delivery:
            await self._deliver_locally(channel, payload, event)

    async def append_to_journal(self, event: Event) -> None:
        """Record `event` in the journal without publishing it: for an event that arrived by a
        plain `PUBLISH` (a manual signal) and so is not in the journal yet. An event this bus
        published or appended lately is there already and is not written twice."""
        if event.id in self._journaled_ids:
            return
        await self._enqueue(event, publish=False)
        self._remember_journaled(event.id)

    def _remember_journaled(self, event_id: str) -> None:
        journaled = self._journaled_ids
        journaled[event_id] = None
        if len(journaled) > self._remember_at_most:
            journaled.popitem(last=False)

    async def _enqueue(self, event: Event, *, publish: bool) -> tuple[str, bytes]:
        payload = self.codec.encode(event)
        event_type = type(event).__name__
        channel = self.channels.for_event(event)
        dropped = await self._outbox.put(
            channel, payload, event_type, type(event).droppable, publish
        )
        if dropped is not None:
            self.stats.dropped[dropped.event_type] += 1
            self._log_dropped(
                reason="outbox_full",
                event_type=dropped.event_type,
                dropped_total=sum(self.stats.dropped.values()),
            )
        (self.stats.published if publish else self.stats.journaled)[event_type] += 1
        return channel, payload

    def _patterns_matching(self, channel: str) -> list[str]:
        """The subscribed patterns `channel` matches (remembered per channel)."""
        patterns = self._matching.get(channel)
        if patterns is None:
            if len(self._matching) >= 100_000:  # channels come and go; keep it bounded
                self._matching.clear()
            patterns = [p for p in self._subscriptions if fnmatchcase(channel, p)]
            self._matching[channel] = patterns
        return patterns

    async def _deliver_locally(self, channel: str, payload: bytes, event: Event) -> None:
        patterns = self._patterns_matching(channel)
        echoes, local_only = self._echoes, self._local_only
        for pattern in patterns:
            if pattern not in local_only:  # Redis will send it back too
                key = (pattern, payload)
                echoes[key] = echoes.get(key, 0) + 1
                if len(echoes) > self._remember_at_most:
                    echoes.popitem(last=False)
            await self._hand_over(pattern, channel, event)

    def _is_echo(self, pattern: str, payload: bytes) -> bool:
        """Redis's copy of an event this bus delivered locally: forget it, skip it."""
        if not self._echoes:
            return False
        key = (pattern, payload)
        expected = self._echoes.get(key)
        if expected is None:
            return False
        if expected == 1:
            del self._echoes[key]
        else:
            self._echoes[key] = expected - 1
        return True

    async def _flush_forever(self) -> None:
        backoff = Backoff(0.05, self._reconnect_cap)
        while True:
            batch = await self._outbox.take(self.batch_size, linger=self.linger_seconds)
            while not await self._send(batch):
                await asyncio.sleep(backoff.next_delay())
            backoff.reset()
            self._outbox.sent(len(batch))

    def _pack_batch(self, batch: list[Outgoing]) -> bytes:
        """`pack_command` of EVALSHA sha 1 journal maxlen (publish? channel payload)..., in one
        pass over the batch, each channel's bulk string made once (a third of the flusher's
        time went to building and packing the argument list)."""
        head = [b"EVALSHA", self._script_sha, b"1", self.channels.journal.encode()]
        head.append(b"%d" % self.journal_maxlen)
        parts = [b"*%d\r\n" % (len(head) + 3 * len(batch)), *map(_bulk, head)]
        for item in batch:
            flag = _PUBLISH if item.publish else _JOURNAL_ONLY
            parts += (flag, _bulk_channel(item.channel), _bulk(item.payload))
        return b"".join(parts)

    async def _send(self, batch: list[Outgoing]) -> bool:
        command = self._pack_batch(batch)
        try:
            try:
                await self._execute_packed(command)
            except NoScriptError:  # a restarted Redis has forgotten the script
                await self.redis.script_load(PUBLISH_BATCH_SCRIPT)
                await self._execute_packed(command)
        except CONNECTION_ERRORS as error:
            if self._publisher_down_since is None:
                self._publisher_down_since = time.monotonic()
                log.warning("bus_publish_failed", error=str(error), queued=len(self._outbox))
            return False
        if self._publisher_down_since is not None:
            log.info(
                "bus_publish_resumed",
                down_seconds=round(time.monotonic() - self._publisher_down_since, 3),
                queued=len(self._outbox),
            )
            self._publisher_down_since = None
        return True

    async def _execute_packed(self, command: bytes) -> Any:
        pool = self.redis.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(command, check_health=False)
            return await connection.read_response()
        except BaseException as error:
            if not isinstance(error, NoScriptError):  # the reply was read whole: reusable
                await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    # Subscribing

    def publishes_alone(self, *patterns: str) -> None:
        """Declare that no other process publishes on channels matching `patterns`.

        Later subscriptions within them (the same pattern, or an exact channel it matches) are
        served by local delivery only, with no SUBSCRIBE in Redis and so no copy of each event
        to read back. Without local delivery this does nothing.
        """
        self._published_alone.update(patterns)

    def _served_locally(self, pattern: str) -> bool:
        return self.local_delivery and any(
            pattern == alone or (is_exact(pattern) and fnmatchcase(pattern, alone))
            for alone in self._published_alone
        )

    def _redis_patterns(self) -> list[str]:
        return [pattern for pattern in self._subscriptions if pattern not in self._local_only]

    async def subscribe(
        self, pattern: str, handler: Handler, *, name: str | None = None
    ) -> Subscription:
        """Deliver events on channels matching `pattern` to `handler`, one at a time, in order.

        When the bus is connected, returns once Redis has confirmed the subscription.
        """
        return await self._subscribe([pattern], handler, name=name or pattern)

    async def subscribe_channels(
        self, channels: Iterable[str], handler: Handler, *, name: str
    ) -> Subscription:
        """One subscription (one queue, one worker task) for several exact channels: events on
        any of them reach `handler` one at a time, in the order they arrived.

        For a handler that serves many instruments alike: a subscription per channel would cost
        a task switch per event and a task per channel. When the queue is full, droppable events
        are conflated per channel, as in any subscription. Redis is asked in one SUBSCRIBE.
        """
        return await self._subscribe(exact_channels(channels, name), handler, name=name)

    async def _subscribe(self, patterns: list[str], handler: Handler, *, name: str) -> Subscription:
        """One subscription for `patterns`, which never match a channel in common."""
        subscription = Subscription(handler, name=name, maxsize=self.queue_size, stats=self.stats)
        subscription.start()
        self._matching.clear()
        new_in_redis = []
        for pattern in patterns:
            first = pattern not in self._subscriptions
            self._subscriptions.setdefault(pattern, []).append(subscription)
            self._recent.setdefault(pattern, RecentIds(100_000))
            if first and self._served_locally(pattern):
                self._local_only.add(pattern)
            if first and pattern not in self._local_only:
                new_in_redis.append(pattern)
        if all(pattern in self._local_only for pattern in patterns):
            return subscription
        self._has_patterns.set()
        if new_in_redis and self._subscriber is not None:
            await self._subscribe_now(self._subscriber, new_in_redis)
        elif self._tasks and not self.connected:
            await self._wait_connected()
        return subscription

    async def _wait_connected(self, timeout: float = 5.0) -> None:
        """Started but not subscribed yet: wait (bounded) so what follows is not missed."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            log.warning("bus_not_connected_yet", waited_seconds=timeout)

    async def _subscribe_now(
        self, subscriber: SubscriberSocket, patterns: list[str], timeout: float = 5.0
    ) -> None:
        """Subscribe on the live connection; the reader task resolves the confirmations."""
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[None]] = []
        for pattern in patterns:
            waiters.append(loop.create_future())
            self._confirmations.setdefault(pattern, []).append(waiters[-1])
        exact = [pattern for pattern in patterns if is_exact(pattern)]
        globs = [pattern for pattern in patterns if not is_exact(pattern)]
        try:
            if exact:
                await subscriber.send("SUBSCRIBE", *exact)
            if globs:
                await subscriber.send("PSUBSCRIBE", *globs)
            await asyncio.wait_for(asyncio.gather(*waiters), timeout)
        except (*CONNECTION_ERRORS, ConnectionError) as error:
            # The reader reconnects and subscribes every pattern again, these included.
            log.warning("bus_subscribe_deferred", patterns=patterns[:5], error=str(error))

    # Reading

    async def _read_forever(self) -> None:
        backoff = Backoff(0.05, self._reconnect_cap)
        while True:
            try:
                await self._connect_subscriber()
                backoff.reset()
                await self._read_messages()
            except CONNECTION_ERRORS as error:
                self._on_connection_lost(error)
                await self._close_subscriber()
                await asyncio.sleep(backoff.next_delay())

    async def _connect_subscriber(self) -> None:
        await self._has_patterns.wait()
        subscriber = SubscriberSocket(self.redis)
        await subscriber.connect()
        # From here on, subscribe() sends its own (P)SUBSCRIBE; those added so far go now.
        self._subscriber = subscriber
        self._unconfirmed = set(self._redis_patterns())
        exact = [pattern for pattern in self._unconfirmed if is_exact(pattern)]
        patterns = [pattern for pattern in self._unconfirmed if not is_exact(pattern)]
        if exact:
            await subscriber.send("SUBSCRIBE", *exact)
        if patterns:
            await subscriber.send("PSUBSCRIBE", *patterns)

    def add_data_loss_listener(self, listener: DataLossListener) -> None:
        """`listener` runs when Redis comes back without the data it had (restarted with no
        persistence, or failed over to a replica that was behind): the journal entries nobody
        had read and every state key are gone, so owners must restate what they know."""
        self._data_loss_listeners.append(listener)

    async def _check_epoch(self) -> None:
        """Redis keeps an epoch marker; finding it gone or changed after a reconnect means
        Redis lost its data since this bus last looked."""
        key = self.channels.state_key("epoch")
        await self.redis.set(key, new_event_id(), nx=True)
        epoch: Any = await self.redis.get(key)
        known, self._epoch = self._epoch, epoch
        if known is None or epoch == known:
            return
        log.error("redis_data_lost", hint="Redis came back without its data; restating state")
        self.stats.data_losses += 1
        for listener in self._data_loss_listeners:
            task = asyncio.create_task(listener(), name="bus:data-loss-listener")
            self._listener_tasks.add(task)
            task.add_done_callback(self._listener_tasks.discard)

    async def _on_subscribed(self) -> None:
        """Every pattern is confirmed: notice lost data, catch up from the journal if we were
        away, then go live."""
        await self._check_epoch()
        if self._lost_at is not None:
            await self._replay_missed()
            log.info(
                "bus_reconnected",
                patterns=len(self._subscriptions),
                down_seconds=round(time.time() - self._lost_at, 3),
            )
            self._lost_at = None
            self.stats.reconnects += 1
        self._connected.set()

    async def _read_messages(self) -> None:
        """Dispatch messages as they come; a silent connection is probed with PING."""
        assert self._subscriber is not None
        probing = False
        while True:
            try:
                messages = await self._subscriber.read(SILENCE_BEFORE_PING_SECONDS)
            except TimeoutError:
                if probing:
                    raise ConnectionError("Redis did not answer PING on the subscriber") from None
                await self._subscriber.send("PING")
                probing = True
                continue
            probing = False
            self._last_message_at = time.time()
            for message in messages:
                await self._on_message(message)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.error("bus_subscriber_error_reply", error=str(message))
            return
        kind = message[0]
        if kind == b"pmessage":
            pattern = _name(message[1])
            if not self._is_echo(pattern, message[3]):
                await self._deliver(pattern, _name(message[2]), message[3])
        elif kind == b"message":
            channel = _name(message[1])
            if not self._is_echo(channel, message[2]):
                await self._deliver(channel, channel, message[2])
        elif kind in (b"psubscribe", b"subscribe"):
            pattern = message[1].decode()
            self._confirm(pattern)
            if pattern in self._unconfirmed:
                self._unconfirmed.discard(pattern)
                if not self._unconfirmed:
                    await self._on_subscribed()

    def _confirm(self, pattern: str) -> None:
        for waiter in self._confirmations.pop(pattern, []):
            if not waiter.done():
                waiter.set_result(None)

    def _on_connection_lost(self, error: BaseException) -> None:
        reason = str(error) or type(error).__name__
        if self._connected.is_set():
            self._lost_at = time.time()
            log.warning("bus_connection_lost", error=reason)
        else:  # never connected (yet): say why, e.g. a wrong password
            self._log_connect_failed(error=reason)
        self._connected.clear()
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectionError("bus connection lost"))
        self._confirmations.clear()

    async def _close_subscriber(self) -> None:
        if self._subscriber is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._subscriber.close()
            self._subscriber = None

    async def _replay_missed(self) -> None:
        """Deliver the journal's non-droppable events published since the connection was lost.

        Messages up to the last one received were delivered (Redis keeps order per connection);
        the margin covers the clock difference between this host and the Redis server.
        """
        assert self._lost_at is not None
        since = max(self._last_message_at, self._lost_at - 35.0) - self.replay_margin_seconds
        start: str | bytes = f"{int(since * 1000)}-0"
        replayed = 0
        while True:
            entries: Any = await self.redis.xrange(self.channels.journal, min=start, count=1000)
            for entry_id, fields in entries:
                replayed += await self._replay_entry(fields)
                start = b"(" + entry_id
            if len(entries) < 1000:
                break
        log.info("bus_replayed_from_journal", events=replayed)

    async def _replay_entry(self, fields: dict[bytes, bytes]) -> int:
        channel = fields.get(b"channel", b"").decode()
        delivered = 0
        for pattern in self._patterns_matching(channel):
            if pattern not in self._local_only:
                delivered += await self._deliver(
                    pattern, channel, fields.get(b"event", b""), replaying=True
                )
        return delivered

    async def _deliver(
        self, pattern: str, channel: str, payload: bytes, *, replaying: bool = False
    ) -> int:
        last_channel, last_payload, event = self._last_decoded
        if payload != last_payload or channel != last_channel:
            event = self._decode(channel, payload)
            self._last_decoded = (channel, payload, event)
        elif event is None:  # the same bad payload again: one rejection per delivery, as ever
            self._decode(channel, payload)
        if event is None or (replaying and event.droppable):
            return 0
        return await self._hand_over(pattern, channel, event)

    async def _hand_over(self, pattern: str, channel: str, event: Event) -> int:
        """Queue `event` for `pattern`'s subscriptions unless they had it already (by id)."""
        if not event.droppable and not self._recent[pattern].add(event.id):
            self.stats.duplicates[type(event).__name__] += 1
            return 0
        for subscription in self._subscriptions.get(pattern, ()):
            if not subscription.offer(channel, event):
                await subscription.put(channel, event)
        return 1

    def _decode(self, channel: str, payload: bytes) -> Event | None:
        try:
            event = self.codec.decode(payload)
        except EventRejected as rejected:
            self._reject(channel, rejected.reason, payload)
            return None
        expected = self.channels.for_event(event)
        if expected != channel:
            self._reject(channel, f"{type(event).__name__} belongs on {expected}", payload)
            return None
        return event

    def _reject(self, channel: str, reason: str, payload: bytes) -> None:
        rejected_total = self.stats.count_rejected(channel)
        self._log_rejected(
            channel=channel,
            reason=reason,
            payload=payload[:200].decode("utf-8", "replace"),
            rejected_total=rejected_total,
        )
        return None
