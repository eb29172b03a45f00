"""Heartbeats: an event per beat, and a key that lives only while the module does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from event_bus import Channels, Event, RedisEventBus
from event_bus.health import HeartbeatPublisher, read_heartbeats
from event_bus.system import Heartbeat
from tests.helpers import eventually


@pytest.fixture
async def bus(redis_url: str, channels: Channels, clean_keys: None) -> AsyncIterator[RedisEventBus]:
    connected = RedisEventBus.from_url(redis_url, channels=channels)
    yield connected
    await connected.stop(timeout=1.0)


async def test_heartbeat_is_published_and_readable_with_the_module_status(
    bus: RedisEventBus, channels: Channels
) -> None:
    """A beating module shows up with its probe's details, as an event and under its key."""
    beats: list[Event] = []

    async def record(event: Event) -> None:
        beats.append(event)

    await bus.subscribe(channels.system("heartbeat"), record)
    await bus.start()
    publisher = HeartbeatPublisher(
        bus, "execution", interval=0.2, probe=lambda: {"ib": "connected"}
    )
    await publisher.start()
    await eventually(lambda: len(beats) >= 1)
    [live] = await read_heartbeats(bus.redis, channels.heartbeat_key("*"), bus.codec)
    assert isinstance(live, Heartbeat)
    assert (live.module, live.detail, live.interval_seconds) == (
        "execution",
        {"ib": "connected"},
        0.2,
    )
    await publisher.stop()
    assert await read_heartbeats(bus.redis, channels.heartbeat_key("*"), bus.codec) == []


async def test_a_module_that_dies_disappears_after_three_intervals(
    bus: RedisEventBus, channels: Channels
) -> None:
    """No clean stop (the process died): its key expires on its own."""
    await bus.start()
    publisher = HeartbeatPublisher(bus, "market_data", interval=0.1)
    await publisher.start()

    async def alive() -> bool:
        return bool(await read_heartbeats(bus.redis, channels.heartbeat_key("*"), bus.codec))

    await eventually(alive)
    assert publisher._task is not None
    publisher._task.cancel()  # as if the process were killed: nobody deletes the key

    async def gone() -> bool:
        return not await alive()

    await eventually(gone, timeout=2.0, message="heartbeat key expired")
