"""Scale: CPU and resident memory of the daemon at 100, 1,000 and 5,000 symbols streaming.

`python -m bench.scale [--symbols 100,1000,5000] [--seconds S] [--tick-interval T] [--minutes M]`.

The same set-up as `bench.tick_to_order`: the simulator in a child process streams N synthetic
symbols (SYM0000...), each quoting every `--tick-interval` seconds (default 1.0: N ticks/s in
all) with 5-second real-time bars; the daemon (market_data, strategy, execution on one bus) runs
in this process against the real Redis. The strategy is the benchmark's `EveryNthTick` with no
traded symbols: it subscribes to every symbol's ticks, bars and fills (three patterns per
symbol, like any tick strategy) and sends no signals, so this measures streaming alone.

Each N runs in a fresh process. Once the daemon is ready, it is given up to `--settle` seconds
to work off what queued while it subscribed (the simulator streams from the first request:
5,000 symbols queue tens of MB in the socket while ib_async paces 45 requests a second), so the
run measures streaming, not the start-up backlog; how long that took is printed, or that it did
not. Then after `--warmup` seconds, every second
for `--seconds`: that process's CPU (user + system) and RSS, Redis's CPU (INFO cpu), the ticks
the simulator sent and the strategy saw, events queued in the daemon (subscription queues +
outbox) and bytes waiting in the simulator's socket buffers. "Keeps up" means the strategy saw
>= 95% of the ticks sent, neither backlog doubled from the first third of the run to the last,
and neither is left at the end (<= 100 events, <= 64 KiB); "catching up" the first two without
the last; "FALLS BEHIND" anything else.

`--minutes M` (M > 0) then streams 1,000 symbols for M minutes and samples RSS every 10 s: the
memory is flat when the highest sample is within 10% of the first one (taken after warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.storage_ingest import redis_server
from bench.tick_to_order import (
    Harness,
    Sample,
    SimProcess,
    bench_settings,
    sample,
    sample_every,
    split_thirds,
    stop_both,
)
from ibsim import SimConfig


@dataclass
class ScaleResult:
    symbols: int
    startup: float
    settled: float | None  # seconds to work off the start-up backlog; None: not within --settle
    sent_rate: float
    seen_rate: float
    daemon_cpu: float
    redis_cpu: float
    sim_cpu: float
    rss_first: float
    rss_last: float
    backlog_first: float
    backlog_last: float
    buffered_first: float
    buffered_last: float
    dropped: int
    conflated: int
    reads_conflated: int  # of the IB socket, since start-up (market data's catch-up batches)

    @property
    def verdict(self) -> str:
        """FALLS BEHIND when the strategy sees less than 95% of what was sent or a backlog
        doubled; catching up when neither, but a backlog is left at the end (start-up's, being
        worked off, or moved from the socket into the daemon's queues); else keeps up."""
        grew = self.backlog_last > max(100.0, 2 * self.backlog_first) or (
            self.buffered_last > max(65_536.0, 2 * self.buffered_first)
        )
        if self.seen_rate < 0.95 * self.sent_rate or grew:
            return "FALLS BEHIND"
        if self.backlog_last > 100 or self.buffered_last > 65_536:
            return "catching up, a backlog left"
        return "keeps up"


async def start(url: str, symbols: int, tick_interval: float) -> tuple[SimProcess, Harness]:
    config = SimConfig(
        port=0,
        symbols=(),
        synthetic_symbols=symbols,
        tick_interval=tick_interval,
        bar_interval=5.0,
        speed=1.0,
    )
    sim = SimProcess(config, record_ticks=False)
    names = tuple(config.universe())
    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}"
    harness = Harness(bench_settings(url, prefix, sim.port, names), names, every=1, traded=0)
    return sim, harness


# The start-up backlog is worked off when no more than this is left
SETTLED_BACKLOG = 100  # events queued in the daemon
SETTLED_BUFFERED = 65_536  # bytes in the simulator's socket buffers


async def settle(harness: Harness, sim: SimProcess, limit: float) -> float | None:
    """Seconds until the start-up backlog is worked off (sampled each second), or None when it
    is not within `limit` seconds."""
    began = asyncio.get_running_loop().time()
    while (waited := asyncio.get_running_loop().time() - began) <= limit:
        now = await sample(harness, sim)
        if now.backlog <= SETTLED_BACKLOG and now.sim_buffered <= SETTLED_BUFFERED:
            return waited
        await asyncio.sleep(1.0)
    return None


