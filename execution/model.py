"""The execution module's published events: order updates, fills, risk rejections, halts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from event_bus import Event, UtcDatetime, register

OrderStatus = Literal[
    "pending_submit",
    "submitted",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "inactive",
]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate(Event):
    """Every change of an order's state, on `trading:order:{SYMBOL}`.

    `signal_id` is the order's client id (IB `orderRef`); `external` marks an order this daemon
    did not place (found at reconciliation and left alone).
    """

    kind = "order"

    symbol: str
    signal_id: str
    status: OrderStatus
    action: Literal["BUY", "SELL"]
    quantity: float
    order_type: str
    limit_price: float | None = None
    order_id: int | None = None
    perm_id: int | None = None
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float | None = None
    account: str = ""
    reason: str = ""
    external: bool = False


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Fill(Event):
    """One execution, on `trading:fill:{SYMBOL}`; unique by IB's `execution_id`."""

    kind = "fill"

    symbol: str
    execution_id: str
    signal_id: str
    side: Literal["BUY", "SELL"]
    quantity: float
    price: float
    executed_at: UtcDatetime
    order_id: int | None = None
    perm_id: int | None = None
    commission: float | None = None
    commission_currency: str | None = None
    realized_pnl: float | None = None
    exchange: str = ""
    account: str = ""


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class RiskRejection(Event):
    """A signal refused before it became an order, on `trading:system:risk`."""

    kind = "system:risk"

    signal_id: str
    symbol: str
    rule: str
    reason: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TradingHalted(Event):
    """The kill switch changed state, on `trading:system:halt`."""

    kind = "system:halt"

    halted: bool
    reason: str = ""
    issued_by: str = ""


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PositionSnapshot(Event):
    """The broker's positions in one account, on `trading:system:positions`.

    Published at every reconciliation and after fills; `positions` maps symbol -> signed
    quantity and `average_costs` symbol -> IB's average cost per share (commissions included).
    """

    kind = "system:positions"

    account: str
    positions: dict[str, float]
    average_costs: dict[str, float]
