"""Order matching and book-keeping: orders, executions, positions and cash; no I/O."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ibsim.config import SimConfig
from ibsim.market import Instrument

SUPPORTED_ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT"})
ACTIVE_STATUSES = frozenset({"PreSubmitted", "Submitted"})
EXECUTION_EXCHANGE = "ISLAND"


@dataclass(slots=True)
class SimOrder:
    """An order as the simulator holds it; `status` follows TWS's status words."""

    order_id: int
    client_id: int
    perm_id: int
    account: str
    symbol: str
    action: str
    total_quantity: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    average_fill_price: float = 0.0
    last_fill_price: float = 0.0
    stop_triggered: bool = False
    completed_time: str = ""

    @property
    def remaining(self) -> float:
        return max(0.0, self.total_quantity - self.filled)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_buy(self) -> bool:
        return self.action == "BUY"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReceived:
    """A placeOrder as it arrived, timestamped for latency measurements: `received_perf_ns`
    (perf_counter_ns) and `received_time_ns` (time_ns) are when the read that completed it
    came off the socket."""

    order_id: int
    client_id: int
    order_ref: str
    symbol: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    received_perf_ns: int
    received_time_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """One fill of an order, as sent in execDetails and commissionReport."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    account: str
    symbol: str
    side: str
    shares: float
    price: float
    cumulative_quantity: float
    average_price: float
    order_ref: str
    commission: float
    realized_pnl: float | None
    epoch: float
    time_ns: int


@dataclass(slots=True)
class Position:
    """A holding: signed quantity, average cost per share (commissions included), realized PnL."""

    quantity: float = 0.0
    average_cost: float = 0.0
    realized_pnl: float = 0.0

    def apply(self, signed_shares: float, price: float, commission: float) -> float | None:
        """Book a fill; returns the realized PnL if it closed shares, else None."""
        if self.quantity == 0 or (self.quantity > 0) == (signed_shares > 0):
            cost = self.quantity * self.average_cost + signed_shares * price
            self.quantity += signed_shares
            self.average_cost = (cost + commission * _sign(signed_shares)) / self.quantity
            return None
        closed = min(abs(signed_shares), abs(self.quantity))
        realized = (price - self.average_cost) * closed * _sign(self.quantity) - commission
        self.realized_pnl += realized
        remaining = signed_shares + closed * _sign(self.quantity)
        self.quantity += signed_shares
        if self.quantity == 0:
            self.average_cost = 0.0
        elif remaining:
            self.average_cost = price
        return realized


@dataclass(slots=True)
class Account:
    """Cash and positions of one managed account."""

    cash: float
    positions: dict[str, Position] = field(default_factory=dict)  # symbol -> Position


class Broker:
    """The simulator's memory of orders, executions and accounts for as long as it runs."""

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self.orders: dict[tuple[int, int], SimOrder] = {}  # (clientId, orderId) -> order
        self._working: dict[tuple[int, int], SimOrder] = {}  # the active subset of `orders`
        self.executions: list[Execution] = []  # every execution since start
        # what IB still reports after its daily restart: this trading day's orders (and those
        # still working from before), and the executions from `_day_start` on
        self._today: dict[tuple[int, int], SimOrder] = {}
        self._day_start = 0
        self.accounts = {name: Account(config.initial_cash) for name in config.accounts}
        self.next_order_id = config.first_order_id
        self._next_perm_id = 1_000_001
        self._execution_count = 0
        # IB never reuses an execution id: a daemon keeps the ids it has published (in Redis) and
        # storage keys fills by them, so a simulator started again must not repeat its last run's
        self._exec_id_prefix = os.urandom(4).hex()

    def start_day(self) -> None:
        """A new trading day: what finished and executed before is no longer reported (it
        stays in `orders` and `executions`, the simulator's own history)."""
        self._today = dict(self._working)
        self._day_start = len(self.executions)

    def todays_finished_orders(self) -> list[SimOrder]:
        return [order for order in self._today.values() if not order.is_active]

    def todays_executions(self) -> list[Execution]:
        return self.executions[self._day_start :]

    def new_perm_id(self) -> int:
        self._next_perm_id += 1
        return self._next_perm_id - 1

    def add(self, order: SimOrder) -> None:
        key = (order.client_id, order.order_id)
        self.orders[key] = self._working[key] = self._today[key] = order
        self.next_order_id = max(self.next_order_id, order.order_id + 1)

    def cancel(self, order: SimOrder) -> None:
        order.status = "Cancelled"
        self._working.pop((order.client_id, order.order_id), None)

    def active_orders(self, symbol: str | None = None) -> list[SimOrder]:
        """Working orders (all, or of one symbol), without scanning finished ones."""
        return [o for o in self._working.values() if symbol is None or o.symbol == symbol]

    def fill_price(self, order: SimOrder, instrument: Instrument) -> float | None:
        """The price `order` would fill at now, or None if it is not marketable."""
        if order.order_type.startswith("STP") and not order.stop_triggered:
            if not _stop_reached(order, instrument.last):
                return None
            order.stop_triggered = True
        touch = instrument.ask if order.is_buy else instrument.bid
        if order.order_type in ("MKT", "STP"):
            return touch
        limit = order.limit_price
        if limit is None:
            return None
        marketable = touch <= limit if order.is_buy else touch >= limit
        return touch if marketable else None

    def execute(self, order: SimOrder, price: float, epoch: float) -> Execution:
        """Fill up to `max_fill_size` shares of `order` at `price` and book it."""
        shares = min(order.remaining, self._config.max_fill_size)
        commission = self.commission(shares, price)
        signed = shares if order.is_buy else -shares
        position = self.accounts[order.account].positions.setdefault(order.symbol, Position())
        realized = position.apply(signed, price, commission)
        self.accounts[order.account].cash -= signed * price + commission
        cost_so_far = order.average_fill_price * order.filled + price * shares
        order.filled += shares
        order.average_fill_price = round(cost_so_far / order.filled, 6)
        order.last_fill_price = price
        if order.remaining == 0:
            order.status = "Filled"
            self._working.pop((order.client_id, order.order_id), None)
        execution = self._record(order, shares, price, commission, realized, epoch)
        self.executions.append(execution)
        return execution

    def commission(self, shares: float, price: float) -> float:
        """IBKR fixed pricing: per share, with a minimum, at most 1% of the trade value."""
        fee = max(self._config.min_commission, shares * self._config.commission_per_share)
        return round(min(fee, shares * price * 0.01), 4)

    def _record(
        self,
        order: SimOrder,
        shares: float,
        price: float,
        commission: float,
        realized: float | None,
        epoch: float,
    ) -> Execution:
        self._execution_count += 1
        return Execution(
            exec_id=f"{self._exec_id_prefix}.{order.perm_id:08x}.{self._execution_count:02d}.01",
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            account=order.account,
            symbol=order.symbol,
            side="BOT" if order.is_buy else "SLD",
            shares=shares,
            price=price,
            cumulative_quantity=order.filled,
            average_price=order.average_fill_price,
            order_ref=order.order_ref,
            commission=commission,
            realized_pnl=realized,
            epoch=epoch,
            time_ns=time.time_ns(),
        )


def _stop_reached(order: SimOrder, last: float) -> bool:
    stop = order.aux_price
    if stop is None:
        return False
    return last >= stop if order.is_buy else last <= stop


def _sign(value: float) -> float:
    return 1.0 if value > 0 else -1.0
