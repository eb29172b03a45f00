"""What the operator commands and replay ask of storage: positions, P&L, orders, fills, bars.

Every function takes a SQLAlchemy URL or an engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, RowMapping, Select, inspect, select, union

from execution.model import Fill, OrderUpdate, RiskRejection
from market_data.model import Bar
from storage.engine import engine_for
from storage.models import BarRow, FillRow, OrderRow, SystemEventRow
from storage.rows import bar_from_row, fill_from_row, order_from_latest_row, system_event_from_row

OPEN_STATUSES = ("pending_submit", "submitted", "partially_filled")


@dataclass(frozen=True, slots=True)
class Position:
    """One symbol's position from its fills, by the average-cost method.

    `quantity` is signed (negative when short); `average_cost` is the average price of the open
    quantity (0 when flat); `realized_pnl` is the profit of the closed quantity before
    commissions, which are summed apart in `commissions`. Decimal, from the fills' decimal prices.
    """

    symbol: str
    quantity: Decimal
    average_cost: Decimal
    realized_pnl: Decimal
    commissions: Decimal


def positions(url_or_engine: str | Engine, *, account: str | None = None) -> list[Position]:
    """Every symbol ever filled (flat ones too, for their realized P&L), sorted by symbol."""
    query = select(FillRow).order_by(FillRow.executed_at, FillRow.execution_id)
    if account is not None:
        query = query.where(FillRow.account == account)
    fills = [fill_from_row(row) for row in _rows(url_or_engine, query)]
    return positions_from_fills(fills)


def positions_from_fills(fills: Iterable[Fill]) -> list[Position]:
    """Average-cost positions of fills taken in the order given."""
    book: dict[str, Position] = {}
    for fill in fills:
        flat = Position(fill.symbol, Decimal(0), Decimal(0), Decimal(0), Decimal(0))
        book[fill.symbol] = apply_fill(book.get(fill.symbol, flat), fill)
    return [book[symbol] for symbol in sorted(book)]


def apply_fill(position: Position, fill: Fill) -> Position:
    """The position after one fill: adding to it moves the average cost; reducing it realizes
    (price - average cost) per unit closed; going through zero opens the rest at the fill price.
    """
    price, size = _decimal(fill.price), _decimal(fill.quantity)
    signed = size if fill.side == "BUY" else -size
    held, cost = position.quantity, position.average_cost
    closing = min(abs(signed), abs(held)) if held * signed < 0 else Decimal(0)
    direction = 1 if held > 0 else -1
    realized = position.realized_pnl + closing * (price - cost) * direction
    quantity = held + signed
    if quantity == 0:
        cost = Decimal(0)
    elif held == 0 or held * quantity < 0:  # opened, or reversed through zero
        cost = price
    elif closing == 0:  # added to the same side
        cost = (held * cost + signed * price) / quantity
    commissions = position.commissions + _decimal(fill.commission or 0.0)
    return Position(position.symbol, quantity, cost, realized, commissions)


def realized_pnl(url_or_engine: str | Engine, *, account: str | None = None) -> Decimal:
    """Realized P&L of every symbol, before commissions (average-cost method)."""
    return sum((p.realized_pnl for p in positions(url_or_engine, account=account)), Decimal(0))


def todays_orders(url_or_engine: str | Engine, *, now: datetime | None = None) -> list[OrderUpdate]:
    """Orders created or changed since midnight UTC, as their latest update, oldest first."""
    since = _midnight_utc(now)
    query = select(OrderRow).where(OrderRow.updated_at >= since).order_by(OrderRow.created_at)
    return [order_from_latest_row(row) for row in _rows(url_or_engine, query)]


def open_orders(url_or_engine: str | Engine) -> list[OrderUpdate]:
    """Orders not yet filled, cancelled or rejected, as their latest update, oldest first."""
    query = select(OrderRow).where(OrderRow.status.in_(OPEN_STATUSES)).order_by(OrderRow.created_at)
    return [order_from_latest_row(row) for row in _rows(url_or_engine, query)]


def risk_rejections(url_or_engine: str | Engine, *, rule: str | None = None) -> list[RiskRejection]:
    """Signals execution refused (all, or by `rule` only), oldest first."""
    query = select(SystemEventRow).where(SystemEventRow.type == RiskRejection.__name__)
    events = map(system_event_from_row, _rows(url_or_engine, query.order_by(SystemEventRow.ts)))
    return [e for e in events if isinstance(e, RiskRejection) and rule in (None, e.rule)]


def todays_fills(url_or_engine: str | Engine, *, now: datetime | None = None) -> list[Fill]:
    """Fills executed since midnight UTC, in execution order."""
    query = (
        select(FillRow)
        .where(FillRow.executed_at >= _midnight_utc(now))
        .order_by(FillRow.executed_at, FillRow.execution_id)
    )
    return [fill_from_row(row) for row in _rows(url_or_engine, query)]


def stored_accounts(url_or_engine: str | Engine) -> set[str]:
    """The accounts of every order and fill stored (none before storage made its tables)."""
    with engine_for(url_or_engine) as engine, engine.connect() as connection:
        inspector = inspect(connection)
        tables = [t for t in (OrderRow, FillRow) if inspector.has_table(t.__tablename__)]
        if not tables:
            return set()
        query = union(*(select(table.account).distinct() for table in tables))
        return set(connection.execute(query).scalars())


def load_bars(
    url_or_engine: str | Engine,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    seconds: int | None = None,
) -> list[Bar]:
    """Stored bars of `symbol` starting in [start, end), of `seconds` if given, oldest first."""
    query = select(BarRow).where(BarRow.symbol == symbol)
    if start is not None:
        query = query.where(BarRow.start >= start)
    if end is not None:
        query = query.where(BarRow.start < end)
    if seconds is not None:
        query = query.where(BarRow.seconds == seconds)
    return [bar_from_row(row) for row in _rows(url_or_engine, query.order_by(BarRow.start))]


def _rows(url_or_engine: str | Engine, query: Select[Any]) -> list[RowMapping]:
    """The rows of a query, as mappings of column name to value."""
    with engine_for(url_or_engine) as engine, engine.connect() as connection:
        return list(connection.execute(query).mappings())


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _midnight_utc(now: datetime | None) -> datetime:
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return datetime.combine(today, time(), tzinfo=UTC)
