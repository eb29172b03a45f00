"""The event bus: typed events, one codec, Redis pub/sub transport and the journal stream."""

from event_bus.channels import Channels
from event_bus.codec import Codec, EventRegistry, EventRejected, register, registry
from event_bus.events import Event, UtcDatetime, new_event_id, utc_now
from event_bus.journal import JournalEntry, JournalReader
from event_bus.memory import InMemoryEventBus
from event_bus.redis_bus import CONNECTION_ERRORS, RedisEventBus, connect_redis
from event_bus.subscription import Handler, Subscription

__all__ = [
    "CONNECTION_ERRORS",
    "Channels",
    "Codec",
    "Event",
    "EventRegistry",
    "EventRejected",
    "Handler",
    "InMemoryEventBus",
    "JournalEntry",
    "JournalReader",
    "RedisEventBus",
    "Subscription",
    "UtcDatetime",
    "connect_redis",
    "new_event_id",
    "register",
    "registry",
    "utc_now",
]
