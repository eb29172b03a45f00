"""The faults, each injected into a running drill and followed until market data is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog

from drills.drill import Drill, wait_for
from drills.malformed import publish_malformed

log = structlog.get_logger()

Fault = Callable[[Drill], Awaitable[None]]


async def ib_drop_mid_stream(drill: Drill) -> None:
    """Every IB socket dropped while ticks stream and orders are working."""
    await drill.burst(len(drill.symbols))
    old = drill.md_sessions()
    drill.sim.drop_all_clients()
    await drill.record_recovery("IB sockets dropped", time.monotonic(), old_sessions=old)
    await drill.wait_execution_ready(drill.config.recovery_bound_seconds)


async def ib_drop_mid_order(drill: Drill) -> None:
    """Execution's socket dropped right after the broker accepted an order, before its ack."""
    drill.sim.drop_socket_on_next_order()
    orders_before = len(drill.sim.orders_received)
    await drill.signal(drill.symbols[0], drill._next_action(drill.symbols[0]))
    await wait_for(
        lambda: len(drill.sim.orders_received) > orders_before, 15.0, "the order reached IB"
    )
    await drill.record_recovery("IB socket dropped mid-order", time.monotonic())
    await drill.wait_execution_ready(drill.config.recovery_bound_seconds)


def gateway_restart(seconds: float) -> Fault:
    async def fault(drill: Drill) -> None:
        """The Gateway restarts in a new trading day: every socket dropped, connections
        refused for `seconds`, and the day before's executions and finished orders no longer
        reported. The day turns first, once every execution so far is stored (IB's day does
        not turn at the restart, with executions in flight); the burst's orders work across it."""
        bound = drill.config.recovery_bound_seconds
        await wait_for(drill.executions_stored, bound, "every execution stored")
        drill.sim.new_trading_day()
        await drill.burst(len(drill.symbols))
        old = drill.md_sessions()
        drill.sim.refuse_connections(seconds)
        restored_at = time.monotonic() + seconds
        await asyncio.sleep(seconds)  # the outage itself: nothing to wait for but the clock
        await drill.record_recovery(
            f"Gateway restart ({seconds:g} s refused)", restored_at, old_sessions=old
        )
        await drill.wait_execution_ready(drill.config.recovery_bound_seconds)

    return fault


def link_lost(restored_code: int) -> Fault:
    async def fault(drill: Drill) -> None:
        """IB's 1100 (connectivity lost), then 1101 (data lost) or 1102 (data kept)."""
        seconds = drill.config.outage_seconds
        drill.sim.connectivity_lost(restored_code=restored_code, after=seconds)
        restored_at = time.monotonic() + seconds
        await asyncio.sleep(seconds)
        await drill.record_recovery(f"1100 then {restored_code}", restored_at)
        await drill.wait_execution_ready(drill.config.recovery_bound_seconds)

    return fault


async def farm_blip(drill: Drill) -> None:
    """A market data farm blip: 2103, data paused, 2104."""
    seconds = drill.config.outage_seconds
    drill.sim.farm_blip(seconds)
    restored_at = time.monotonic() + seconds
    await asyncio.sleep(seconds)
    await drill.record_recovery("data farm blip", restored_at)


async def redis_restart_keeping_data(drill: Drill) -> None:
    """Redis killed (SIGKILL) with orders working, restarted from its append-only file."""
    await drill.burst(len(drill.symbols))
    await drill.redis.restart_keeping_data()
    await drill.record_recovery("Redis restart (persistent)", time.monotonic())
    await drill.wait_execution_ready(drill.config.recovery_bound_seconds)


async def redis_restart_losing_data(drill: Drill) -> None:
    """Redis killed and restarted empty while storage is behind: the journal is lost with
    fills in it that storage had not read. Reconciliation must still bring them to `fills`."""
    drill.storage.pause()
    try:
        burst = set(await drill.burst(len(drill.symbols)))

        def burst_done() -> bool:
            orders = [o for o in drill.sim.broker.orders.values() if o.order_ref in burst]
            return bool(orders) and not any(order.is_active for order in orders)

        await wait_for(burst_done, 30.0, "the burst's orders filled while storage is held back")
        await _journal_has(drill, {e.exec_id for e in drill.sim.executions if e.order_ref in burst})
        await drill.redis.restart_losing_data()
    finally:
        drill.storage.resume()
    await drill.record_recovery("Redis restart (data lost)", time.monotonic())
    await drill.wait_execution_ready(drill.config.recovery_bound_seconds)


