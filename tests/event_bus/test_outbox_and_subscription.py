"""The bus's two queues: the outbox (publisher side) and a subscription (handler side)."""

from __future__ import annotations

import asyncio

from event_bus.outbox import Outbox
from event_bus.stats import BusStats
from event_bus.subscription import Subscription
from tests.event_bus.events_for_tests import SampleFill, SampleQuote
from tests.helpers import eventually


async def test_outbox_keeps_publication_order_across_kinds() -> None:
    """Critical and droppable events come out in the order they were put in."""
    outbox = Outbox(10)
    for index, droppable in enumerate([False, True, True, False, True]):
        await outbox.put(f"c{index}", b"x", "T", droppable)
    batch = await outbox.take(10)
    assert [item.channel for item in batch] == ["c0", "c1", "c2", "c3", "c4"]


async def test_full_outbox_pushes_out_oldest_market_data_for_new_market_data() -> None:
    """When full, new market data evicts the oldest market data."""
    outbox = Outbox(2)
    await outbox.put("q1", b"1", "Quote", True)
    await outbox.put("q2", b"2", "Quote", True)
    dropped = await outbox.put("q3", b"3", "Quote", True)
    assert dropped is not None and dropped.channel == "q1"
    assert [item.channel for item in await outbox.take(10)] == ["q2", "q3"]


async def test_full_outbox_evicts_market_data_for_a_critical_event() -> None:
    """A fill never waits behind market data: the oldest quote makes room."""
    outbox = Outbox(2)
    await outbox.put("q1", b"1", "Quote", True)
    await outbox.put("f1", b"2", "Fill", False)
    dropped = await outbox.put("f2", b"3", "Fill", False)
    assert dropped is not None and dropped.channel == "q1"
    assert [item.channel for item in await outbox.take(10)] == ["f1", "f2"]


async def test_full_outbox_of_critical_events_makes_the_publisher_wait() -> None:
    """Critical events are never dropped: the publisher waits until a batch is sent."""
    outbox = Outbox(1)
    await outbox.put("f1", b"1", "Fill", False)
    refused = await outbox.put("q1", b"q", "Quote", True)
    assert refused is not None and refused.channel == "q1"
    waiting = asyncio.create_task(outbox.put("f2", b"2", "Fill", False))
    await asyncio.sleep(0)
    assert not waiting.done()
    batch = await outbox.take(10)
    outbox.sent(len(batch))
    assert await asyncio.wait_for(waiting, 1) is None
    assert [item.channel for item in await outbox.take(10)] == ["f2"]


async def test_market_data_lingers_for_company_and_a_critical_event_ends_the_wait() -> None:
    """With a linger, ticks put while the first waits go in the same batch; an order put
    during the wait sends everything at once instead of waiting out the linger."""
    outbox = Outbox(100)
    await outbox.put("tick:A", b"1", "Tick", True)
    taking = asyncio.create_task(outbox.take(10, linger=60))
    await asyncio.sleep(0)  # the take is now lingering
    await outbox.put("tick:B", b"2", "Tick", True)
    assert not taking.done()
    await outbox.put("order:A", b"3", "OrderUpdate", False)
    batch = await asyncio.wait_for(taking, 5)  # long before the linger's 60 s
    assert [item.payload for item in batch] == [b"1", b"2", b"3"]

    await outbox.put("fill:A", b"4", "Fill", False)
    batch = await asyncio.wait_for(outbox.take(10, linger=60), 1)  # critical: no linger at all
    assert [item.payload for item in batch] == [b"4"]


async def test_subscription_conflates_market_data_beyond_its_bound() -> None:
    """A full queue keeps only the newest quote per channel, and counts what it replaced."""
    stats = BusStats()
    release, started = asyncio.Event(), asyncio.Event()
    seen: list[float] = []

    async def slow(event: object) -> None:
        started.set()
        await release.wait()
        seen.append(event.price)  # type: ignore[attr-defined]

    subscription = Subscription(slow, name="slow", maxsize=1, stats=stats)
    subscription.start()
    await subscription.put("trading:tick:A", SampleQuote(symbol="A", price=1.0))
    await asyncio.wait_for(started.wait(), 2)
    for price in (2.0, 3.0, 4.0):
        await subscription.put("trading:tick:A", SampleQuote(symbol="A", price=price))
    await subscription.put("trading:tick:B", SampleQuote(symbol="B", price=9.0))
    release.set()
    await asyncio.wait_for(subscription.drain(), 2)
    await subscription.stop()
    # 1.0 was being handled; 2.0 queued; 3.0 replaced by 4.0 in the conflation map; B kept.
    assert seen == [1.0, 2.0, 4.0, 9.0]
    assert stats.conflated == {"SampleQuote": 1}


async def test_subscription_never_drops_critical_events() -> None:
    """Past the bound, a critical event makes the caller wait rather than be dropped."""
    stats = BusStats()
    seen: list[int] = []

    async def record(event: object) -> None:
        seen.append(event.sequence)  # type: ignore[attr-defined]

    subscription = Subscription(record, name="fills", maxsize=2, stats=stats)
    subscription.start()
    for sequence in range(50):
        await subscription.put(
            "trading:fill:A", SampleFill(symbol="A", quantity=1, sequence=sequence)
        )
    await asyncio.wait_for(subscription.drain(), 2)
    await subscription.stop()
    assert seen == list(range(50))
    assert stats.delivered == {"SampleFill": 50}


async def test_handler_error_is_counted_and_the_subscription_goes_on() -> None:
    """A handler that raises on one event still gets the next."""
    stats = BusStats()
    seen: list[int] = []

    async def flaky(event: object) -> None:
        if event.sequence == 1:  # type: ignore[attr-defined]
            raise RuntimeError("boom")
        seen.append(event.sequence)  # type: ignore[attr-defined]

    subscription = Subscription(flaky, name="flaky", maxsize=10, stats=stats)
    subscription.start()
    for sequence in range(3):
        await subscription.put(
            "trading:fill:A", SampleFill(symbol="A", quantity=1, sequence=sequence)
        )
    await eventually(lambda: len(seen) == 2, 2)
    await subscription.stop()
    assert seen == [0, 2]
    assert stats.handler_errors == {"flaky": 1}


async def test_in_memory_bus_counts_and_skips_bad_payloads_like_the_redis_bus() -> None:
    """Garbage and misplaced events are counted as rejected; the next good one is delivered."""
    from event_bus import InMemoryEventBus

    bus = InMemoryEventBus()
    seen: list[object] = []

    async def record(event: object) -> None:
        seen.append(event)

    await bus.subscribe("trading:*", record)
    await bus.deliver_raw("trading:fill:A", b"{not json")
    await bus.deliver_raw("trading:tick:A", b'{"type":"SampleFill","symbol":"A","quantity":1}')
    good = SampleFill(symbol="A", quantity=1)
    await bus.publish(good)
    await bus.drain()
    await bus.stop()
    assert seen == [good]
    assert bus.stats.rejected == {"trading:fill:A": 1, "trading:tick:A": 1}
