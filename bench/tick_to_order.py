"""Tick-to-order latency through the whole daemon, beside the two-hop Redis round trip.

`python -m bench.tick_to_order [--rates 1000,20000] [--seconds S] [--fraction F] [--profile]`.

What runs where:
- the IB Gateway simulator (`ibsim`) runs in a **child process** (like the real Gateway, it has
  its own process and, with two CPUs or more, its own CPU: the last one, the daemon the others;
  `--no-pin` leaves both to the scheduler); it streams `--symbols` synthetic symbols
  (SYM0000...) and, for every quote it writes to the socket, records (symbol, last,
  `perf_counter_ns`) just before the write; for every placeOrder it records
  `received_perf_ns`, when the read that completed it came off the socket (both ends at the
  wire: the simulator's own encoding and parsing are not the daemon's latency).
  `perf_counter_ns` is CLOCK_MONOTONIC, one clock for every process of the machine, so the two
  processes' timestamps compare directly;
- the daemon runs in **this process**, one `main.Daemon` with the market_data, strategy and
  execution modules on one bus, against the real Redis (REDIS_URL, else an embedded one), with
  a channel prefix of its own. Storage does not run (it is off the tick -> order path and reads
  the journal at its own pace; run it as a separate process in production).

The strategy is `EveryNthTick`, defined and registered here only: every symbol's ticks reach it,
and it signals on every Nth tick of the first `--traded` symbols (default 10; phases staggered
so signals spread over the simulator's steps), alternating BUY and SELL of 1 share so positions
stay flat. N is chosen so signals are `--fraction` of all ticks (default 1%: 10 orders/s at
1,000 ticks/s), but at most 20 orders/s: IB accepts about 50 API messages/s per client and
ib_async queues what goes beyond 45/s, so 200 orders/s (1% of 20,000 ticks/s) would measure
that queue (seconds) rather than the daemon. Execution's limits are raised so no
risk rule rejects the flow: max_orders_per_second 1,000,000, max_orders_per_minute 10,000,000,
max_order_notional / max_gross_exposure / daily_loss_limit 1e12, max_position_per_symbol 1e9;
ib_async's request throttle (`ib.client.MaxRequests`, 45/s) is switched off for market data so
hundreds of subscriptions do not take minutes. The journal is capped at 200,000 entries.

Each tick -> order latency is `received_perf_ns` of the order minus the send time of the tick
that caused it (the latest tick sent of that symbol with the signal's `last`, sent before the
strategy saw it). Also reported: the simulator's achieved tick rate and CPU (can it produce the
rate?), ticks the strategy saw, the bus's dropped/conflated counters, and the backlog (events
queued in the daemon's subscriptions and outbox, bytes waiting in the simulator's socket
buffers, bytes the kernel holds that the daemon has not read from its IB socket) sampled every
second, first vs last third of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import cProfile
import gc
import io
import logging
import multiprocessing
import os
import pstats
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, ClassVar

import psutil
import redis.asyncio as aioredis
import structlog
from pydantic import SecretStr

from bench.storage_ingest import redis_server
from broker import framing
from broker.framing import ReadStats
from config import Settings, load_settings
from event_bus import Channels, Event, RedisEventBus
from ibsim import SimConfig, Simulator
from main import Daemon, build_bus, build_module, freeze_once_subscribed, freeze_start_up
from market_data.model import Bar, Tick
from strategy.base import Strategy, StrategyParams
from strategy.model import TradeSignal
from strategy.runner import StrategyRunner

# The simulator, in its own process


def _simulate(config: SimConfig, conn: Any, record_ticks: bool, cpu: int | None = None) -> None:
    """Child process: run the simulator; answer "sample" and "stop" from the parent."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def run() -> None:
        ticks: dict[str, list[tuple[int, float]]] = defaultdict(list)
        sim = Simulator(config)
        if record_ticks:

            def listener(symbol: str, last: float, sent_ns: int) -> None:
                ticks[symbol].append((sent_ns, last))

            sim.tick_listener = listener
        await sim.start()
        conn.send(sim.port)
        me = psutil.Process()
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command == "sample":
                buffered = sum(
                    s._transport.get_write_buffer_size()
                    for s in sim.sessions
                    if s._transport is not None
                )
                cpu = me.cpu_times()
                conn.send((sim.ticks_sent, time.perf_counter_ns(), buffered, cpu.user + cpu.system))
            elif command == "collect":
                orders = [(o.order_ref, o.received_perf_ns) for o in sim.orders_received]
                conn.send((dict(ticks), orders))
            elif command == "stop":
                break
        await sim.stop()

    asyncio.run(run())