async def _journal_has(drill: Drill, execution_ids: set[str]) -> None:
    """Wait until execution has published these fills (they are in the journal)."""
    client = aioredis.Redis.from_url(drill.redis.url)
    try:

        async def published() -> bool:
            entries: Any = await client.xrevrange(drill.channels.journal, count=5_000)
            seen = {fields.get(b"event", b"") for _, fields in entries}
            return all(any(e.encode() in event for event in seen) for e in execution_ids)

        await wait_for(published, 30.0, "fills in the journal")
    finally:
        await client.aclose()


async def daemon_killed(drill: Drill) -> None:
    """The trading process SIGKILLed with orders in flight, then started again."""
    orders_before = len(drill.sim.orders_received)
    await drill.burst(2 * len(drill.symbols))
    await wait_for(
        lambda: (
            len(drill.sim.orders_received) > orders_before
            and bool(drill.sim.broker.active_orders())
        ),
        15.0,
        "orders in flight",
    )
    drill.trader.kill()
    await drill.trader.wait_killed()
    restarted_at = time.monotonic()
    await drill.trader.start()
    await drill.record_recovery("daemon SIGKILL and restart", restarted_at)
    await drill.wait_execution_ready(drill.config.recovery_bound_seconds)


async def malformed_storm(drill: Drill) -> None:
    """`malformed_count` malformed messages over every channel the daemon reads; each must be
    rejected and counted (the heartbeat's bus_rejected), none may crash anything."""
    await _fresh_heartbeat(drill)
    before = int(drill.watcher.detail("execution").get("bus_rejected", "0"))
    client = aioredis.Redis.from_url(drill.redis.url)
    try:
        deliveries = await publish_malformed(
            client,
            drill.channels,
            drill.symbols,
            drill.config.malformed_count,
            own_patterns=drill.watcher.patterns,
        )
    finally:
        await client.aclose()
    drill.figures.malformed_sent += drill.config.malformed_count
    drill.figures.malformed_deliveries += deliveries

    def counted() -> int:
        return int(drill.watcher.detail("execution").get("bus_rejected", "0")) - before

    try:
        await wait_for(lambda: counted() >= deliveries, 30.0, "malformed messages counted")
    except TimeoutError:
        log.warning("drill_malformed_not_all_counted", counted=counted(), expected=deliveries)
    drill.figures.malformed_counted += counted()
    await drill.record_recovery("malformed storm", time.monotonic())


async def _fresh_heartbeat(drill: Drill) -> None:
    """Wait for a heartbeat newer than now, so its counters include everything before."""
    beat = drill.watcher.heartbeats.get("execution")
    await wait_for(
        lambda: drill.watcher.heartbeats.get("execution") is not beat, 15.0, "a fresh heartbeat"
    )


def schedule(gateway_restart_seconds: float) -> Sequence[tuple[str, Fault]]:
    """Every fault once, in an order that leaves each one a running daemon to hit."""
    return (
        ("ib_drop_mid_stream", ib_drop_mid_stream),
        ("ib_drop_mid_order", ib_drop_mid_order),
        ("gateway_restart", gateway_restart(gateway_restart_seconds)),
        ("1100_1101", link_lost(1101)),
        ("1100_1102", link_lost(1102)),
        ("farm_blip", farm_blip),
        ("malformed_storm", malformed_storm),
        ("redis_restart_persistent", redis_restart_keeping_data),
        ("daemon_sigkill", daemon_killed),
        ("redis_restart_data_lost", redis_restart_losing_data),
    )


async def run_schedule(drill: Drill, faults: Sequence[tuple[str, Fault]]) -> None:
    for name, fault in faults:
        log.info("drill_fault", fault=name)
        await fault(drill)
        drill.trader.check_alive()
        drill.storage.check_alive()
