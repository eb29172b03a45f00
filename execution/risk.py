"""Pre-trade risk: pure, table-driven checks of one signal against the limits and the book."""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from config import ExecutionSettings
from strategy.model import TradeSignal

SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9.\- ]{0,20}")

# The furthest ahead a signal may expire (its `expires_at`, else its `ts` plus the age limit).
# What says a signal id was decided lives in Redis for seven days (`DECISION_TTL_SECONDS`) and
# the broker reports only today's orders: a copy of a signal still valid after that would be
# decided again, a second order. A `ts` a year ahead (a clock or a typo) would do the same.
LONGEST_SIGNAL_LIFE = timedelta(days=6)


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskLimits:
    """Every limit, from `ExecutionSettings`; `allowed_symbols` empty means any symbol."""

    allowed_symbols: frozenset[str]
    max_order_quantity: float
    max_order_notional: float
    max_position_per_symbol: float
    max_gross_exposure: float
    daily_loss_limit: float
    max_orders_per_second: int
    max_orders_per_minute: int
    signal_max_age: timedelta

    @classmethod
    def from_settings(cls, settings: ExecutionSettings) -> RiskLimits:
        allowed = frozenset() if "*" in settings.allowed_symbols else settings.allowed_symbols
        return cls(
            allowed_symbols=frozenset(allowed),
            max_order_quantity=settings.max_order_quantity,
            max_order_notional=settings.max_order_notional,
            max_position_per_symbol=settings.max_position_per_symbol,
            max_gross_exposure=settings.max_gross_exposure,
            daily_loss_limit=settings.daily_loss_limit,
            max_orders_per_second=settings.max_orders_per_second,
            max_orders_per_minute=settings.max_orders_per_minute,
            signal_max_age=timedelta(seconds=settings.signal_max_age_seconds),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Book:
    """What risk needs to know about the account at the moment a signal is checked.

    `positions`: symbol -> signed quantity; `marks`: symbol -> last known price;
    `open_buys` / `open_sells`: symbol -> unfilled shares of working orders (all positive);
    `gross_exposure`: sum of |position| x price plus working orders' notional, all symbols.
    """

    positions: Mapping[str, float] = field(default_factory=dict)
    marks: Mapping[str, float] = field(default_factory=dict)
    open_buys: Mapping[str, float] = field(default_factory=dict)
    open_sells: Mapping[str, float] = field(default_factory=dict)
    gross_exposure: float = 0.0
    daily_pnl: float = 0.0
    orders_last_second: int = 0
    orders_last_minute: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a signal is refused: the rule's name and a sentence for the operator."""

    rule: str
    reason: str


Rule = Callable[[TradeSignal, Book, RiskLimits], str | None]


def order_price(signal: TradeSignal, book: Book) -> float | None:
    """The price risk values an order at: its limit price, else the symbol's last mark."""
    if signal.limit_price is not None:
        return signal.limit_price
    return book.marks.get(signal.symbol)


def _signed(signal: TradeSignal) -> float:
    return signal.quantity if signal.action == "BUY" else -signal.quantity


def _allowed_symbol(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    if limits.allowed_symbols and signal.symbol not in limits.allowed_symbols:
        return f"{signal.symbol} is not in ALLOWED_SYMBOLS"
    return None


def _order_quantity(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    if signal.quantity > limits.max_order_quantity:
        return f"quantity {signal.quantity:g} > MAX_ORDER_QUANTITY {limits.max_order_quantity:g}"
    return None


def _price_known(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    if order_price(signal, book) is None:
        return f"no price known for {signal.symbol} (no tick yet, no limit price)"
    return None


def _order_notional(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    notional = signal.quantity * (order_price(signal, book) or 0.0)
    if notional > limits.max_order_notional:
        return f"notional {notional:.2f} > MAX_ORDER_NOTIONAL {limits.max_order_notional:g}"
    return None


def _position(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    """Worst case: every working order on this side fills too. Reducing a position is allowed."""
    current = book.positions.get(signal.symbol, 0.0)
    working = book.open_buys if signal.action == "BUY" else book.open_sells
    same_side = working.get(signal.symbol, 0.0) * (1 if signal.action == "BUY" else -1)
    projected = current + same_side + _signed(signal)
    if abs(projected) > limits.max_position_per_symbol and abs(projected) > abs(current):
        return (
            f"position in {signal.symbol} would reach {projected:g} "
            f"(limit {limits.max_position_per_symbol:g})"
        )
    return None


def _gross_exposure(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    price = order_price(signal, book) or 0.0
    current = book.positions.get(signal.symbol, 0.0)
    change = (abs(current + _signed(signal)) - abs(current)) * price
    projected = book.gross_exposure + change
    if projected > limits.max_gross_exposure and change > 0:
        return f"gross exposure would reach {projected:.2f} (limit {limits.max_gross_exposure:g})"
    return None


def _daily_loss(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    if loss_limit_hit(book.daily_pnl, limits):
        return (
            f"daily P&L {book.daily_pnl:.2f} has hit DAILY_LOSS_LIMIT {limits.daily_loss_limit:g}"
        )
    return None


def _rate_per_second(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    if book.orders_last_second >= limits.max_orders_per_second:
        return f"{book.orders_last_second} orders in the last second (limit)"
    return None


def _rate_per_minute(signal: TradeSignal, book: Book, limits: RiskLimits) -> str | None:
    if book.orders_last_minute >= limits.max_orders_per_minute:
        return f"{book.orders_last_minute} orders in the last minute (limit)"
    return None


# rule name -> check, in the order they are tried; the first refusal wins
RULES: tuple[tuple[str, Rule], ...] = (
    ("allowed_symbols", _allowed_symbol),
    ("max_order_quantity", _order_quantity),
    ("price_unknown", _price_known),
    ("max_order_notional", _order_notional),
    ("max_position", _position),
    ("max_gross_exposure", _gross_exposure),
    ("daily_loss_limit", _daily_loss),
    ("rate_per_second", _rate_per_second),
    ("rate_per_minute", _rate_per_minute),
)


def check_risk(signal: TradeSignal, book: Book, limits: RiskLimits) -> Verdict | None:
    """The first rule that refuses `signal`, or None when every limit allows it."""
    for rule, check in RULES:
        reason = check(signal, book, limits)
        if reason is not None:
            return Verdict(rule, reason)
    return None


def loss_limit_hit(daily_pnl: float, limits: RiskLimits) -> bool:
    return daily_pnl <= -limits.daily_loss_limit


def signal_expiry(signal: TradeSignal, max_age: timedelta) -> datetime:
    """When a signal stops being valid: its `expires_at`, else its `ts` plus the age limit."""
    return signal.expires_at if signal.expires_at is not None else signal.ts + max_age


def check_signal(signal: TradeSignal, now: datetime, limits: RiskLimits) -> Verdict | None:
    """Checks that need no book: a well-formed, unexpired intent."""
    if not SYMBOL_PATTERN.fullmatch(signal.symbol):
        return Verdict("invalid", f"not a symbol: {signal.symbol!r}")
    if not float(signal.quantity).is_integer():
        return Verdict("invalid", f"quantity must be whole shares, got {signal.quantity:g}")
    if signal.order_type == "MKT" and signal.limit_price is not None:
        return Verdict("invalid", "a MKT signal must not carry a limit_price")
    if signal.expires_at is not None and signal.expires_at <= now:
        return Verdict("expired", f"expired at {signal.expires_at.isoformat()}")
    expires = signal_expiry(signal, limits.signal_max_age)
    if expires - now > LONGEST_SIGNAL_LIFE:
        return Verdict(
            "invalid",
            f"valid until {expires.isoformat()}, more than {LONGEST_SIGNAL_LIFE.days} days "
            "ahead: a copy could outlive the record that it was decided",
        )
    if signal.expires_at is None and now - signal.ts > limits.signal_max_age:
        age = (now - signal.ts).total_seconds()
        return Verdict("expired", f"{age:.0f} s old, no expires_at (limit {limits.signal_max_age})")
    return None


class OrderRate:
    """When orders were sent, to count those of the last second and minute (time passed in,
    never going back). Each window keeps only its own orders, so a count costs O(1) however
    many orders the minute holds: it is taken on every signal, before the claim."""

    def __init__(self) -> None:
        self._second: deque[float] = deque()  # monotonic seconds, oldest first
        self._minute: deque[float] = deque()

    def record(self, now: float) -> None:
        self._expire(now)
        self._second.append(now)
        self._minute.append(now)

    def counts(self, now: float) -> tuple[int, int]:
        """(orders in the last second, orders in the last minute)."""
        self._expire(now)
        return len(self._second), len(self._minute)

    def _expire(self, now: float) -> None:
        for window, seconds in ((self._second, 1.0), (self._minute, 60.0)):
            while window and now - window[0] >= seconds:
                window.popleft()


class RealizedPnl:
    """IB's realized P&L per execution, summed per UTC day for the daily loss limit.

    An execution reported again (a corrected commission report) replaces its earlier figure.
    Days before yesterday are forgotten once a later day's execution comes: the limit looks at
    today only, and a daemon that runs for weeks would otherwise keep every execution it saw.
    """

    def __init__(self) -> None:
        self._by_execution: dict[str, tuple[date, float]] = {}  # execution id -> (day, P&L)
        # day -> sum of that day's `_by_execution`, kept as it changes: the loss limit reads
        # today's total on every tick of a held symbol, and must not add up the day each time
        self._by_day: dict[date, float] = {}

    def __len__(self) -> int:
        return len(self._by_execution)

    def on(self, day: date) -> float:
        return self._by_day.get(day, 0.0)

    def record(self, execution_id: str, day: date, pnl: float) -> None:
        earlier = self._by_execution.get(execution_id)
        self._by_execution[execution_id] = (day, pnl)
        if earlier is None:
            self._by_day[day] = self._by_day.get(day, 0.0) + pnl
        else:  # a corrected execution: add its day(s) up again
            for changed in {earlier[0], day}:
                executions = self._by_execution.values()
                self._by_day[changed] = sum(p for d, p in executions if d == changed)
        yesterday = day - timedelta(days=1)
        if day == max(self._by_day) and min(self._by_day) < yesterday:
            self._forget_before(yesterday)

    def _forget_before(self, day: date) -> None:
        executions = self._by_execution.items()
        self._by_execution = {key: value for key, value in executions if value[0] >= day}
        self._by_day = {kept: total for kept, total in self._by_day.items() if kept >= day}


def unrealized_pnl(quantity: float, average_cost: float, mark: float | None) -> float:
    """Unrealized P&L of a position at `mark` (zero when no mark is known)."""
    if mark is None or not math.isfinite(mark):
        return 0.0
    return quantity * (mark - average_cost)
