"""The two built-in strategies: exact signals at exact bars on hand-made price series."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from strategy.backtest import run_backtest
from strategy.mean_reversion import MeanReversion, MeanReversionParams
from strategy.sma_crossover import SmaCrossover, SmaCrossoverParams
from tests.strategy.bars import TTL, bars_from_closes, expected_signal

# fast 2, slow 3: a cross up at 4, a touch (fast == slow) at 5 and a second cross up at 6 while
# long, a cross down at 9, a cross up at 11.
SMA_CLOSES = [10, 10, 10, 10, 13, 7, 20, 20, 20, 15, 14, 18]

# window 3, entry at z <= -1, exit at z >= 0
REVERSION_CLOSES = [10, 10, 10, 7, 5, 8, 8, 4, 4, 6]


def sma(fast: int = 2, slow: int = 3) -> SmaCrossover:
    params = SmaCrossoverParams(fast_window=fast, slow_window=slow)
    return SmaCrossover(params, quantity=10, signal_ttl=TTL)


def reversion() -> MeanReversion:
    params = MeanReversionParams(window=3, entry_z=1.0, exit_z=0.0)
    return MeanReversion(params, quantity=10, signal_ttl=TTL)


def test_sma_crossover_buys_on_cross_up_sells_on_cross_down_and_never_buys_twice() -> None:
    """BUY at the cross up, nothing on the second cross up while long, SELL at the cross down."""
    bars = bars_from_closes(SMA_CLOSES)
    signals = run_backtest(sma(), bars).signals
    assert signals == [
        expected_signal(
            "sma_crossover", bars[4], "BUY", "fast SMA 11.5000 crossed above slow SMA 11.0000"
        ),
        expected_signal(
            "sma_crossover", bars[9], "SELL", "fast SMA 17.5000 crossed below slow SMA 18.3333"
        ),
        expected_signal(
            "sma_crossover", bars[11], "BUY", "fast SMA 16.0000 crossed above slow SMA 15.6667"
        ),
    ]


def test_sma_crossover_sends_nothing_on_a_cross_down_while_flat() -> None:
    """A cross below with no position is not a signal (long only, no shorting)."""
    assert run_backtest(sma(), bars_from_closes([10, 10, 10, 10, 7, 6, 5])).signals == []


def test_sma_crossover_waits_for_slow_window_plus_one_bars() -> None:
    """A rise within the first slow_window bars is no cross: there is no earlier average yet."""
    assert run_backtest(sma(), bars_from_closes([10, 10, 13])).signals == []


def test_sma_crossover_keeps_each_symbol_apart() -> None:
    """Bars of two symbols interleaved give each symbol its own signals."""
    apple = bars_from_closes(SMA_CLOSES, symbol="AAPL")
    microsoft = bars_from_closes([10, 10, 10, 10, 13], symbol="MSFT")
    interleaved = [bar for pair in zip(apple, microsoft, strict=False) for bar in pair] + apple[5:]
    signals = run_backtest(sma(), interleaved).signals
    assert [(s.symbol, s.action, s.ts) for s in signals] == [
        ("AAPL", "BUY", apple[4].ts),
        ("MSFT", "BUY", microsoft[4].ts),
        ("AAPL", "SELL", apple[9].ts),
        ("AAPL", "BUY", apple[11].ts),
    ]


def test_mean_reversion_enters_below_minus_entry_z_and_exits_back_at_exit_z() -> None:
    """BUY at z <= -1, no second BUY at z <= -1 while long, SELL at z >= 0; twice over."""
    bars = bars_from_closes(REVERSION_CLOSES)
    signals = run_backtest(reversion(), bars).signals
    assert signals == [
        expected_signal("mean_reversion", bars[3], "BUY", "z-score -1.414 at or below -1"),
        expected_signal("mean_reversion", bars[5], "SELL", "z-score 1.069 back at or above 0"),
        expected_signal("mean_reversion", bars[7], "BUY", "z-score -1.414 at or below -1"),
        expected_signal("mean_reversion", bars[9], "SELL", "z-score 1.414 back at or above 0"),
    ]


def test_mean_reversion_sends_nothing_on_flat_prices() -> None:
    """No spread, no z-score, no signal."""
    assert run_backtest(reversion(), bars_from_closes([10.0] * 10)).signals == []


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        (SmaCrossoverParams, {"fast_window": 5, "slow_window": 5}, "fast_window must be smaller"),
        (SmaCrossoverParams, {"fast_window": 0}, "greater than or equal to 1"),
        (MeanReversionParams, {"entry_z": 1, "exit_z": -1}, "exit_z must be above -entry_z"),
        (MeanReversionParams, {"windw": 5}, "Extra inputs are not permitted"),
    ],
)
def test_params_models_refuse_bad_parameters(
    model: type[SmaCrossoverParams | MeanReversionParams], params: dict[str, float], message: str
) -> None:
    """Each strategy's own params model refuses what would make it meaningless."""
    with pytest.raises(ValidationError, match=message):
        model.model_validate(params)
