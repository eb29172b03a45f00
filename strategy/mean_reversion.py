"""`mean_reversion`: long when the close is far below its recent mean, out when it is back."""

from __future__ import annotations

import statistics
from collections import deque
from datetime import timedelta
from typing import Self

from pydantic import Field, model_validator

from market_data.model import Bar
from strategy.base import Decision, LongOnlyBarStrategy, StrategyParams


class MeanReversionParams(StrategyParams):
    """`STRATEGY_PARAMS` for `mean_reversion`: the window in bars and two z-score thresholds."""

    window: int = Field(20, ge=2)
    entry_z: float = Field(2.0, gt=0)
    exit_z: float = 0.0

    @model_validator(mode="after")
    def _exit_above_entry(self) -> Self:
        if self.exit_z <= -self.entry_z:
            raise ValueError("exit_z must be above -entry_z, or a position would never open")
        return self


class MeanReversion(LongOnlyBarStrategy):
    """BUY when the close's z-score over the last `window` closes (this one included) falls to
    -entry_z or below; SELL when it climbs back to exit_z or above. Flat prices give no signal.
    """

    name = "mean_reversion"
    Params = MeanReversionParams

    def __init__(
        self, params: MeanReversionParams, *, quantity: float, signal_ttl: timedelta
    ) -> None:
        super().__init__(params, quantity=quantity, signal_ttl=signal_ttl)
        self.window = params.window
        self.entry_z = params.entry_z
        self.exit_z = params.exit_z
        self.closes: dict[str, deque[float]] = {}  # symbol -> last `window` closes

    def decide(self, bar: Bar, *, holding: bool) -> Decision | None:
        closes = self.closes.setdefault(bar.symbol, deque(maxlen=self.window))
        closes.append(bar.close)
        if len(closes) < self.window:
            return None
        mean = statistics.fmean(closes)
        deviation = statistics.pstdev(closes, mean)
        if deviation == 0:
            return None
        z = (bar.close - mean) / deviation
        if not holding and z <= -self.entry_z:
            return Decision("BUY", f"z-score {z:.3f} at or below -{self.entry_z:g}")
        if holding and z >= self.exit_z:
            return Decision("SELL", f"z-score {z:.3f} back at or above {self.exit_z:g}")
        return None
