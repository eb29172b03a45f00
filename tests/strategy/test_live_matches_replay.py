"""The same bars through the runner on a bus and through replay give the same signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config import StrategySettings
from event_bus import Channels, Event, InMemoryEventBus, RedisEventBus
from execution.model import Fill
from strategy.backtest import run_backtest
from strategy.csv_bars import load_csv_bars
from strategy.model import TradeSignal
from strategy.registry import build_strategy
from strategy.runner import build_runner
from tests.helpers import eventually

SAMPLE = Path(__file__).parents[2] / "examples" / "sample_bars.csv"


def settings(strategy: str, **overrides: Any) -> StrategySettings:
    values: dict[str, Any] = {
        "strategy": strategy,
        "strategy_params": {},
        "strategy_quantity": 10,
        "strategy_bar_seconds": 60,
        "signal_ttl_seconds": 30,
        "strategy_max_failures": 5,
    }
    return StrategySettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


class PaperExecution:
    """Fills every signal in full at once, as a paper account would, on `trading:fill:{SYMBOL}`."""

    def __init__(self, bus: InMemoryEventBus) -> None:
        self.bus = bus

    async def __call__(self, event: Event) -> None:
        assert isinstance(event, TradeSignal)
        fill = Fill(
            symbol=event.symbol,
            execution_id=f"exec-{event.id}",
            signal_id=event.id,
            side=event.action,
            quantity=event.quantity,
            price=100.0,
            executed_at=event.ts,
        )
        await self.bus.publish(fill)


class Recorder:
    """A handler that remembers the signals it was given."""

    def __init__(self) -> None:
        self.signals: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.signals.append(event)


@pytest.mark.parametrize("strategy", ["sma_crossover", "mean_reversion"])
async def test_runner_with_fills_on_the_in_memory_bus_sends_what_replay_prints(
    strategy: str,
) -> None:
    """The sample CSV bar by bar through the runner, fills coming back: replay's signals, ids
    included."""
    bars = load_csv_bars(SAMPLE, "AAPL")
    replay = run_backtest(build_strategy(settings(strategy)), bars)
    bus = InMemoryEventBus()
    await bus.subscribe(bus.channels.instrument("signal", "*"), PaperExecution(bus))
    runner = build_runner(settings(strategy), ("AAPL",), bus)
    await runner.start()
    for bar in bars:
        await bus.publish(bar)
        await bus.drain()
    await runner.stop()
    await bus.stop()
    live = [event for event in bus.published if isinstance(event, TradeSignal)]
    assert len(replay.signals) > 5
    assert live == replay.signals
    assert runner.strategy.position("AAPL").quantity == replay.open_position


@pytest.mark.integration
async def test_runner_on_redis_sends_what_replay_prints(
    redis_url: str, channels: Channels, clean_keys: None
) -> None:
    """Over a real Redis, all bars published at once: the same signals as replay.

    Nothing fills them here, so the signals live for a day: in flight, each one counts as done.
    """
    day = settings("sma_crossover", signal_ttl_seconds=86_400)
    bars = load_csv_bars(SAMPLE, "AAPL")
    replayed = run_backtest(build_strategy(day), bars).signals
    bus = RedisEventBus.from_url(redis_url, timeout=2.0, channels=channels)
    received = Recorder()
    await bus.subscribe(channels.instrument("signal", "AAPL"), received)
    runner = build_runner(day, ("AAPL",), bus)
    await runner.start()
    await bus.start()
    try:
        for bar in bars:
            await bus.publish(bar)
        await eventually(lambda: len(received.signals) >= len(replayed), message="all signals")
    finally:
        await runner.stop()
        await bus.stop(timeout=1.0)
    assert received.signals == replayed
