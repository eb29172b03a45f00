"""`sma_crossover`: long when the fast moving average of closes crosses above the slow one."""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from typing import Self

from pydantic import Field, model_validator

from market_data.model import Bar
from strategy.base import Decision, LongOnlyBarStrategy, StrategyParams


class SmaCrossoverParams(StrategyParams):
    """`STRATEGY_PARAMS` for `sma_crossover`: window lengths in bars."""

    fast_window: int = Field(10, ge=1)
    slow_window: int = Field(30, ge=2)

    @model_validator(mode="after")
    def _fast_is_faster(self) -> Self:
        if self.fast_window >= self.slow_window:
            raise ValueError("fast_window must be smaller than slow_window")
        return self


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class SmaCrossover(LongOnlyBarStrategy):
    """BUY when the fast simple moving average of closes crosses above the slow one; SELL when it
    crosses back below. A cross needs slow_window + 1 closes: the averages now and one bar ago.
    """

    name = "sma_crossover"
    Params = SmaCrossoverParams

    def __init__(
        self, params: SmaCrossoverParams, *, quantity: float, signal_ttl: timedelta
    ) -> None:
        super().__init__(params, quantity=quantity, signal_ttl=signal_ttl)
        self.fast_window = params.fast_window
        self.slow_window = params.slow_window
        self.closes: dict[str, deque[float]] = {}  # symbol -> last slow_window + 1 closes

    def decide(self, bar: Bar, *, holding: bool) -> Decision | None:
        closes = self.closes.setdefault(bar.symbol, deque(maxlen=self.slow_window + 1))
        closes.append(bar.close)
        if len(closes) <= self.slow_window:
            return None
        now, before = self._averages(list(closes)[1:]), self._averages(list(closes)[:-1])
        fast, slow = now
        if before[0] <= before[1] and fast > slow:
            return Decision("BUY", f"fast SMA {fast:.4f} crossed above slow SMA {slow:.4f}")
        if before[0] >= before[1] and fast < slow:
            return Decision("SELL", f"fast SMA {fast:.4f} crossed below slow SMA {slow:.4f}")
        return None

    def _averages(self, closes: list[float]) -> tuple[float, float]:
        """(fast, slow) averages of the last closes in `closes`."""
        return _mean(closes[-self.fast_window :]), _mean(closes[-self.slow_window :])
