"""Signal ids and a strategy's view of its position: fills, signals in flight, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from execution.model import Fill
from strategy.backtest import run_backtest
from strategy.base import signal_id
from strategy.model import TradeSignal
from strategy.sma_crossover import SmaCrossover, SmaCrossoverParams
from tests.strategy.bars import TTL, bars_from_closes

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)

# fast 2, slow 3: cross up at 4, cross up again at 6 (after a touch at 5), cross down at 9.
CLOSES = [10, 10, 10, 10, 13, 7, 20, 20, 20, 15]


def sma() -> SmaCrossover:
    params = SmaCrossoverParams(fast_window=2, slow_window=3)
    return SmaCrossover(params, quantity=10, signal_ttl=TTL)


def fill_for(signal: TradeSignal, quantity: float, execution_id: str) -> Fill:
    return Fill(
        symbol=signal.symbol,
        execution_id=execution_id,
        signal_id=signal.id,
        side=signal.action,
        quantity=quantity,
        price=100.0,
        executed_at=signal.ts,
    )


def test_signal_id_is_a_pinned_function_of_strategy_symbol_bar_and_action() -> None:
    """Same cause, same id, across runs and versions; any part of the cause changes it."""
    made = signal_id("sma_crossover", "AAPL", START, 60, "BUY")
    assert made == "sma_crossover-aa0a20d19671deaf"
    variants = {
        signal_id("mean_reversion", "AAPL", START, 60, "BUY"),
        signal_id("sma_crossover", "MSFT", START, 60, "BUY"),
        signal_id("sma_crossover", "AAPL", START + timedelta(minutes=1), 60, "BUY"),
        signal_id("sma_crossover", "AAPL", START, 5, "BUY"),
        signal_id("sma_crossover", "AAPL", START, 60, "SELL"),
    }
    assert made not in variants and len(variants) == 5


def test_signal_id_does_not_depend_on_the_timezone_the_bar_start_is_written_in() -> None:
    """The same instant in another offset is the same bar."""
    elsewhere = START.astimezone(datetime.fromisoformat("2024-01-02T09:30:00-05:00").tzinfo)
    assert signal_id("s", "AAPL", elsewhere, 60, "BUY") == signal_id("s", "AAPL", START, 60, "BUY")


def test_two_strategy_objects_on_the_same_bars_send_identical_signals() -> None:
    """Replaying the same data yields the same signals, ids included."""
    bars = bars_from_closes(CLOSES)
    first, second = run_backtest(sma(), bars).signals, run_backtest(sma(), bars).signals
    assert first == second and len(first) == 2


def test_a_buy_in_flight_blocks_a_second_buy_and_counts_as_long_for_the_exit() -> None:
    """No fill yet, but the BUY has not expired: no second BUY, and the exit sells its size."""
    strategy = SmaCrossover(
        SmaCrossoverParams(fast_window=2, slow_window=3), quantity=10, signal_ttl=timedelta(hours=1)
    )
    signals = [s for bar in bars_from_closes(CLOSES) for s in strategy.on_bar(bar)]
    assert [(s.ts.minute, s.action, s.quantity) for s in signals] == [
        (35, "BUY", 10.0),
        (40, "SELL", 10.0),
    ]


def test_an_unfilled_buy_stops_counting_once_it_has_expired() -> None:
    """Execution ignores an expired signal, so the strategy is flat again after it."""
    bars = bars_from_closes(CLOSES)
    strategy = sma()
    sent = [(index, s.action) for index, bar in enumerate(bars) for s in strategy.on_bar(bar)]
    # Bar 4's BUY expired 30 s after its close: bar 6's cross up buys again; that one expires
    # too, so bar 9's cross down finds nothing to sell.
    assert sent == [(4, "BUY"), (6, "BUY")]


def test_a_filled_buy_makes_the_strategy_long_and_the_exit_sells_what_was_filled() -> None:
    """Partial fills add up; the SELL closes exactly the filled quantity."""
    bars = bars_from_closes(CLOSES)
    strategy = sma()
    signals: list[TradeSignal] = []
    for bar in bars:
        for signal in strategy.on_bar(bar):
            signals.append(signal)
            if signal.action == "BUY":
                strategy.on_fill(fill_for(signal, 4, "exec-1"))
                strategy.on_fill(fill_for(signal, 3, "exec-2"))
    assert [(s.action, s.quantity) for s in signals] == [("BUY", 10.0), ("SELL", 7.0)]


def test_a_fill_delivered_twice_is_counted_once() -> None:
    """Fills are unique by execution id, whatever the bus redelivers."""
    strategy = sma()
    [buy] = [s for bar in bars_from_closes(CLOSES[:5]) for s in strategy.on_bar(bar)]
    fill = fill_for(buy, 10, "exec-1")
    strategy.on_fill(fill)
    strategy.on_fill(fill)
    assert strategy.position("AAPL").quantity == 10.0


def test_fills_of_other_strategies_and_manual_orders_do_not_move_the_position() -> None:
    """A strategy counts only the fills of its own signals."""
    strategy = sma()
    manual = TradeSignal(id="manual-1", symbol="AAPL", action="BUY", quantity=5)
    strategy.on_fill(fill_for(manual, 5, "exec-9"))
    assert strategy.position("AAPL").quantity == 0.0
