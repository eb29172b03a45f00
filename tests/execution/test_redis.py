"""Done when: a manual BUY published raw with redis-cli on a real Redis is one order, its fills
and its commission, even published three times with a restart in between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from config import IBSettings
from event_bus import Channels, Event, RedisEventBus
from event_bus.system import ControlCommand
from execution import ExecutionService, build_execution
from execution.model import Fill, OrderUpdate, RiskRejection, TradingHalted
from ibsim import Simulator
from market_data.model import Tick
from strategy.model import TradeSignal
from tests.execution.conftest import execution_settings
from tests.helpers import eventually

pytestmark = pytest.mark.integration

MANUAL_BUY = (
    b'{"type":"TradeSignal","symbol":"AAPL","action":"BUY","quantity":10,"order_type":"MKT"}'
)


class Recorder:
    """Every event on the daemon's channels, as a separate `tail` would see them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def recorder(redis_url: str, channels: Channels, clean_keys: None) -> AsyncIterator[Recorder]:
    bus = RedisEventBus.from_url(redis_url, channels=channels)
    recording = Recorder()
    await bus.subscribe(channels.everything, recording, name="recorder")
    await bus.start()
    yield recording
    await bus.stop(timeout=1.0)


@pytest.fixture
async def start_daemon(
    redis_url: str, channels: Channels, sim: Simulator
) -> AsyncIterator[Callable[..., Any]]:
    """`await start_daemon()` -> (bus, service) as `main.py run --modules execution` builds them."""
    running: list[tuple[RedisEventBus, ExecutionService]] = []

    async def start(**overrides: Any) -> tuple[RedisEventBus, ExecutionService]:
        bus = RedisEventBus.from_url(redis_url, channels=channels)
        await bus.start()
        ib_settings = IBSettings(
            _env_file=None,  # type: ignore[call-arg]
            port=sim.port,
            client_id=20,
            connect_timeout_seconds=3.0,
        )
        service = build_execution(execution_settings(**overrides), ib_settings, bus)
        await service.start()
        running.append((bus, service))
        # the bus confirms patterns subscribed before its connection exists only later
        await eventually(lambda: bus.connected)
        await bus.publish(Tick(symbol="AAPL", last=190.0, bid=189.99, ask=190.01))
        await eventually(lambda: "AAPL" in service.daily_marks())
        return bus, service

    yield start
    for bus, service in reversed(running):
        await service.stop()
        await bus.stop(timeout=1.0)


async def test_manual_buy_published_three_times_with_a_restart_is_one_order(
    raw_redis: aioredis.Redis,
    channels: Channels,
    sim: Simulator,
    recorder: Recorder,
    start_daemon: Callable[..., Any],
) -> None:
    """Three raw PUBLISHes of the CONTRACT.md BUY, the daemon restarted between them: one
    order at IB, one Fill with its commission, one filled OrderUpdate chain."""
    channel = channels.instrument("signal", "AAPL")
    bus, service = await start_daemon()
    await raw_redis.publish(channel, MANUAL_BUY)
    await eventually(lambda: len(recorder.of(Fill)) == 1, timeout=10)
    await raw_redis.publish(channel, MANUAL_BUY)
    await bus.drain()
    await service.wait_idle()
    await service.stop()
    await bus.stop(timeout=1.0)

    bus, service = await start_daemon()
    await raw_redis.publish(channel, MANUAL_BUY)
    await bus.drain()
    await service.wait_idle()
    await eventually(lambda: service.ib.isConnected())
    await service.ib.reqCurrentTimeAsync()  # a round trip: anything sent has reached IB

    [received] = sim.orders_received
    [execution] = sim.executions
    [fill] = recorder.of(Fill)
    assert (received.order_ref, received.action, received.quantity) == (
        fill.signal_id,
        "BUY",
        10.0,
    )
    assert fill.signal_id.startswith("tradesignal-")
    assert (fill.execution_id, fill.quantity, fill.commission) == (
        execution.exec_id,
        10.0,
        execution.commission,
    )
    ours = [u for u in recorder.of(OrderUpdate) if u.signal_id == fill.signal_id]
    # the restarted daemon restates the order's state once, at its reconciliation
    assert [u.status for u in ours] == ["pending_submit", "submitted", "filled", "filled"]
    journal = await raw_redis.xrange(channels.journal)
    signals = [f for _, f in journal if f[b"channel"] == channel.encode()]
    assert len(signals) >= 1  # the raw signal was recorded for storage


async def test_halt_key_and_control_garbage_on_redis(
    raw_redis: aioredis.Redis,
    channels: Channels,
    sim: Simulator,
    recorder: Recorder,
    start_daemon: Callable[..., Any],
) -> None:
    """`main.py halt` (key + command) halts a running daemon and one started later; garbage on
    trading:control changes nothing; `resume` (delete + command) lifts it."""
    bus, service = await start_daemon()
    for garbage in (b"halt", b'{"type":"ControlCommand","command":"explode"}', b"[]"):
        await raw_redis.publish(channels.control, garbage)
    halt = ControlCommand(command="halt", reason="cli", issued_by="tester")
    await raw_redis.set(channels.state_key("halt"), bus.codec.encode(halt))
    await raw_redis.publish(channels.control, bus.codec.encode(halt))
    await eventually(lambda: service.halted)
    assert [(h.halted, h.reason) for h in recorder.of(TradingHalted)] == [(True, "cli")]
    await service.stop()
    await bus.stop(timeout=1.0)

    bus, service = await start_daemon()
    assert service.halted
    resume = ControlCommand(command="resume", issued_by="tester")
    await raw_redis.delete(channels.state_key("halt"))
    await raw_redis.publish(channels.control, bus.codec.encode(resume))
    await eventually(lambda: not service.halted)
    assert await raw_redis.get(channels.state_key("halt")) is None


async def test_signals_published_while_down_are_caught_up_from_the_journal(
    redis_url: str,
    channels: Channels,
    sim: Simulator,
    recorder: Recorder,
    start_daemon: Callable[..., Any],
) -> None:
    """A strategy's signal journaled while execution was down is executed at start; one that
    expired meanwhile is rejected as expired."""
    strategy_bus = RedisEventBus.from_url(redis_url, channels=channels)
    await strategy_bus.start()
    fresh = TradeSignal(symbol="AAPL", action="BUY", quantity=3, order_type="LMT", limit_price=250)
    stale = TradeSignal(
        symbol="AAPL",
        action="BUY",
        quantity=4,
        order_type="LMT",
        limit_price=250,
        expires_at=datetime.now(UTC) + timedelta(milliseconds=50),
    )
    await strategy_bus.publish(stale)
    await strategy_bus.publish(fresh)
    await strategy_bus.stop(timeout=2.0)
    await eventually(lambda: datetime.now(UTC) > stale.expires_at)  # type: ignore[operator]

    await start_daemon()
    await eventually(lambda: [o.order_ref for o in sim.orders_received] == [fresh.id])
    await eventually(lambda: len(recorder.of(RiskRejection)) == 1)
    [rejection] = recorder.of(RiskRejection)
    assert (rejection.signal_id, rejection.rule) == (stale.id, "expired")
