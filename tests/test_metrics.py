"""Prometheus metrics: the endpoint's names and values after known events, and the wiring."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

import event_bus.system  # noqa: F401  (registers the system events)
from event_bus import Channels, Event, RedisEventBus
from event_bus.embedded import free_port
from event_bus.metrics import LATENCY_BUCKETS, DaemonMetrics
from execution.model import OrderUpdate
from market_data.model import Tick
from tests.helpers import eventually
from tests.test_cli import MAIN, _environment

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape_sync(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> Samples:
    return await asyncio.to_thread(_scrape_sync, port)


def _family(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def _order(status: str) -> OrderUpdate:
    return OrderUpdate(
        symbol="AAPL",
        signal_id="s-1",
        status=status,  # type: ignore[arg-type]
        action="BUY",
        quantity=10,
        order_type="MKT",
    )


async def test_the_endpoint_reports_bus_counters_ib_links_orders_and_latency(
    redis_url: str, channels: Channels, clean_keys: None
) -> None:
    """After known events: published, delivered, rejected, IB up/down, unread bytes and reads
    conflated, orders and latency."""
    bus = RedisEventBus.from_url(redis_url, channels=channels)
    handled: list[Event] = []

    async def keep(event: Event) -> None:
        handled.append(event)

    await bus.subscribe(channels.instrument("tick", "*"), keep)
    probes = {
        "execution": lambda: {"ib": "ready", "halted": "yes", "positions": "flat"},
        "market_data": lambda: {
            "ib": "down",
            "instruments": "3",
            "ib_unread_bytes": "4096",
            "ib_reads_conflated": "17",
        },
        "other_feed": lambda: {"ib": "down", "ib_unread_bytes": "unknown"},
        "storage": lambda: {"events_stored": "0"},
    }
    metrics = DaemonMetrics(bus, lambda: probes, host="127.0.0.1", port=0, count_orders=True)
    await bus.start()
    await metrics.start()
    try:
        for event in (Tick(symbol="AAPL", bid=1.0), Tick(symbol="MSFT", bid=2.0)):
            await bus.publish(event)
        for status in ("submitted", "filled"):
            await bus.publish(_order(status))
        await eventually(
            lambda: len(handled) == 2 and sum(bus.stats.delivered.values()) == 4,
            message="ticks and orders handled",
        )
        samples = await scrape(metrics.port)
    finally:
        metrics.stop()
        await bus.stop()
    assert _family(samples, "trading_events_published_total") == {
        (("type", "OrderUpdate"),): 2.0,
        (("type", "Tick"),): 2.0,
    }
    assert _family(samples, "trading_events_delivered_total") == {
        (("type", "OrderUpdate"),): 2.0,
        (("type", "Tick"),): 2.0,
    }
    assert _family(samples, "trading_events_rejected_total") == {}
    assert _family(samples, "trading_ib_connected") == {
        (("module", "execution"),): 1.0,
        (("module", "market_data"),): 0.0,
        (("module", "other_feed"),): 0.0,
    }
    assert _family(samples, "trading_ib_unread_bytes") == {(("module", "market_data"),): 4096.0}
    assert _family(samples, "trading_ib_reads_conflated_total") == {
        (("module", "market_data"),): 17.0
    }
    assert _family(samples, "trading_halted") == {(): 1.0}
    assert _family(samples, "trading_bus_connected") == {(): 1.0}
    assert _family(samples, "trading_order_updates_total") == {
        (("status", "filled"),): 1.0,
        (("status", "submitted"),): 1.0,
    }
    latency = _family(samples, "trading_event_latency_seconds_count")
    assert latency == {(("type", "OrderUpdate"),): 2.0, (("type", "Tick"),): 2.0}
    buckets = _family(samples, "trading_event_latency_seconds_bucket")
    assert len(buckets) == 2 * (len(LATENCY_BUCKETS) + 1)
    assert buckets[(("le", "+Inf"), ("type", "Tick"))] == 2.0


async def test_rejected_payloads_are_counted_by_channel_kind(
    redis_url: str, channels: Channels, clean_keys: None
) -> None:
    """A malformed signal and a malformed control command: rejected, by kind."""
    bus = RedisEventBus.from_url(redis_url, channels=channels)

    async def ignore(event: Event) -> None:
        return None

    await bus.subscribe(channels.instrument("signal", "*"), ignore)
    await bus.subscribe(channels.control, ignore)
    metrics = DaemonMetrics(bus, dict, host="127.0.0.1", port=0)
    await bus.start()
    await metrics.start()
    client = aioredis.Redis.from_url(redis_url)
    try:
        for channel in (channels.instrument("signal", "AAPL"), channels.control, channels.control):
            await client.publish(channel, b"{not json")
        await eventually(lambda: sum(bus.stats.rejected.values()) == 3, message="3 rejected")
        samples = await scrape(metrics.port)
    finally:
        await client.aclose()
        metrics.stop()
        await bus.stop()
    assert _family(samples, "trading_events_rejected_total") == {
        (("kind", "control"),): 2.0,
        (("kind", "signal"),): 1.0,
    }


async def test_run_serves_metrics_at_metrics_port_and_closes_it_on_stop(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """`run` with METRICS_PORT serves /metrics while it runs; SIGTERM stops it and the port."""
    port = free_port()
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "run",
        "--modules",
        "storage",
        cwd=tmp_path,
        env=_environment(
            REDIS_URL=redis_url,
            CHANNEL_PREFIX=channels.prefix,
            DATABASE_URL=f"sqlite:///{tmp_path / 'trading.db'}",
            METRICS_PORT=str(port),
            LOG_LEVEL="WARNING",
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    published: dict[tuple[tuple[str, str], ...], float] = {}
    try:

        async def heartbeat_counted() -> bool:
            try:
                samples = await scrape(port)
            except OSError:
                return False
            published.update(_family(samples, "trading_events_published_total"))
            return bool(published)

        await eventually(heartbeat_counted, timeout=15, interval=0.2, message="a scrape")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(daemon.communicate(), 20)
    assert (daemon.returncode, list(published)) == (0, [(("type", "Heartbeat"),)]), stderr
    try:
        await scrape(port)
        closed = False
    except OSError:
        closed = True
    assert closed