class SimProcess:
    """The simulator in a child process: start, sample its counters, stop and collect."""

    def __init__(self, config: SimConfig, *, record_ticks: bool, cpu: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_simulate, args=(config, child_conn, record_ticks, cpu), daemon=True
        )
        self.process.start()
        self.port: int = self.conn.recv()

    async def sample(self) -> tuple[int, int, int, float]:
        """(ticks sent, perf_counter_ns, bytes in its socket buffers, CPU seconds used)."""
        self.conn.send("sample")
        return await asyncio.to_thread(self.conn.recv)

    async def collect(self) -> tuple[dict[str, list[tuple[int, float]]], list[tuple[str, int]]]:
        """(symbol -> [(sent ns, last)], [(orderRef, received ns)]) so far."""
        self.conn.send("collect")
        return await asyncio.to_thread(self.conn.recv)

    async def stop(self) -> None:
        self.conn.send("stop")
        await asyncio.to_thread(self.process.join, 30)


# The benchmark's own strategy (not in the product's registry)


class EveryNthParams(StrategyParams):
    every: int = 10  # a signal per this many ticks of a traded symbol
    traded: int = 10  # the first this many symbols are traded; the others only stream


class EveryNthTick(Strategy):
    """Signals on every Nth tick of each traded symbol, alternating BUY and SELL of 1 share.

    Every symbol's ticks reach it; only the first `traded` symbols trade. (The simulator
    answers each fill with a portfolio line for every symbol ever held, so trading all of
    1,000 symbols would measure that flood rather than the daemon.)
    """

    name: ClassVar[str] = "bench_every_nth_tick"
    Params: ClassVar[type[StrategyParams]] = EveryNthParams
    wants_ticks: ClassVar[bool] = True

    def __init__(self, params: EveryNthParams, *, symbols: tuple[str, ...], run: str) -> None:
        super().__init__(params, quantity=1.0, signal_ttl=timedelta(seconds=30))
        self.every = params.every
        self.run = run
        # a different phase per symbol, so each simulator step carries ~symbols/every signals
        self.traded = set(symbols[: params.traded])
        self.counts = {symbol: index % self.every for index, symbol in enumerate(symbols)}
        self.sent: dict[str, int] = defaultdict(int)
        self.ticks_seen = 0
        self.symbols_seen: set[str] = set()
        self.recording = False
        self.signals: dict[str, tuple[str, float, int]] = {}  # id -> (symbol, last, seen_ns)

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        return []

    def on_tick(self, tick: Tick) -> list[TradeSignal]:
        self.ticks_seen += 1
        symbol = tick.symbol
        self.symbols_seen.add(symbol)
        count = self.counts[symbol] = self.counts.get(symbol, 0) + 1
        if count % self.every or tick.last is None or symbol not in self.traded:
            return []
        seen_ns = time.perf_counter_ns()
        number = self.sent[symbol] = self.sent[symbol] + 1
        signal = TradeSignal(
            id=f"{self.run}-{symbol}-{number}",
            symbol=symbol,
            action="BUY" if number % 2 else "SELL",
            quantity=self.quantity,
            strategy=self.name,
            expires_at=tick.ts + self.signal_ttl,
            reason="bench",
        )
        if self.recording:
            self.signals[signal.id] = (symbol, tick.last, seen_ns)
        return [signal]

    def on_fill(self, fill: Any) -> None:
        return None  # alternating sides keep positions flat; nothing to track


