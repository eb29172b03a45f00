"""Translation at the IB edge: signals to ib_async orders, ib_async trades and fills to events."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from ib_async import Contract, LimitOrder, MarketOrder, Order, Stock, Trade
from ib_async import Fill as IBFill

from execution.model import Fill, OrderStatus, OrderUpdate
from strategy.model import TradeSignal

# IB order status -> ours; None: no change worth an event (the order is still working as it was)
ORDER_STATUS_MAP: dict[str, OrderStatus | None] = {
    "PendingSubmit": "pending_submit",
    "ApiPending": "pending_submit",
    "PreSubmitted": "submitted",
    "Submitted": "submitted",
    "PendingCancel": None,
    "ValidationError": None,  # ib_async's word for an IB warning on a live order
    "ApiCancelled": "cancelled",
    "Cancelled": "cancelled",
    "Filled": "filled",
    "Inactive": "inactive",
}
# IB execution side -> ours
SIDE_MAP: dict[str, str] = {"BOT": "BUY", "SLD": "SELL", "BUY": "BUY", "SELL": "SELL"}
ORDER_CANCELLED_CODE = 202  # "Order Canceled - reason:": a cancel we asked for, not a rejection
UNSET_DOUBLE = 1.7976931348623157e308


def order_status(
    ib_status: str, filled: float, error_code: int, acknowledged: bool
) -> OrderStatus | None:
    """Our status for an IB status, refined: a working order with fills is partially filled;
    an order IB cancelled with an error before ever acknowledging it was rejected."""
    status = ORDER_STATUS_MAP.get(ib_status)
    if status == "submitted" and filled > 0:
        return "partially_filled"
    if status == "cancelled" and error_code not in (0, ORDER_CANCELLED_CODE) and not acknowledged:
        return "rejected"
    return status


def contract_for(symbol: str) -> Contract:
    """A US stock routed SMART in USD: the only instrument this daemon trades."""
    return Stock(symbol, "SMART", "USD")


def ib_order(signal: TradeSignal, account: str) -> Order:
    """The IB order for `signal`: its id travels as `orderRef`, a DAY order, transmitted."""
    options = {"orderRef": signal.id, "account": account, "tif": "DAY"}
    if signal.order_type == "LMT":
        assert signal.limit_price is not None
        return LimitOrder(signal.action, signal.quantity, signal.limit_price, **options)
    return MarketOrder(signal.action, signal.quantity, **options)


@dataclass(frozen=True, slots=True)
class TradeFacts:
    """What an ib_async `Trade` says at one moment, copied out of the mutable object."""

    symbol: str
    order_ref: str
    client_id: int
    order_id: int
    perm_id: int
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    account: str
    ib_status: str
    filled: float
    remaining: float
    avg_fill_price: float
    error_code: int
    error_message: str

    @property
    def key(self) -> tuple[int, int, int]:
        """(clientId, orderId, permId): unique per order at one broker."""
        return (self.client_id, self.order_id, self.perm_id)


def trade_facts(trade: Trade) -> TradeFacts:
    order, status = trade.order, trade.orderStatus
    last = trade.log[-1] if trade.log else None
    return TradeFacts(
        symbol=trade.contract.symbol,
        order_ref=order.orderRef or "",
        client_id=order.clientId,
        order_id=order.orderId,
        perm_id=order.permId or status.permId,
        action=order.action,
        quantity=float(order.totalQuantity),
        order_type=order.orderType,
        limit_price=_price(order.lmtPrice),
        account=order.account,
        ib_status=status.status,
        filled=_filled(trade),
        remaining=float(status.remaining),
        avg_fill_price=float(status.avgFillPrice),
        error_code=last.errorCode if last is not None else 0,
        error_message=last.message if last is not None and last.errorCode else "",
    )


def order_update(
    facts: TradeFacts, status: OrderStatus, *, external: bool, reason: str = ""
) -> OrderUpdate:
    return OrderUpdate(
        symbol=facts.symbol,
        signal_id=facts.order_ref,
        status=status,
        action="BUY" if facts.action == "BUY" else "SELL",
        quantity=facts.quantity,
        order_type=facts.order_type,
        limit_price=facts.limit_price,
        order_id=facts.order_id or None,
        perm_id=facts.perm_id or None,
        filled=facts.filled,
        remaining=facts.remaining,
        avg_fill_price=facts.avg_fill_price if facts.filled > 0 else None,
        account=facts.account,
        reason=reason or facts.error_message,
        external=external,
    )


@dataclass(frozen=True, slots=True)
class Commission:
    """A commissionReport, copied: the commission and the P&L IB says the fill realized."""

    commission: float
    currency: str
    realized_pnl: float | None


def commission_of(fill: IBFill) -> Commission | None:
    """The fill's commission, or None if IB has not reported it yet."""
    report = fill.commissionReport
    if not report.execId:
        return None
    realized = report.realizedPNL
    known = realized is not None and math.isfinite(realized) and realized != UNSET_DOUBLE
    return Commission(report.commission, report.currency, realized if known else None)


def fill_event(fill: IBFill, commission: Commission | None) -> Fill:
    """A `Fill` event; its id derives from the execution id, so a re-publication is recognisable."""
    execution = fill.execution
    return Fill(
        id=f"fill-{execution.execId}",
        symbol=fill.contract.symbol,
        execution_id=execution.execId,
        signal_id=execution.orderRef or "",
        side="BUY" if SIDE_MAP.get(execution.side) == "BUY" else "SELL",
        quantity=float(execution.shares),
        price=float(execution.price),
        executed_at=_utc(execution.time),
        order_id=execution.orderId or None,
        perm_id=execution.permId or None,
        commission=commission.commission if commission else None,
        commission_currency=commission.currency if commission else None,
        realized_pnl=commission.realized_pnl if commission else None,
        exchange=execution.exchange,
        account=execution.acctNumber,
    )


def with_commission(fill: Fill, commission: Commission) -> Fill:
    """The same fill again, now carrying its late commission (storage fills in the row)."""
    return replace(
        fill,
        id=f"fill-{fill.execution_id}-commission",
        commission=commission.commission,
        commission_currency=commission.currency,
        realized_pnl=commission.realized_pnl,
    )


def _filled(trade: Trade) -> float:
    """Shares filled: a completed order (from reqCompletedOrders) says it on the order only."""
    filled = float(trade.orderStatus.filled)
    on_order = float(trade.order.filledQuantity)
    if not filled and 0 < on_order < UNSET_DOUBLE:
        return on_order
    return filled


def _price(value: float | Decimal | None) -> float | None:
    if value is None:
        return None
    price = float(value)
    if not math.isfinite(price) or price == UNSET_DOUBLE or price <= 0:
        return None
    return price


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
