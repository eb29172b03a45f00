"""The Redis bus against a real Redis server: delivery, journal, bad input, restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from event_bus import Channels, Event, RedisEventBus
from event_bus.embedded import EmbeddedRedis
from event_bus.outbox import Outgoing
from event_bus.redis_bus import pack_command
from tests.event_bus.events_for_tests import SampleFill, SampleQuote
from tests.helpers import eventually

BusFactory = Callable[..., RedisEventBus]


@pytest.fixture
async def make_bus(channels: Channels, clean_keys: None) -> AsyncIterator[BusFactory]:
    """Builds buses on a URL (the shared server by default); stops them all afterwards."""
    buses: list[RedisEventBus] = []

    def factory(url: str, **options: object) -> RedisEventBus:
        options.setdefault("reconnect_cap_seconds", 0.3)
        bus = RedisEventBus.from_url(url, timeout=2.0, channels=channels, **options)
        buses.append(bus)
        return bus

    yield factory
    for bus in buses:
        await bus.stop(timeout=1.0)


class Recorder:
    """A handler that remembers what it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


async def test_published_event_reaches_subscriber_and_journal(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """One publish: the whole event at the subscriber, the same JSON in the journal stream."""
    bus = make_bus(redis_url)
    received = Recorder()
    await bus.subscribe(channels.instrument("fill", "*"), received)
    await bus.start()
    fill = SampleFill(symbol="AAPL", quantity=10)
    await bus.publish(fill)
    await eventually(lambda: received.events == [fill], message="fill delivered")

    journal = await bus.redis.xrange(channels.journal)
    assert len(journal) == 1
    fields = journal[0][1]
    assert fields[b"channel"] == b"%s:fill:AAPL" % channels.prefix.encode()
    payload = json.loads(fields[b"event"])
    assert payload == {
        "type": "SampleFill",
        "v": 1,
        "id": fill.id,
        "ts": fill.ts.isoformat().replace("+00:00", "Z"),
        "symbol": "AAPL",
        "quantity": 10.0,
        "sequence": 0,
    }


async def test_each_pattern_gets_its_events_and_overlapping_patterns_both_get_them(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """`fill:*` sees fills only; `*` sees everything; both see the same fill once each."""
    bus = make_bus(redis_url)
    fills, everything = Recorder(), Recorder()
    await bus.subscribe(channels.instrument("fill", "*"), fills)
    await bus.subscribe(channels.everything, everything)
    await bus.start()
    quote, fill = SampleQuote(symbol="MSFT", price=1.5), SampleFill(symbol="MSFT", quantity=1)
    await bus.publish(quote)
    await bus.publish(fill)
    await eventually(lambda: len(everything.events) == 2 and len(fills.events) == 1)
    assert fills.events == [fill]
    assert everything.events == [quote, fill]


async def test_malformed_payloads_are_counted_and_the_subscriber_goes_on(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """Garbage, unknown types, bad fields, wrong channels: rejected; the next event arrives."""
    bus = make_bus(redis_url)
    received = Recorder()
    await bus.subscribe(channels.everything, received)
    await bus.start()
    fill_channel = channels.instrument("fill", "AAPL")
    bad = [
        (fill_channel, b"not json"),
        (fill_channel, b'{"type":"NoSuchEvent"}'),
        (fill_channel, b'{"type":"SampleFill","symbol":"AAPL","quantity":"ten"}'),
        (
            channels.instrument("tick", "AAPL"),
            b'{"type":"SampleFill","symbol":"AAPL","quantity":1}',
        ),
        (fill_channel, b'{"type":"SampleFill","symbol":"MSFT","quantity":1}'),
        (channels.control, b"\xff\xfe"),
    ]
    with capture_logs() as logs:
        for channel, payload in bad:
            await bus.redis.publish(channel, payload)
        good = SampleFill(symbol="AAPL", quantity=2)
        await bus.publish(good)
        await eventually(lambda: received.events == [good], message="good event after bad ones")
    assert sum(bus.stats.rejected.values()) == len(bad)
    assert bus.stats.rejected[fill_channel] == 4
    # A few in a row, as an operator's typing mistakes come: each gets its line and reason.
    rejected = [(log["channel"], log["reason"]) for log in logs if log["event"] == "event_rejected"]
    assert [channel for channel, _ in rejected] == [channel for channel, _ in bad]
    assert "NoSuchEvent" in rejected[1][1] and "belongs on" in rejected[3][1]


async def test_slow_handler_does_not_stall_other_subscriptions(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """While one handler is stuck, another subscription keeps receiving."""
    bus = make_bus(redis_url)
    stuck = asyncio.Event()
    fast = Recorder()

    async def blocked(event: Event) -> None:
        await stuck.wait()

    await bus.subscribe(channels.instrument("fill", "*"), blocked, name="stuck")
    await bus.subscribe(channels.instrument("tick", "*"), fast, name="fast")
    await bus.start()
    await bus.publish(SampleFill(symbol="A", quantity=1))
    quotes = [SampleQuote(symbol="A", price=float(i)) for i in range(1, 21)]
    for quote in quotes:
        await bus.publish(quote)
    await eventually(lambda: fast.events == quotes, message="quotes despite a stuck handler")
    stuck.set()


async def test_publish_while_redis_is_down_is_delivered_in_order_after_restart(
    embedded_redis: EmbeddedRedis, make_bus: BusFactory
) -> None:
    """Redis killed and restarted empty: every fill queued meanwhile arrives once, in order."""
    publisher, subscriber = make_bus(embedded_redis.url), make_bus(embedded_redis.url)
    received = Recorder()
    await subscriber.subscribe(subscriber.channels.instrument("fill", "*"), received)
    await subscriber.start()
    await publisher.start()
    before = SampleFill(symbol="A", quantity=1, sequence=0)
    await publisher.publish(before)
    await eventually(lambda: received.events == [before])

    embedded_redis.kill()
    during = [SampleFill(symbol="A", quantity=1, sequence=n) for n in range(1, 51)]
    for fill in during:
        await publisher.publish(fill)  # queued in the outbox: returns at once
    await embedded_redis.start()

    await eventually(lambda: len(received.events) >= 51, timeout=15, message="fills after restart")
    await publisher.drain()
    await subscriber.drain()
    assert [e.sequence for e in received.events] == list(range(51))  # type: ignore[attr-defined]
    assert subscriber.stats.reconnects == 1


async def test_restart_with_persistence_replays_the_gap_without_duplicates(
    persistent_redis: EmbeddedRedis, make_bus: BusFactory
) -> None:
    """Redis restarted with its journal: the subscriber replays the gap but sees each fill once."""
    publisher, subscriber = make_bus(persistent_redis.url), make_bus(persistent_redis.url)
    received = Recorder()
    await subscriber.subscribe(subscriber.channels.instrument("fill", "*"), received)
    await subscriber.start()
    await publisher.start()
    first = [SampleFill(symbol="A", quantity=1, sequence=n) for n in range(20)]
    for fill in first:
        await publisher.publish(fill)
    await eventually(lambda: len(received.events) == 20)

    await persistent_redis.restart()
    later = [SampleFill(symbol="A", quantity=1, sequence=n) for n in range(20, 40)]
    for fill in later:
        await publisher.publish(fill)
    await eventually(
        lambda: subscriber.stats.reconnects == 1 and len(received.events) >= 40,
        timeout=15,
        message="reconnected with every fill",
    )
    await publisher.drain()
    await subscriber.drain()
    assert [e.sequence for e in received.events] == list(range(40))  # type: ignore[attr-defined]
    assert subscriber.stats.duplicates["SampleFill"] >= 1  # the replay did overlap, and was cut


async def test_market_data_is_dropped_but_fills_are_kept_when_the_outbox_overflows(
    embedded_redis: EmbeddedRedis, make_bus: BusFactory
) -> None:
    """With Redis away and a small outbox, quotes are dropped and counted; fills all arrive."""
    publisher = make_bus(embedded_redis.url, outbox_capacity=10)
    subscriber = make_bus(embedded_redis.url)
    fills = Recorder()
    await subscriber.subscribe(subscriber.channels.instrument("fill", "*"), fills)
    await subscriber.start()
    await publisher.start()
    embedded_redis.kill()
    sent = []
    for n in range(40):
        await publisher.publish(SampleQuote(symbol="A", price=float(n + 1)))
        if n % 8 == 0:
            fill = SampleFill(symbol="A", quantity=1, sequence=n)
            sent.append(fill)
            await publisher.publish(fill)
    assert publisher.stats.dropped["SampleQuote"] >= 30
    await embedded_redis.start()
    await eventually(lambda: fills.events == sent, timeout=15, message="every fill")


async def test_publisher_started_before_redis_delivers_once_it_answers(
    make_bus: BusFactory,
) -> None:
    """A daemon started while Redis is down queues its events and sends them when Redis comes."""
    server = EmbeddedRedis()
    publisher = make_bus(server.url)
    await publisher.start()
    fill = SampleFill(symbol="A", quantity=3)
    await publisher.publish(fill)
    await server.start()
    try:
        await asyncio.wait_for(publisher.drain(), 10)
        client = aioredis.Redis.from_url(server.url)
        entries = await client.xrange(publisher.channels.journal)
        await client.aclose()
        assert [json.loads(fields[b"event"])["id"] for _, fields in entries] == [fill.id]
    finally:
        await publisher.stop(timeout=1.0)
        await server.stop()


async def test_append_to_journal_records_without_publishing(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """A journal-only append reaches the stream but no subscriber."""
    bus = make_bus(redis_url)
    received = Recorder()
    await bus.subscribe(channels.everything, received)
    await bus.start()
    recorded, published = SampleFill(symbol="A", quantity=1), SampleFill(symbol="A", quantity=2)
    await bus.append_to_journal(recorded)
    await bus.publish(published)
    await eventually(lambda: received.events == [published])
    journal = await bus.redis.xrange(channels.journal)
    assert [json.loads(fields[b"event"])["id"] for _, fields in journal] == [
        recorded.id,
        published.id,
    ]


async def test_an_event_this_bus_journaled_is_not_appended_again(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """Execution appends every signal it decides: one this bus published or appended already is
    in the journal, and is not written twice; an event from elsewhere still is."""
    bus = make_bus(redis_url)
    await bus.start()
    published, appended = SampleFill(symbol="A", quantity=1), SampleFill(symbol="A", quantity=2)
    from_elsewhere = SampleFill(symbol="A", quantity=3)
    await bus.publish(published)
    await bus.append_to_journal(appended)
    for event in (published, appended, from_elsewhere):
        await bus.append_to_journal(event)
    assert bus.stats.journaled["SampleFill"] == 2  # appended and from_elsewhere, once each
    await eventually(lambda: len(bus._outbox) == 0)  # every write acknowledged by Redis
    journal = await bus.redis.xrange(channels.journal)
    assert [json.loads(fields[b"event"])["id"] for _, fields in journal] == [
        published.id,
        appended.id,
        from_elsewhere.id,
    ]


async def test_a_redis_that_lost_its_data_is_noticed_and_a_persistent_one_is_not(
    make_bus: BusFactory,
) -> None:
    """Data-loss listeners run after a restart that lost everything, not after one that kept it."""
    persistent, empty = EmbeddedRedis(persistent=True), EmbeddedRedis()
    await persistent.start()
    await empty.start()
    try:
        losses: dict[str, int] = {"persistent": 0, "empty": 0}
        for name, server in (("persistent", persistent), ("empty", empty)):
            bus = make_bus(server.url)

            async def noticed(name: str = name) -> None:
                losses[name] += 1

            bus.add_data_loss_listener(noticed)
            await bus.subscribe(bus.channels.everything, Recorder())
            await bus.start()
            await server.restart()
            await eventually(lambda bus=bus: bus.stats.reconnects == 1, timeout=10)
        await eventually(lambda: losses["empty"] == 1, timeout=5)
        assert losses == {"persistent": 0, "empty": 1}
    finally:
        await persistent.stop()
        await empty.stop()


async def test_an_exact_channel_is_subscribed_not_pattern_matched(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """A subscription without glob characters is a SUBSCRIBE (Redis finds it by hash, not by
    matching every publish against it); it gets its channel's events only."""
    bus = make_bus(redis_url)
    aapl, everything = Recorder(), Recorder()
    await bus.subscribe(channels.instrument("fill", "AAPL"), aapl)
    await bus.subscribe(channels.everything, everything)
    await bus.start()
    server = aioredis.Redis.from_url(redis_url)
    try:
        exact = await server.pubsub_channels(channels.instrument("fill", "*"))
        assert exact == [channels.instrument("fill", "AAPL").encode()]
        assert await server.pubsub_numpat() >= 1
    finally:
        await server.aclose()
    mine, other = SampleFill(symbol="AAPL", quantity=1), SampleFill(symbol="MSFT", quantity=2)
    await bus.publish(other)
    await bus.publish(mine)
    await eventually(lambda: len(everything.events) == 2)
    await bus.drain()
    assert aapl.events == [mine]
    assert everything.events == [other, mine]


async def test_one_subscription_serves_several_channels_in_arrival_order(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """subscribe_channels: one SUBSCRIBE for every channel, events of all of them to one handler
    in the order they came, other channels' events not at all; a pattern is refused."""
    publisher, bus = make_bus(redis_url), make_bus(redis_url)
    received = Recorder()
    wanted = [channels.instrument("fill", symbol) for symbol in ("AAPL", "MSFT", "AAPL")]
    subscription = await bus.subscribe_channels(wanted, received, name="fills")
    await bus.start()
    await publisher.start()
    server = aioredis.Redis.from_url(redis_url)
    try:
        subscribed = await server.pubsub_channels(channels.instrument("fill", "*"))
        assert sorted(subscribed) == sorted(name.encode() for name in set(wanted))
    finally:
        await server.aclose()
    fills = [
        SampleFill(symbol=s, quantity=n) for n, s in enumerate(["AAPL", "MSFT", "IBM", "MSFT"])
    ]
    for fill in fills:
        await publisher.publish(fill)
    await eventually(lambda: len(received.events) == 3, message="both channels' fills")
    assert received.events == [fills[0], fills[1], fills[3]]
    assert all(bus._subscriptions[name] == [subscription] for name in set(wanted))
    with pytest.raises(ValueError, match="exact channel names"):
        await bus.subscribe_channels([channels.instrument("fill", "*")], received, name="bad")


async def test_an_event_delivered_to_several_subscriptions_is_decoded_once(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """The copies Redis sends for each matching subscription share one decoded event; a bad
    payload is rejected for each subscription it reached."""
    bus = make_bus(redis_url)
    exact, pattern, everything = Recorder(), Recorder(), Recorder()
    await bus.subscribe(channels.instrument("fill", "AAPL"), exact)
    await bus.subscribe(channels.instrument("fill", "*"), pattern)
    await bus.subscribe(channels.everything, everything)
    await bus.start()
    await bus.redis.publish(channels.instrument("fill", "AAPL"), b"not json")
    fill = SampleFill(symbol="AAPL", quantity=3)
    await bus.redis.publish(channels.instrument("fill", "AAPL"), bus.codec.encode(fill))
    await eventually(lambda: len(exact.events) + len(pattern.events) + len(everything.events) == 3)
    assert exact.events[0] is pattern.events[0] is everything.events[0]
    assert exact.events[0] == fill
    assert bus.stats.rejected[channels.instrument("fill", "AAPL")] == 3


async def test_exact_channels_are_subscribed_again_and_replayed_after_a_restart(
    persistent_redis: EmbeddedRedis, make_bus: BusFactory
) -> None:
    """After Redis restarts, an exact-channel subscription is renewed and its gap replayed."""
    publisher, subscriber = make_bus(persistent_redis.url), make_bus(persistent_redis.url)
    received = Recorder()
    await subscriber.subscribe(subscriber.channels.instrument("fill", "A"), received)
    await subscriber.start()
    await publisher.start()
    await publisher.publish(SampleFill(symbol="A", quantity=1, sequence=0))
    await eventually(lambda: len(received.events) == 1)
    await persistent_redis.restart()
    for n in range(1, 11):
        await publisher.publish(SampleFill(symbol="A", quantity=1, sequence=n))
        await publisher.publish(SampleFill(symbol="B", quantity=1, sequence=n))
    await eventually(
        lambda: subscriber.stats.reconnects == 1 and len(received.events) >= 11,
        timeout=15,
        message="reconnected with every fill of A",
    )
    await publisher.drain()
    await subscriber.drain()
    assert [e.sequence for e in received.events] == list(range(11))  # type: ignore[attr-defined]
    assert {e.symbol for e in received.events} == {"A"}  # type: ignore[attr-defined]


async def test_own_events_are_delivered_locally_once_and_others_through_redis(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """An event published on this bus reaches its own subscriber without waiting for Redis,
    and the copy Redis sends back is skipped; another process's event arrives through Redis."""
    bus = make_bus(redis_url)
    fills, everything = Recorder(), Recorder()
    await bus.subscribe(channels.instrument("fill", "*"), fills)
    await bus.subscribe(channels.everything, everything)
    await bus.start()
    mine = SampleFill(symbol="AAPL", quantity=1)
    await bus.publish(mine)
    assert bus.stats.published["SampleFill"] == 1
    await bus.drain()  # the handlers ran; Redis's copies may not have come back yet
    assert fills.events == [mine] and everything.events == [mine]

    theirs = SampleFill(symbol="MSFT", quantity=2)
    await bus.redis.publish(channels.instrument("fill", "MSFT"), bus.codec.encode(theirs))
    await eventually(lambda: len(fills.events) == 2 and len(everything.events) == 2)
    await eventually(lambda: not bus._echoes, message="Redis's copies of our event came back")
    await bus.drain()
    assert fills.events == [mine, theirs]
    assert everything.events == [mine, theirs]
    assert bus.stats.duplicates["SampleFill"] == 0  # the copies were not even decoded


async def test_local_delivery_goes_on_while_redis_is_away(
    embedded_redis: EmbeddedRedis, make_bus: BusFactory
) -> None:
    """Modules in one process keep handing events on while Redis is down; the journal gets
    them when it is back, and the subscriber sees each once."""
    bus = make_bus(embedded_redis.url)
    received = Recorder()
    await bus.subscribe(bus.channels.instrument("fill", "*"), received)
    await bus.start()
    embedded_redis.kill()
    fills = [SampleFill(symbol="A", quantity=1, sequence=n) for n in range(5)]
    for fill in fills:
        await bus.publish(fill)
    await eventually(lambda: received.events == fills, message="delivered with Redis down")
    await embedded_redis.start()
    await eventually(lambda: bus.connected and len(bus._outbox) == 0, timeout=15)

    async def journaled() -> bool:
        return await bus.redis.xlen(bus.channels.journal) == 5

    await eventually(journaled, message="the journal has the 5 fills")
    await bus.drain()
    assert received.events == fills


async def test_without_local_delivery_every_event_goes_through_redis(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """local_delivery=False: nothing is handed over before Redis sends it back."""
    bus = make_bus(redis_url, local_delivery=False)
    received = Recorder()
    await bus.subscribe(channels.instrument("fill", "*"), received)
    await bus.start()
    fill = SampleFill(symbol="AAPL", quantity=1)
    await bus.publish(fill)
    assert received.events == [] and not bus._echoes
    await eventually(lambda: received.events == [fill])


async def test_channels_published_alone_are_not_subscribed_in_redis(
    redis_url: str, channels: Channels, make_bus: BusFactory
) -> None:
    """After publishes_alone(quotes), quote subscriptions are served locally only: Redis has
    no such subscription and sends nothing back; other kinds still go through Redis."""
    bus = make_bus(redis_url)
    bus.publishes_alone(channels.instrument("tick", "*"))
    quotes, one_quote, some_quotes, fills = Recorder(), Recorder(), Recorder(), Recorder()
    await bus.subscribe(channels.instrument("tick", "*"), quotes)
    await bus.subscribe(channels.instrument("tick", "AAPL"), one_quote)
    some = [channels.instrument("tick", symbol) for symbol in ("AAPL", "MSFT")]
    await bus.subscribe_channels(some, some_quotes, name="some quotes")
    await bus.subscribe(channels.instrument("fill", "*"), fills)
    await bus.start()
    server = aioredis.Redis.from_url(redis_url)
    try:
        assert await server.pubsub_channels(f"{channels.prefix}:*") == []
        patterns = await server.execute_command("PUBSUB", "NUMPAT")
        assert patterns >= 1  # fill:*
    finally:
        await server.aclose()
    quote = SampleQuote(symbol="AAPL", price=1.5)
    await bus.publish(quote)
    await bus.drain()
    assert quotes.events == [quote] and one_quote.events == [quote]
    assert some_quotes.events == [quote]
    assert not bus._echoes  # no copy will come back for the quote subscriptions
    theirs = SampleFill(symbol="MSFT", quantity=2)
    await bus.redis.publish(channels.instrument("fill", "MSFT"), bus.codec.encode(theirs))
    await eventually(lambda: fills.events == [theirs])


def test_a_batch_is_packed_as_pack_command_packs_its_arguments() -> None:
    """The flusher's one-pass packing writes the same bytes as the general packer."""
    bus = RedisEventBus(aioredis.Redis(), channels=Channels("pack"), journal_maxlen=1000)
    batch = [
        Outgoing(1, "pack:tick:AAPL", b'{"x":1}', "Tick", True),
        Outgoing(2, "pack:signal:AAPL", b"\r\n$3\r\n", "TradeSignal", False, publish=False),
        Outgoing(3, "pack:tick:AAPL", b"", "Tick", True),
    ]
    expected = [b"EVALSHA", bus._script_sha, b"1", b"pack:journal", b"1000"]
    for item in batch:
        expected += (b"1" if item.publish else b"0", item.channel.encode(), item.payload)
    for _ in range(2):  # the second time with each channel's bulk string remembered
        assert bus._pack_batch(batch) == pack_command(expected)
    assert bus._pack_batch([]) == pack_command(expected[:5])