# The daemon, in this process


def bench_settings(redis_url: str, prefix: str, ib_port: int, symbols: tuple[str, ...]) -> Settings:
    """The daemon's settings for a benchmark run (see the module docstring for the limits)."""
    base = load_settings(None)
    big = 1e12
    return base.model_copy(
        update={
            "bus": base.bus.model_copy(
                update={
                    "redis_url": SecretStr(redis_url),
                    "channel_prefix": prefix,
                    "journal_maxlen": 200_000,
                }
            ),
            "ib": base.ib.model_copy(update={"host": "127.0.0.1", "port": ib_port}),
            "market_data": base.market_data.model_copy(
                update={"symbols": symbols, "instruments": (), "bar_seconds": 60}
            ),
            "strategy": base.strategy.model_copy(update={"strategy_bar_seconds": 60}),
            "execution": base.execution.model_copy(
                update={
                    "trading_mode": "paper",
                    "dry_run": False,
                    "allowed_symbols": symbols,
                    "max_order_quantity": 1e9,
                    "max_order_notional": big,
                    "max_position_per_symbol": 1e9,
                    "max_gross_exposure": big,
                    "daily_loss_limit": big,
                    "max_orders_per_second": 1_000_000,
                    "max_orders_per_minute": 10_000_000,
                }
            ),
        }
    )


@dataclass
class Harness:
    """The daemon (market_data, strategy, execution) on one bus, with EveryNthTick."""

    settings: Settings
    symbols: tuple[str, ...]
    every: int
    traded: int = 10
    bus: RedisEventBus = field(init=False)
    strategy: EveryNthTick = field(init=False)
    daemon: Daemon = field(init=False)
    # signal id -> perf_counter_ns when execution was handed it / called placeOrder for it
    at_execution: dict[str, int] = field(default_factory=dict)
    at_place_order: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bus = build_bus(self.settings.bus)
        self.strategy = EveryNthTick(
            EveryNthParams(every=self.every, traded=self.traded),
            symbols=self.symbols,
            run=uuid.uuid4().hex[:8],
        )
        self.daemon = Daemon(
            ["market_data", "strategy", "execution"], self._build, self.bus, heartbeat_seconds=5
        )

    def _build(self, name: str) -> Any:
        if name == "strategy":
            return StrategyRunner(
                self.strategy, self.bus, symbols=self.symbols, bar_seconds=60, max_failures=5
            )
        module = build_module(name, self.settings, self.bus)
        if name == "market_data":
            module.connection.ib.client.MaxRequests = 0  # type: ignore[attr-defined]
        if name == "execution":
            self._trace(module)
        return module

    def _trace(self, execution: Any) -> None:
        """Stamp each signal where execution receives it and where it calls placeOrder."""
        handle, place = execution.handle_signal, execution.ib.placeOrder

        async def handle_signal(signal: TradeSignal) -> None:
            self.at_execution.setdefault(signal.id, time.perf_counter_ns())
            await handle(signal)

        def place_order(contract: Any, order: Any) -> Any:
            self.at_place_order[order.orderRef] = time.perf_counter_ns()
            return place(contract, order)

        execution.handle_signal = handle_signal
        execution.ib.placeOrder = place_order

    async def start(self, timeout: float = 300.0) -> float:
        """Start the daemon; return once every symbol's ticks reach the strategy and execution
        is ready to trade (seconds)."""
        started = time.perf_counter()
        await self.daemon.start()
        freeze_start_up()  # as `main.py run` does
        deadline = started + timeout
        execution = next(m for m in self.daemon.modules if m.name == "execution")
        while time.perf_counter() < deadline:
            # execution too: a connection that had to be retried would reject the first signals
            if len(self.strategy.symbols_seen) >= len(self.symbols) and execution.ready:
                break
            await asyncio.sleep(0.2)
        await freeze_once_subscribed(self.daemon)  # as `main.py run` does, once subscribed
        return time.perf_counter() - started

    def backlog(self) -> int:
        """Events waiting in this process: every subscription's queue plus the outbox."""
        # a subscription to several channels is listed under each of them: count it once
        subscriptions = {sub for subs in self.bus._subscriptions.values() for sub in subs}
        queued = sum(sub.backlog for sub in subscriptions)
        return queued + len(self.bus._outbox)

    def unread_bytes(self) -> int:
        """`IBConnection.unread_bytes` of market data's connection (0 when it is down)."""
        return self._market_data().connection.unread_bytes() or 0

    def read_stats(self) -> ReadStats:
        """Market data's reads of the IB socket, and those it conflated."""
        return replace(self._market_data().connection.read_stats())  # a copy: the live one moves

    def _market_data(self) -> Any:
        return next(m for m in self.daemon.modules if m.name == "market_data")

    async def stop(self) -> None:
        await self.daemon.stop()
        await cleanup(self.settings.bus.redis_url.get_secret_value(), self.bus.channels.prefix)


