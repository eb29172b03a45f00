"""Optional Prometheus metrics of one process: read at scrape time, next to nothing per event.

Served over HTTP at `/metrics` when `METRICS_PORT` is set. Bus counters and each module's status
are read from `BusStats` and the modules' `status()` only when Prometheus scrapes; per event
there is one histogram observation (publish-to-handle latency) and, in the process that runs
execution, one counter increment per order update.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from event_bus.events import Event
from event_bus.redis_bus import RedisEventBus

log = structlog.get_logger()

# Module name -> its `status()`: short strings, e.g. {"ib": "ready", "halted": "no"}.
StatusProbes = Callable[[], Mapping[str, Callable[[], Mapping[str, str]]]]

# What an `ib` status value means for `trading_ib_connected`.
IB_UP = frozenset({"connected", "ready"})

# Publish-to-handle latency buckets, in seconds: Redis on the same host is well under 1 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class BusCollector(Collector):
    """`BusStats` and the modules' status, as Prometheus metrics, at scrape time."""

    def __init__(self, bus: RedisEventBus, probes: StatusProbes) -> None:
        self.bus = bus
        self.probes = probes

    def collect(self) -> Iterator[Metric]:
        stats = self.bus.stats
        counters = (
            ("published", "Events published, by event type", stats.published),
            ("delivered", "Events handled by a subscription, by event type", stats.delivered),
            ("dropped", "Market data dropped from a full outbox, by event type", stats.dropped),
            ("conflated", "Events replaced by a newer one in a full queue", stats.conflated),
            ("duplicates", "Events received twice and handled once", stats.duplicates),
        )
        for name, text, counts in counters:
            yield _counter(f"trading_events_{name}", text, "type", counts)
        yield _counter(
            "trading_events_rejected",
            "Malformed payloads or events on the wrong channel, by channel kind",
            "kind",
            _by_kind(stats.rejected, self.bus.channels.prefix),
        )
        yield _counter(
            "trading_handler_errors",
            "Handler failures, by subscription",
            "subscription",
            stats.handler_errors,
        )
        reconnects = CounterMetricFamily("trading_bus_reconnects", "Reconnections to Redis")
        reconnects.add_metric([], float(stats.reconnects))
        yield reconnects
        connected = GaugeMetricFamily("trading_bus_connected", "1 while subscribed to Redis")
        connected.add_metric([], 1.0 if self.bus.connected else 0.0)
        yield connected
        yield from self._module_metrics()

    def _module_metrics(self) -> Iterator[Metric]:
        ib = GaugeMetricFamily(
            "trading_ib_connected", "1 while the module's IB link is up", labels=["module"]
        )
        halted = GaugeMetricFamily("trading_halted", "1 while the kill switch is on (execution)")
        unread = GaugeMetricFamily(
            "trading_ib_unread_bytes",
            "bytes from TWS waiting unread in the kernel: grows while the module falls behind",
            labels=["module"],
        )
        conflated = CounterMetricFamily(
            "trading_ib_reads_conflated",
            "reads of a backlog from TWS whose quotes became one Tick per symbol (latest wins)",
            labels=["module"],
        )
        for module, probe in self.probes().items():
            try:
                status = probe()
            except Exception as error:  # a scrape must not fail for one module's probe
                log.warning("metrics_probe_failed", module=module, error=str(error))
                continue
            if "ib" in status:
                ib.add_metric([module], 1.0 if status["ib"] in IB_UP else 0.0)
            if "halted" in status:
                halted.add_metric([], 1.0 if status["halted"] == "yes" else 0.0)
            if status.get("ib_unread_bytes", "unknown").isdigit():
                unread.add_metric([module], float(status["ib_unread_bytes"]))
            if status.get("ib_reads_conflated", "").isdigit():
                conflated.add_metric([module], float(status["ib_reads_conflated"]))
        yield ib
        yield halted
        yield unread
        yield conflated


class _Collect(Collector):
    def __init__(self, collect: Callable[[], Metric]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield self._collect()


def _counter(name: str, text: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, text, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], float(count))
    return family


def _by_kind(by_channel: Mapping[str, int], prefix: str) -> dict[str, int]:
    """`trading:signal:AAPL` -> `signal`: bounded labels whatever arrives on the wire."""
    kinds: dict[str, int] = {}
    for channel, count in by_channel.items():
        kind = channel.removeprefix(prefix + ":").split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + count
    return kinds


class LatencyHistogram:
    """Publish-to-handle latency: `now - event.ts` when a subscription has handled an event.

    Kept as plain bucket counts per event type and exposed at scrape time: about half the
    cost of prometheus_client's `Histogram.observe` (its lock and per-bucket loop), on a path
    every delivered event takes.
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        # event type name -> [count per bucket ..., count above the last, sum of seconds]
        self._rows: dict[str, list[float]] = {}

    def __call__(self, event: Event) -> None:
        seconds = time.time() - event.ts.timestamp()
        row = self._rows.get(type(event).__name__)
        if row is None:
            row = self._rows[type(event).__name__] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, seconds)] += 1
        row[-1] += seconds

    def collect(self) -> Metric:
        family = HistogramMetricFamily(
            "trading_event_latency_seconds",
            "From an event's timestamp to the end of its handling, by event type",
            labels=["type"],
        )
        for name, row in sorted(self._rows.items()):
            counts = row[:-1].copy()  # a snapshot: the event loop goes on counting meanwhile
            cumulative = list(accumulate(counts))
            bounds = [*map(str, self.buckets), "+Inf"]
            family.add_metric([name], list(zip(bounds, cumulative, strict=True)), row[-1])
        return family


class DaemonMetrics:
    """The `/metrics` endpoint of one daemon process (`trading_*` metrics).

    With `count_orders` (the process runs execution) it subscribes to `trading:order:*` and
    counts order updates by status.
    """

    def __init__(
        self,
        bus: RedisEventBus,
        probes: StatusProbes,
        *,
        host: str,
        port: int,
        count_orders: bool = False,
    ) -> None:
        self.bus = bus
        self.host = host
        self.port = port
        self.count_orders = count_orders
        self.registry = CollectorRegistry()
        self.registry.register(BusCollector(bus, probes))
        self.orders = Counter(
            "trading_order_updates",
            "Order updates published by execution, by order status",
            ["status"],
            registry=self.registry,
        )
        self.latency = LatencyHistogram()
        self.registry.register(_Collect(self.latency.collect))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Serve `/metrics` (in a thread of prometheus_client's) and start observing."""
        self.bus.stats.on_handled = self.latency
        if self.count_orders:
            await self.bus.subscribe(
                self.bus.channels.instrument("order", "*"), self._on_order, name="metrics:orders"
            )
        self._server, self._thread = start_http_server(
            self.port, addr=self.host, registry=self.registry
        )
        self.port = self._server.server_port
        log.info("metrics_serving", url=f"http://{self.host}:{self.port}/metrics")

    async def _on_order(self, event: Event) -> None:
        self.orders.labels(getattr(event, "status", "unknown")).inc()

    def stop(self) -> None:
        if self.bus.stats.on_handled is self.latency:
            self.bus.stats.on_handled = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
