"""An in-process event bus with the Redis bus's interface, for the other packages' unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from event_bus.channels import Channels, exact_channels
from event_bus.codec import Codec, EventRejected
from event_bus.events import Event
from event_bus.stats import REJECTIONS_LOGGED_AT_ONCE, BusStats, ThrottledLog
from event_bus.subscription import Handler, Subscription


class InMemoryEventBus:
    """Delivers through the real codec (so what cannot cross Redis fails here too) to
    subscriptions matched with Redis glob patterns. `published` and `journal` keep every event.
    """

    def __init__(
        self,
        *,
        channels: Channels | None = None,
        codec: Codec | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.channels = channels or Channels()
        self.codec = codec or Codec()
        self.stats = BusStats()
        self.queue_size = queue_size
        self.published: list[Event] = []
        self.journal: list[tuple[str, bytes]] = []  # (channel, payload), as in the Redis stream
        self._subscriptions: list[Subscription] = []
        self._routes: list[tuple[str, Subscription]] = []  # (pattern, its subscription)
        self._log_rejected = ThrottledLog("event_rejected", burst=REJECTIONS_LOGGED_AT_ONCE)

    async def start(self) -> None:
        for subscription in self._subscriptions:
            subscription.start()

    async def stop(self) -> None:
        await self.drain()
        for subscription in self._subscriptions:
            await subscription.stop()

    @property
    def connected(self) -> bool:
        return True

    async def publish(self, event: Event) -> None:
        channel = self.channels.for_event(event)
        payload = self.codec.encode(event)
        self.stats.published[type(event).__name__] += 1
        self.published.append(event)
        self.journal.append((channel, payload))
        await self.deliver_raw(channel, payload)

    async def append_to_journal(self, event: Event) -> None:
        """As the Redis bus: an event already in this bus's journal is not written twice."""
        encoded = self.codec.encode(event)
        if any(payload == encoded for _, payload in self.journal):
            return
        self.stats.journaled[type(event).__name__] += 1
        self.journal.append((self.channels.for_event(event), encoded))

    async def deliver_raw(self, channel: str, payload: bytes) -> None:
        """Deliver a payload as if it arrived from Redis on `channel`; a bad one is counted and
        skipped, as the Redis bus does."""
        try:
            event = self.codec.decode(payload)
            expected = self.channels.for_event(event)
            if expected != channel:
                raise EventRejected(f"{type(event).__name__} belongs on {expected}")
        except EventRejected as rejected:
            self.stats.count_rejected(channel)
            self._log_rejected(channel=channel, reason=rejected.reason)
            return
        for pattern, subscription in self._routes:
            if fnmatchcase(channel, pattern):
                await subscription.put(channel, event)

    async def subscribe(
        self, pattern: str, handler: Handler, *, name: str | None = None
    ) -> Subscription:
        return self._add([pattern], handler, name=name or pattern)

    async def subscribe_channels(
        self, channels: Iterable[str], handler: Handler, *, name: str
    ) -> Subscription:
        """As the Redis bus: one subscription for several exact channels."""
        return self._add(exact_channels(channels, name), handler, name=name)

    def _add(self, patterns: list[str], handler: Handler, *, name: str) -> Subscription:
        subscription = Subscription(handler, name=name, maxsize=self.queue_size, stats=self.stats)
        subscription.start()
        self._subscriptions.append(subscription)
        self._routes.extend((pattern, subscription) for pattern in patterns)
        return subscription

    async def drain(self) -> None:
        """Run until idle: every queued event handled, including events handlers published."""
        while any(s.backlog for s in self._subscriptions) or not all(
            s.idle for s in self._subscriptions
        ):
            for subscription in self._subscriptions:
                await subscription.drain()