async def stop_both(sim: SimProcess, harness: Harness) -> None:
    """Stop the simulator, then the daemon.

    The simulator first: a daemon that fell behind would otherwise work through the
    simulator's socket backlog before it stops. Its IB connections then see the simulator go
    and try once to reconnect, refused: expected here, so only errors are logged meanwhile.
    """
    loggers = [logging.getLogger(name) for name in ("ib_async", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        await sim.stop()
        await harness.stop()
    finally:
        structlog.configure(wrapper_class=wrapper)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def cleanup(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])
    await client.aclose()


@dataclass
class Sample:
    at: float
    ticks_sent: int
    sim_cpu: float
    sim_buffered: int
    unread: int
    reads: int  # of the IB socket, since the daemon started
    reads_conflated: int
    backlog: int
    ticks_seen: int
    daemon_cpu: float
    rss: int
    redis_cpu: float


async def redis_cpu_seconds(client: aioredis.Redis) -> float:
    """CPU seconds the Redis server has used (INFO cpu): its share of the cost."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def sample(harness: Harness, sim: SimProcess) -> Sample:
    sent, _, buffered, sim_cpu = await sim.sample()
    me = psutil.Process()
    cpu = me.cpu_times()
    reads = harness.read_stats()
    return Sample(
        time.perf_counter(),
        sent,
        sim_cpu,
        buffered,
        harness.unread_bytes(),
        reads.reads,
        reads.reads_conflated,
        harness.backlog(),
        harness.strategy.ticks_seen,
        cpu.user + cpu.system,
        me.memory_info().rss,
        await redis_cpu_seconds(harness.bus.redis),
    )


async def sample_every(
    seconds: float, harness: Harness, sim: SimProcess, into: list[Sample]
) -> None:
    while True:
        into.append(await sample(harness, sim))
        await asyncio.sleep(seconds)


# Matching orders to the ticks that caused them


def latencies(
    signals: dict[str, tuple[str, float, int]],
    ticks: dict[str, list[tuple[int, float]]],
    orders: list[tuple[str, int]],
) -> tuple[list[tuple[int, float]], int, list[float]]:
    """[(order received ns, latency us)] of every recorded signal's order, the unmatched count,
    and the tick -> strategy part of each latency (us)."""
    found: list[tuple[int, float]] = []
    to_strategy: list[float] = []  # us from the tick's send to the strategy seeing it
    unmatched = 0
    sent_ns = {symbol: [ns for ns, _ in sends] for symbol, sends in ticks.items()}
    for order_ref, received_ns in orders:
        recorded = signals.get(order_ref)
        if recorded is None:
            continue
        symbol, last, seen_ns = recorded
        sends = ticks.get(symbol, [])
        index = bisect.bisect_right(sent_ns.get(symbol, []), seen_ns) - 1
        while index >= 0 and sends[index][1] != last:
            index -= 1
        if index < 0:
            unmatched += 1
            continue
        found.append((received_ns, (received_ns - sends[index][0]) / 1000))
        to_strategy.append((seen_ns - sends[index][0]) / 1000)
    return found, unmatched, to_strategy


def hops(harness: Harness, orders: list[tuple[str, int]]) -> tuple[dict[str, float], str]:
    """p50 (us) of the signal's hops: strategy -> execution (the bus), execution ->
    placeOrder (the decision), placeOrder -> the simulator (the IB socket); and the hops of
    the slowest order, described."""
    parts: dict[str, list[float]] = defaultdict(list)
    slowest: tuple[float, str] = (0.0, "")
    for order_ref, received_ns in orders:
        recorded = harness.strategy.signals.get(order_ref)
        handed = harness.at_execution.get(order_ref)
        placed = harness.at_place_order.get(order_ref)
        if recorded is None or handed is None or placed is None:
            continue
        us = [
            (handed - recorded[2]) / 1000,
            (placed - handed) / 1000,
            (received_ns - placed) / 1000,
        ]
        for name, value in zip(HOPS, us, strict=True):
            parts[name].append(value)
        if sum(us) > slowest[0]:
            detail = ", ".join(f"{name} {value:,.0f}" for name, value in zip(HOPS, us, strict=True))
            slowest = (sum(us), detail)
    return {name: statistics.median(values) for name, values in parts.items()}, slowest[1]


HOPS = ("strategy -> execution", "decision", "placeOrder -> simulator")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# One run


@dataclass
class Result:
    paced: bool
    pinned: str
    rate: int
    symbols: int
    every: int
    traded: int
    sim_rate: float
    sim_cpu: float
    daemon_cpu: float
    redis_cpu: float
    ticks_seen_rate: float
    orders: int
    signals: int
    unmatched: int
    p50: float
    p99: float
    max: float
    p50_to_strategy: float
    segments: dict[str, float]
    slowest: str
    p50_first: float
    p50_last: float
    backlog_first: float
    backlog_last: float
    buffered_first: float
    buffered_last: float
    unread_first: float
    unread_last: float
    dropped: int
    conflated: int
    reads: int
    reads_conflated: int
    rejected: int
    startup: float
    gc_pauses: str = ""
    profile: str = ""


def split_thirds(values: list[float]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return statistics.mean(values[:third]), statistics.mean(values[-third:])


async def run_rate(
    url: str,
    rate: int,
    symbols: int,
    seconds: float,
    every: int,
    *,
    traded: int = 10,
    warmup: float = 3.0,
    profile: bool = False,
    paced: bool = True,
    sim_cpu: int | None = None,
) -> Result:
    steps_per_second = rate / symbols
    config = SimConfig(
        port=0,
        symbols=(),
        synthetic_symbols=symbols,
        tick_interval=round(1.0 / steps_per_second, 6),
        bar_interval=5.0,
        speed=1.0,
        paced_quotes=paced,
    )
    sim = SimProcess(config, record_ticks=True, cpu=sim_cpu)
    names = tuple(config.universe())
    prefix = f"bench-t2o-{uuid.uuid4().hex[:8]}"
    harness = Harness(bench_settings(url, prefix, sim.port, names), names, every, traded)
    try:
        startup = await harness.start()
        await asyncio.sleep(warmup)
        samples: list[Sample] = []
        rejected_before = harness.bus.stats.published.get("RiskRejection", 0)
        harness.strategy.recording = True
        profiler = cProfile.Profile() if profile else None
        sampler = asyncio.create_task(sample_every(1.0, harness, sim, samples))
        if profiler is not None:
            profiler.enable()
        with GcPauses() as collections:
            await asyncio.sleep(seconds)
        harness.strategy.recording = False
        if profiler is not None:
            profiler.disable()
        await asyncio.sleep(1.0)  # orders in flight arrive
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        stats = harness.bus.stats
        # now, before the simulator stops: its going makes signals in flight fail not_connected
        rejected = stats.published.get("RiskRejection", 0) - rejected_before
        ticks, orders = await sim.collect()
    finally:
        await stop_both(sim, harness)
    found, unmatched, to_strategy = latencies(harness.strategy.signals, ticks, orders)
    segments, slowest = hops(harness, orders)
    values = [latency for _, latency in sorted(found)]
    first, last = samples[0], samples[-1]
    elapsed = last.at - first.at
    p50_first, p50_last = (
        (
            statistics.median(values[: len(values) // 3]),
            statistics.median(values[-len(values) // 3 :]),
        )
        if len(values) >= 3
        else (float("nan"), float("nan"))
    )
    backlog_first, backlog_last = split_thirds([float(s.backlog) for s in samples])
    buffered_first, buffered_last = split_thirds([float(s.sim_buffered) for s in samples])
    unread_first, unread_last = split_thirds([float(s.unread) for s in samples])
    return Result(
        paced=paced,
        pinned=(
            f"simulator on CPU {sim_cpu}, daemon on CPU "
            f"{','.join(map(str, sorted(os.sched_getaffinity(0))))}"
            if sim_cpu is not None
            else "not pinned"
        ),
        rate=rate,
        symbols=symbols,
        every=every,
        traded=traded,
        sim_rate=(last.ticks_sent - first.ticks_sent) / elapsed,
        sim_cpu=100 * (last.sim_cpu - first.sim_cpu) / elapsed,
        daemon_cpu=100 * (last.daemon_cpu - first.daemon_cpu) / elapsed,
        redis_cpu=100 * (last.redis_cpu - first.redis_cpu) / elapsed,
        ticks_seen_rate=(last.ticks_seen - first.ticks_seen) / elapsed,
        orders=len(found),
        signals=len(harness.strategy.signals),
        unmatched=unmatched,
        p50=percentile(values, 0.5) if values else float("nan"),
        p99=percentile(values, 0.99) if values else float("nan"),
        max=max(values) if values else float("nan"),
        p50_to_strategy=statistics.median(to_strategy) if to_strategy else float("nan"),
        segments=segments,
        slowest=slowest,
        p50_first=p50_first,
        p50_last=p50_last,
        backlog_first=backlog_first,
        backlog_last=backlog_last,
        buffered_first=buffered_first,
        buffered_last=buffered_last,
        unread_first=unread_first,
        unread_last=unread_last,
        dropped=sum(stats.dropped.values()),
        conflated=sum(stats.conflated.values()),
        reads=last.reads - first.reads,
        reads_conflated=last.reads_conflated - first.reads_conflated,
        rejected=rejected,
        startup=startup,
        gc_pauses=collections.summary(),
        profile=_top(profiler) if profiler is not None else "",
    )


def _top(profiler: cProfile.Profile, count: int = 25) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(count)
    return out.getvalue()


# The floor: two Redis hops


async def raw_two_hops(url: str, count: int) -> list[float]:
    """redis-py: A publishes on ch1 -> B's handler publishes on ch2 -> A's reader. In us."""
    tag = uuid.uuid4().hex[:8]
    ping, pong = f"bench-hop1-{tag}", f"bench-hop2-{tag}"
    a, b = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    a_sub, b_sub = (
        a.pubsub(ignore_subscribe_messages=True),
        b.pubsub(ignore_subscribe_messages=True),
    )
    await a_sub.subscribe(pong)
    await b_sub.subscribe(ping)

    async def echo() -> None:
        async for message in b_sub.listen():
            if message["type"] == "message":
                await b.publish(pong, message["data"])

    echoing = asyncio.create_task(echo())
    await asyncio.sleep(0.1)
    results = []
    for _ in range(count):
        started = time.perf_counter_ns()
        await a.publish(ping, b"x" * 200)
        while await a_sub.get_message(timeout=1.0) is None:
            pass
        results.append((time.perf_counter_ns() - started) / 1000)
    echoing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await echoing
    for client, sub in ((a, a_sub), (b, b_sub)):
        await sub.aclose()
        await client.aclose()
    return results


async def bus_two_hops(url: str, count: int, *, local: bool = False) -> list[float]:
    """The bus: Tick -> a handler publishes a TradeSignal -> a second handler. In us.

    Through Redis both ways unless `local` (the bus hands its own events to its handlers)."""
    bus = RedisEventBus.from_url(
        url, channels=Channels(f"bench-hop-{uuid.uuid4().hex[:8]}"), local_delivery=local
    )
    arrived: asyncio.Queue[int] = asyncio.Queue()

    async def on_tick(event: Event) -> None:
        assert isinstance(event, Tick)
        await bus.publish(TradeSignal(symbol=event.symbol, action="BUY", quantity=1))

    async def on_signal(event: Event) -> None:
        arrived.put_nowait(time.perf_counter_ns())

    await bus.subscribe(bus.channels.instrument("tick", "*"), on_tick)
    await bus.subscribe(bus.channels.instrument("signal", "*"), on_signal)
    await bus.start()
    results = []
    for _ in range(count):
        started = time.perf_counter_ns()
        await bus.publish(Tick(symbol="SYM0000", bid=100.0, ask=100.02, last=100.01))
        results.append((await asyncio.wait_for(arrived.get(), 5) - started) / 1000)
    await bus.stop()
    await cleanup(url, bus.channels.prefix)
    return results


class GcPauses:
    """Pauses of the garbage collector (ms) while recording, by generation."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = defaultdict(list)
        self._started = 0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses[info["generation"]].append((time.perf_counter_ns() - self._started) / 1e6)

    def summary(self) -> str:
        parts = [
            f"gen {generation}: {len(values)}, longest {max(values):.1f} ms"
            for generation, values in sorted(self.pauses.items())
        ]
        return "; ".join(parts) or "none"


# Output


def report(result: Result) -> None:
    r = result
    print(
        f"  {r.rate:>6,} ticks/s asked, {r.symbols:,} symbols, a signal per {r.every} ticks of "
        f"{r.traded} traded symbols ({100 * r.traded / r.symbols / r.every:.1f}% of ticks), "
        f"quotes {'paced' if r.paced else 'in bursts'}, {r.pinned} "
        f"(daemon ready in {r.startup:.1f} s)"
    )
    print(
        f"    simulator sent {r.sim_rate:,.0f} ticks/s at {r.sim_cpu:.0f}% CPU; "
        f"strategy saw {r.ticks_seen_rate:,.0f} ticks/s; daemon CPU {r.daemon_cpu:.0f}%, "
        f"Redis CPU {r.redis_cpu:.0f}%"
    )
    print(
        f"    tick -> order: p50 {r.p50:,.0f} us, p99 {r.p99:,.0f} us, max {r.max:,.0f} us "
        f"over {r.orders:,} orders ({r.signals:,} signals, {r.rejected} rejected, "
        f"{r.unmatched} unmatched)"
    )
    hops = ", ".join(f"{name} {us:,.0f}" for name, us in r.segments.items())
    print(f"    p50 of each hop (us): tick -> strategy {r.p50_to_strategy:,.0f}, {hops}")
    print(f"    the slowest order's hops after the strategy (us): {r.slowest}")
    print(
        f"    p50 first/last third {r.p50_first:,.0f} / {r.p50_last:,.0f} us; daemon backlog "
        f"{r.backlog_first:,.0f} -> {r.backlog_last:,.0f} events; simulator socket buffer "
        f"{r.buffered_first:,.0f} -> {r.buffered_last:,.0f} bytes, unread by the daemon "
        f"{r.unread_first:,.0f} -> {r.unread_last:,.0f} bytes; bus dropped {r.dropped}, "
        f"conflated {r.conflated}; IB socket reads {r.reads:,}, conflated {r.reads_conflated:,}"
    )
    print(f"    garbage collections while measured (after `freeze_start_up`): {r.gc_pauses}")
    if r.profile:
        print(r.profile)


def floor_line(name: str, values: list[float]) -> None:
    print(
        f"  {name:<44} p50 {percentile(values, 0.5):>6,.0f} us, "
        f"p99 {percentile(values, 0.99):>6,.0f} us"
    )


ORDERS_PER_SECOND = 20


def run_all(
    rates: list[int],
    symbols: Callable[[int], int],
    seconds: float,
    fraction: float,
    traded: int,
    profile: bool,
    paced: bool,
    pin: bool = True,
) -> None:
    with redis_server() as url:
        print("two Redis hops (publish -> subscriber -> publish -> subscriber), the floor")
        floor_line("raw redis-py, 2,000 round trips", asyncio.run(raw_two_hops(url, 2000)))
        floor_line("the bus (Tick -> TradeSignal), 2,000", asyncio.run(bus_two_hops(url, 2000)))
        floor_line(
            "  the same, local delivery (one process)",
            asyncio.run(bus_two_hops(url, 2000, local=True)),
        )
        print("tick -> order through the daemon (simulator in a child process)")
        for rate in rates:
            count = symbols(rate)
            # IB takes about 50 API messages/s per client (ib_async queues beyond 45/s), so the
            # orders are capped at ORDERS_PER_SECOND: more would measure ib_async's queue.
            wanted = min(fraction, ORDERS_PER_SECOND / rate)
            every = max(1, round(traded / (count * wanted)))
            sim_cpu, daemon_cpus = split_cpus() if pin else (None, None)
            result = run_rate(
                url,
                rate,
                count,
                seconds,
                every,
                traded=traded,
                profile=profile,
                paced=paced,
                sim_cpu=sim_cpu,
            )
            with own_cpus(daemon_cpus):
                report(asyncio.run(result))


def split_cpus() -> tuple[int | None, set[int] | None]:
    """(the simulator's CPU, the daemon's CPUs): the last CPU for the simulator, the rest for
    this process, as a Gateway on a core of its own; (None, None) with fewer than two CPUs.

    Unpinned, Linux tends to wake the simulator on the CPU of the daemon that just wrote to it,
    and there it waits until the daemon's turn ends: on 2 vCPUs that put ~400 us between
    placeOrder and the simulator reading it at 1,000 ticks/s (BENCHMARKS.md, `--no-pin`)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], set(cpus[:-1])


@contextlib.contextmanager
def own_cpus(cpus: set[int] | None) -> Iterator[None]:
    """Run this process on `cpus` (all of them again afterwards); None: leave it be."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,20000", help="ticks/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per rate")
    parser.add_argument(
        "--symbols", type=int, default=0, help="symbols streamed (default: rate/10, at most 1000)"
    )
    parser.add_argument("--fraction", type=float, default=0.01, help="signals per tick")
    parser.add_argument("--traded", type=int, default=10, help="symbols the strategy trades")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured window")
    parser.add_argument(
        "--bursts",
        action="store_true",
        help="the simulator writes each step's quotes back to back (default: paced over the step)",
    )
    parser.add_argument(
        "--read-size",
        type=int,
        default=framing.READ_BYTES,
        help=f"experiment: bytes read from the IB socket at once ({framing.READ_BYTES})",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the simulator and the daemon to the scheduler (default: a CPU each)",
    )
    args = parser.parse_args()
    framing.READ_BYTES = args.read_size
    run_all(
        [int(rate) for rate in args.rates.split(",")],
        lambda rate: args.symbols or max(10, min(1000, rate // 10)),
        args.seconds,
        args.fraction,
        args.traded,
        args.profile,
        not args.bursts,
        not args.no_pin,
    )


if __name__ == "__main__":
    main()
