"""Bus throughput: events/s from `publish` to the subscriber's handler, beside raw redis-py.

`python -m bench.bus_throughput [--events N]`. Each figure is measured in this run on the same
Redis (REDIS_URL, else an embedded one):
- the bus, publisher and subscriber in one process (journal on, every event validated);
- the bus across two processes (a child process subscribes);
- the raw baseline: hand-written redis-py, PUBLISH pipelined in batches of 100, read with
  redis-py's own PubSub, no journal, no decoding;
- `redis-benchmark` PUBLISH with pipeline 16, when the binary is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from bench.storage_ingest import redis_server
from event_bus import Channels, Event, RedisEventBus
from market_data.model import Tick

PAYLOAD_TICK = Tick(
    symbol="AAPL",
    bid=189.51,
    ask=189.53,
    last=189.52,
    bid_size=300,
    ask_size=200,
    last_size=100,
    volume=1_234_567,
)


def ticks(count: int) -> list[Tick]:
    symbols = [f"S{index:03d}" for index in range(100)]
    return [
        Tick(symbol=symbols[n % 100], bid=100.0 + n % 7, ask=100.1 + n % 7, last=100.05)
        for n in range(count)
    ]


async def publish_all(bus: RedisEventBus, events: list[Tick]) -> None:
    for index, event in enumerate(events):
        await bus.publish(event)
        if index % 500 == 499:
            await asyncio.sleep(0)  # a producer's loop iteration: let the flusher send a batch


async def bus_one_process(url: str, count: int, *, one_bus: bool = False) -> float:
    """Two buses in one process (every event through Redis), or with `one_bus` a bus that
    delivers to its own subscriber (local delivery; Redis still gets every event)."""
    channels = Channels(f"bench-{uuid.uuid4().hex[:8]}")
    events = ticks(count)
    subscriber = RedisEventBus.from_url(
        url, channels=channels, queue_size=count, outbox_capacity=count
    )
    publisher = (
        subscriber
        if one_bus
        else RedisEventBus.from_url(url, channels=channels, outbox_capacity=count)
    )
    received = 0
    done = asyncio.Event()

    async def handle(event: Event) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    await subscriber.subscribe(channels.instrument("tick", "*"), handle)
    await subscriber.start()
    await publisher.start()
    started = time.perf_counter()
    await publish_all(publisher, events)
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    await publisher.drain()  # Redis has every event too before the next row starts
    await publisher.redis.delete(channels.journal)
    await publisher.stop()
    if not one_bus:
        await subscriber.stop()
    return count / elapsed


def _subscribe_in_child(url: str, prefix: str, count: int, ready: object, result: object) -> None:
    async def run() -> None:
        channels = Channels(prefix)
        bus = RedisEventBus.from_url(url, channels=channels, queue_size=count)
        received = 0
        done = asyncio.Event()
        first = 0.0

        async def handle(event: Event) -> None:
            nonlocal received, first
            received += 1
            if received == 1:
                first = time.time()
            if received == count:
                done.set()

        await bus.subscribe(channels.instrument("tick", "*"), handle)
        await bus.start()
        ready.set()  # type: ignore[attr-defined]
        await asyncio.wait_for(done.wait(), 120)
        result.value = time.time()  # type: ignore[attr-defined]
        await bus.stop()

    asyncio.run(run())


async def bus_two_processes(url: str, count: int) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    ready, finished_at = context.Event(), context.Value("d", 0.0)
    child = context.Process(
        target=_subscribe_in_child, args=(url, prefix, count, ready, finished_at)
    )
    child.start()
    await asyncio.to_thread(ready.wait, 30)
    publisher = RedisEventBus.from_url(url, channels=Channels(prefix), outbox_capacity=count)
    await publisher.start()
    events = ticks(count)  # made before the clock starts, as in the other rows
    started = time.time()
    await publish_all(publisher, events)
    await publisher.drain()
    await asyncio.to_thread(child.join, 120)
    await publisher.redis.delete(Channels(prefix).journal)
    await publisher.stop()
    return count / (finished_at.value - started)


async def raw_redis_py(url: str, count: int) -> float:
    """The hand-written baseline: pipelined PUBLISH, redis-py PubSub, bytes only."""
    channel = f"bench-raw-{uuid.uuid4().hex[:8]}"
    payload = b'{"type":"Tick","v":1,' + b"x" * 180 + b"}"
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1.0)
    received = 0

    async def read() -> None:
        nonlocal received
        while received < count:
            if await pubsub.get_message(timeout=1.0) is not None:
                received += 1

    reader = asyncio.create_task(read())
    started = time.perf_counter()
    for _ in range(count // 100):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(100):
                pipe.publish(channel, payload)
            await pipe.execute()
    await asyncio.wait_for(reader, 120)
    elapsed = time.perf_counter() - started
    await pubsub.aclose()
    await client.aclose()
    return count / elapsed


def redis_benchmark(url: str, count: int) -> float | None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    parts = urlsplit(url)
    output = subprocess.run(
        [
            binary,
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 6379),
            "-q",
            "-n",
            str(count),
            "-P",
            "16",
            "PUBLISH",
            "bench-redis-benchmark",
            "x" * 200,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # e.g. "PUBLISH bench-redis-benchmark xxx: 523560.22 requests per second, p50=..."
    return float(output.rsplit(":", 1)[-1].split("requests")[0].strip().split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    count = parser.parse_args().events
    print(f"bus throughput, {count:,} ticks (events/s from publish to handler)")
    with redis_server() as url:
        rows = [
            ("bus, one process (journal on, validated)", asyncio.run(bus_one_process(url, count))),
            (
                "  same bus: local delivery (+ Redis, journal)",
                asyncio.run(bus_one_process(url, count, one_bus=True)),
            ),
            ("bus, two processes", asyncio.run(bus_two_processes(url, count))),
            ("raw redis-py, pipeline 100, one process", asyncio.run(raw_redis_py(url, count))),
            ("redis-benchmark PUBLISH -P 16 (server limit)", redis_benchmark(url, count)),
        ]
    for name, rate in rows:
        shown = f"{rate:>12,.0f}" if rate is not None else "   (not installed)"
        print(f"  {name:<46}{shown}")


if __name__ == "__main__":
    main()
