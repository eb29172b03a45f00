"""The strategy module's published event: `TradeSignal`, an intent to trade."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from event_bus import Event, UtcDatetime, register


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TradeSignal(Event):
    """An intent to trade, on `trading:signal:{SYMBOL}`.

    Its `id` is the client order id (sent to IB as `orderRef`): execution never trades one id
    twice. Strategies derive it from strategy, symbol and the bar that caused it; a manual signal
    published without an id gets one derived from its content (`Event.content_addressed`).
    Execution ignores a signal after `expires_at`.
    """

    kind = "signal"
    content_addressed = True

    symbol: str
    action: Literal["BUY", "SELL"]
    quantity: float
    order_type: Literal["MKT", "LMT"] = "MKT"
    limit_price: float | None = None
    strategy: str = "manual"
    expires_at: UtcDatetime | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"quantity must be positive, got {self.quantity!r}")
        if self.order_type == "LMT" and self.limit_price is None:
            raise ValueError("a LMT signal needs a limit_price")
        if self.limit_price is not None and not (
            math.isfinite(self.limit_price) and self.limit_price > 0
        ):
            raise ValueError(f"limit_price must be a positive price, got {self.limit_price!r}")


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyDisabled(Event):
    """The runner stopped feeding a strategy that failed too often, on `trading:system:strategy`.

    No signal comes from that strategy until the daemon is restarted.
    """

    kind = "system:strategy"

    strategy: str
    consecutive_failures: int
    last_error: str
