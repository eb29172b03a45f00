"""The runner on the in-memory bus: signals out, failures survived, a failing strategy disabled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from event_bus import Event, InMemoryEventBus
from market_data.model import Bar, Tick
from strategy.base import Decision, LongOnlyBarStrategy, StrategyParams
from strategy.model import StrategyDisabled, TradeSignal
from strategy.runner import StrategyRunner
from tests.strategy.bars import TTL, bars_from_closes, expected_signal


class Exploding(LongOnlyBarStrategy):
    """Raises on a bar closing at 13; otherwise buys whenever flat."""

    name = "exploding"
    Params = StrategyParams

    def decide(self, bar: Bar, *, holding: bool) -> Decision | None:
        if bar.close == 13:
            raise RuntimeError(f"boom at {bar.close}")
        return Decision("BUY", "always")


class TickCounter(Exploding):
    """Wants ticks, and remembers them."""

    name = "tick_counter"
    wants_ticks = True

    def __init__(self) -> None:
        super().__init__(StrategyParams(), quantity=10, signal_ttl=TTL)
        self.ticks: list[Tick] = []

    def on_tick(self, tick: Tick) -> list[TradeSignal]:
        self.ticks.append(tick)
        return []


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    bus = InMemoryEventBus()
    await bus.start()
    yield bus
    await bus.stop()


async def started_runner(bus: InMemoryEventBus, strategy: Exploding) -> StrategyRunner:
    runner = StrategyRunner(strategy, bus, symbols=("AAPL",), bar_seconds=60, max_failures=3)
    await runner.start()
    return runner


async def publish_each(bus: InMemoryEventBus, events: list[Bar]) -> None:
    for event in events:
        await bus.publish(event)
        await bus.drain()


def published_by_strategy(bus: InMemoryEventBus) -> list[Event]:
    return [event for event in bus.published if isinstance(event, TradeSignal | StrategyDisabled)]


async def test_a_raising_strategy_is_logged_with_the_event_and_the_runner_goes_on(
    bus: InMemoryEventBus,
) -> None:
    """A bar that makes the strategy raise is logged; the next bar still gives its signal."""
    await started_runner(bus, Exploding(StrategyParams(), quantity=10, signal_ttl=TTL))
    bars = bars_from_closes([13, 10])
    with capture_logs() as logs:
        await publish_each(bus, bars)
    assert published_by_strategy(bus) == [expected_signal("exploding", bars[1], "BUY", "always")]
    failures = [entry for entry in logs if entry["event"] == "strategy_failed"]
    assert failures == [
        {
            "event": "strategy_failed",
            "strategy": "exploding",
            "event_type": "Bar",
            "event_data": repr(bars[0]),
            "consecutive_failures": 1,
            "exc_info": True,
            "log_level": "error",
        }
    ]


async def test_n_failures_in_a_row_disable_the_strategy_and_say_so(bus: InMemoryEventBus) -> None:
    """Three raises in a row (max_failures 3): StrategyDisabled, then no more signals."""
    runner = await started_runner(bus, Exploding(StrategyParams(), quantity=10, signal_ttl=TTL))
    bars = bars_from_closes([13, 10, 13, 13, 13, 10])
    await publish_each(bus, bars)
    disabled = published_by_strategy(bus)[-1]
    assert published_by_strategy(bus) == [
        expected_signal("exploding", bars[1], "BUY", "always"),
        StrategyDisabled(
            id=disabled.id,
            ts=disabled.ts,
            strategy="exploding",
            consecutive_failures=3,
            last_error="RuntimeError: boom at 13.0",
        ),
    ]
    assert bus.journal[-2][0] == "trading:system:strategy"
    assert runner.disabled


async def test_bars_of_another_size_are_not_fed_to_the_strategy(bus: InMemoryEventBus) -> None:
    """Only bars of STRATEGY_BAR_SECONDS reach the strategy (5-second bars are ignored)."""
    await started_runner(bus, Exploding(StrategyParams(), quantity=10, signal_ttl=TTL))
    await publish_each(bus, bars_from_closes([10], seconds=5))
    assert published_by_strategy(bus) == []


async def test_ticks_are_fed_only_to_a_strategy_that_wants_them(bus: InMemoryEventBus) -> None:
    """A strategy with wants_ticks gets the ticks of its symbols, not of others."""
    strategy = TickCounter()
    await started_runner(bus, strategy)
    apple, microsoft = Tick(symbol="AAPL", last=101.0), Tick(symbol="MSFT", last=400.0)
    for tick in (apple, microsoft):
        await bus.publish(tick)
    await bus.drain()
    assert strategy.ticks == [apple]


async def test_ticks_of_all_symbols_reach_the_strategy_in_arrival_order(
    bus: InMemoryEventBus,
) -> None:
    """One subscription per kind for all the runner's symbols: ticks interleaved across symbols
    reach the strategy as they were published (a queue per symbol would group them by symbol)."""
    strategy = TickCounter()
    runner = StrategyRunner(
        strategy, bus, symbols=("AAPL", "MSFT", "IBM"), bar_seconds=60, max_failures=3
    )
    await runner.start()
    ticks = [
        Tick(symbol=symbol, last=100.0 + n)
        for n, symbol in enumerate(["AAPL", "MSFT", "AAPL", "IBM", "MSFT", "TSLA"])
    ]
    for tick in ticks:
        await bus.publish(tick)
    await bus.drain()
    assert strategy.ticks == ticks[:5]


async def test_a_stopped_runner_feeds_nothing(bus: InMemoryEventBus) -> None:
    """After stop(), bars no longer reach the strategy."""
    runner = await started_runner(bus, Exploding(StrategyParams(), quantity=10, signal_ttl=TTL))
    await runner.stop()
    await publish_each(bus, bars_from_closes([10]))
    assert published_by_strategy(bus) == []