async def measure(
    url: str, symbols: int, seconds: float, tick_interval: float, warmup: float, limit: float
) -> ScaleResult:
    sim, harness = await start(url, symbols, tick_interval)
    samples: list[Sample] = []
    try:
        startup = await harness.start()
        settled = await settle(harness, sim, limit)
        await asyncio.sleep(warmup)
        sampler = asyncio.create_task(sample_every(1.0, harness, sim, samples))
        await asyncio.sleep(seconds)
        sampler.cancel()
        stats = harness.bus.stats
        reads = harness.read_stats()
    finally:
        await stop_both(sim, harness)
    first, last = samples[0], samples[-1]
    elapsed = last.at - first.at
    backlog = split_thirds([float(s.backlog) for s in samples])
    buffered = split_thirds([float(s.sim_buffered) for s in samples])
    return ScaleResult(
        symbols=symbols,
        startup=startup,
        settled=settled,
        sent_rate=(last.ticks_sent - first.ticks_sent) / elapsed,
        seen_rate=(last.ticks_seen - first.ticks_seen) / elapsed,
        daemon_cpu=100 * (last.daemon_cpu - first.daemon_cpu) / elapsed,
        redis_cpu=100 * (last.redis_cpu - first.redis_cpu) / elapsed,
        sim_cpu=100 * (last.sim_cpu - first.sim_cpu) / elapsed,
        rss_first=first.rss / 2**20,
        rss_last=last.rss / 2**20,
        backlog_first=backlog[0],
        backlog_last=backlog[1],
        buffered_first=buffered[0],
        buffered_last=buffered[1],
        dropped=sum(stats.dropped.values()),
        conflated=sum(stats.conflated.values()),
        reads_conflated=reads.reads_conflated,
    )


async def memory_over_time(
    url: str, minutes: float, symbols: int, tick_interval: float, warmup: float
) -> list[tuple[float, float]]:
    """[(seconds since the first sample, RSS MiB)] every 10 s for `minutes`."""
    sim, harness = await start(url, symbols, tick_interval)
    points: list[tuple[float, float]] = []
    try:
        await harness.start()
        await asyncio.sleep(warmup)
        began = None
        while began is None or points[-1][0] < minutes * 60:
            now = await sample(harness, sim)
            began = began if began is not None else now.at
            points.append((now.at - began, now.rss / 2**20))
            await asyncio.sleep(10.0)
    finally:
        await stop_both(sim, harness)
    return points


def _child(conn: Any, function: Callable[..., Coroutine[Any, Any, Any]], args: tuple) -> None:
    conn.send(asyncio.run(function(*args)))


def isolated(function: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """`function(*args)` run in a fresh process, so each figure has its own CPU and memory
    (a process keeps the memory of a larger run before it)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_child, args=(child, function, args))
    process.start()
    result = parent.recv()
    process.join()
    return result


def report(r: ScaleResult) -> None:
    settled = (
        f"start-up backlog worked off in {r.settled:.0f} s"
        if r.settled is not None
        else "start-up backlog NOT worked off"
    )
    print(
        f"  {r.symbols:>5,} symbols (ready in {r.startup:5.1f} s, {settled}): "
        f"sent {r.sent_rate:>6,.0f} "
        f"ticks/s, strategy saw {r.seen_rate:>6,.0f}/s; daemon CPU {r.daemon_cpu:3.0f}%, "
        f"RSS {r.rss_first:,.0f} -> {r.rss_last:,.0f} MiB; Redis CPU {r.redis_cpu:3.0f}%, "
        f"simulator CPU {r.sim_cpu:3.0f}%"
    )
    print(
        f"         backlog {r.backlog_first:,.0f} -> {r.backlog_last:,.0f} events, simulator "
        f"socket buffer {r.buffered_first:,.0f} -> {r.buffered_last:,.0f} bytes, dropped "
        f"{r.dropped}, conflated {r.conflated}: {r.verdict}; "
        f"IB socket reads conflated since start-up {r.reads_conflated:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="100,1000,5000", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per size")
    parser.add_argument(
        "--settle", type=float, default=120.0, help="seconds at most to work off start-up's backlog"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--tick-interval", type=float, default=1.0, help="seconds per quote")
    parser.add_argument("--minutes", type=float, default=0.0, help="memory run at 1,000 symbols")
    args = parser.parse_args()
    print(
        f"scale: daemon CPU and memory, each symbol quoting every {args.tick_interval:g} s "
        f"(simulator in a child process)"
    )
    with redis_server() as url:
        for count in (int(n) for n in args.symbols.split(",")):
            report(
                isolated(
                    measure,
                    url,
                    count,
                    args.seconds,
                    args.tick_interval,
                    args.warmup,
                    args.settle,
                )
            )
        if args.minutes > 0:
            points = isolated(memory_over_time, url, args.minutes, 1000, args.tick_interval, 30.0)
            first = points[0][1]
            peak = max(rss for _, rss in points)
            growth = 100 * (peak - first) / first
            print(
                f"  memory at 1,000 symbols over {points[-1][0] / 60:.1f} min: RSS {first:,.0f} "
                f"MiB at start, peak {peak:,.0f}, last {points[-1][1]:,.0f} MiB: "
                f"+{growth:.1f}% ({'flat' if growth <= 10 else 'NOT flat'} within 10%)"
            )
            print(
                "    samples (s, MiB): "
                + ", ".join(
                    f"{at:.0f}:{rss:.0f}" for at, rss in points[:: max(1, len(points) // 12)]
                )
            )


if __name__ == "__main__":
    main()
