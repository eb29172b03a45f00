"""The tables: one row per event, keyed so that a redelivered event never makes a second row.

- `ticks`, `signals`, `order_history`, `system_events`: keyed by the event id.
- `bars`: by the event id, and unique by (symbol, start, seconds): a bar built twice is one bar.
- `fills`: by IB's execution id (a correction of the commission updates the row).
- `orders`: one row per order, its latest state, keyed by `order_key` (see `storage.rows`).
Prices, quantities and money are NUMERIC (`Decimal64`) except in `ticks`, where IB's floats are
kept as double precision: ticks are the bulk of the rows and nothing adds them up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import Decimal64, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TickRow(Base):
    __tablename__ = "ticks"
    __table_args__ = (Index(None, "symbol", "ts"),)

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String)
    bid: Mapped[float | None] = mapped_column(Float)
    ask: Mapped[float | None] = mapped_column(Float)
    last: Mapped[float | None] = mapped_column(Float)
    bid_size: Mapped[float | None] = mapped_column(Float)
    ask_size: Mapped[float | None] = mapped_column(Float)
    last_size: Mapped[float | None] = mapped_column(Float)
    volume: Mapped[float | None] = mapped_column(Float)
    exchange_time: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BarRow(Base):
    __tablename__ = "bars"
    # The unique key doubles as the index of `load_bars` (symbol, then a range of start).
    __table_args__ = (UniqueConstraint("symbol", "start", "seconds"),)

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String)
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    seconds: Mapped[int]
    open: Mapped[float] = mapped_column(Decimal64)
    high: Mapped[float] = mapped_column(Decimal64)
    low: Mapped[float] = mapped_column(Decimal64)
    close: Mapped[float] = mapped_column(Decimal64)
    volume: Mapped[float] = mapped_column(Decimal64)
    wap: Mapped[float | None] = mapped_column(Decimal64)
    trade_count: Mapped[int | None]


class SignalRow(Base):
    __tablename__ = "signals"
    __table_args__ = (Index(None, "symbol", "ts"), Index(None, "ts"))

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    quantity: Mapped[float] = mapped_column(Decimal64)
    order_type: Mapped[str] = mapped_column(String)
    limit_price: Mapped[float | None] = mapped_column(Decimal64)
    strategy: Mapped[str] = mapped_column(String)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String)


class _OrderFields:
    """The fields of an `OrderUpdate`, shared by the latest state and the history."""

    order_key: Mapped[str] = mapped_column(String)
    symbol: Mapped[str] = mapped_column(String)
    signal_id: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    quantity: Mapped[float] = mapped_column(Decimal64)
    order_type: Mapped[str] = mapped_column(String)
    limit_price: Mapped[float | None] = mapped_column(Decimal64)
    order_id: Mapped[int | None]
    perm_id: Mapped[int | None] = mapped_column(BigInteger)
    filled: Mapped[float] = mapped_column(Decimal64)
    remaining: Mapped[float] = mapped_column(Decimal64)
    avg_fill_price: Mapped[float | None] = mapped_column(Decimal64)
    account: Mapped[str] = mapped_column(String)
    reason: Mapped[str] = mapped_column(String)
    external: Mapped[bool]


class OrderRow(_OrderFields, Base):
    """An order's latest state: `ts`/`event_id` are those of the update that set it."""

    __tablename__ = "orders"
    __table_args__ = (Index(None, "updated_at"), Index(None, "status"))

    order_key: Mapped[str] = mapped_column(String, primary_key=True)
    event_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OrderHistoryRow(_OrderFields, Base):
    __tablename__ = "order_history"
    __table_args__ = (Index(None, "order_key", "ts"),)

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)


class FillRow(Base):
    __tablename__ = "fills"
    __table_args__ = (
        Index(None, "symbol", "executed_at"),
        Index(None, "executed_at"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    execution_id: Mapped[str] = mapped_column(String, primary_key=True)
    event_id: Mapped[str] = mapped_column(String)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String)
    signal_id: Mapped[str] = mapped_column(String)
    side: Mapped[str] = mapped_column(String)
    quantity: Mapped[float] = mapped_column(Decimal64)
    price: Mapped[float] = mapped_column(Decimal64)
    executed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    order_id: Mapped[int | None]
    perm_id: Mapped[int | None] = mapped_column(BigInteger)
    commission: Mapped[float | None] = mapped_column(Decimal64)
    commission_currency: Mapped[str | None] = mapped_column(String)
    realized_pnl: Mapped[float | None] = mapped_column(Decimal64)
    exchange: Mapped[str] = mapped_column(String)
    account: Mapped[str] = mapped_column(String)


class SystemEventRow(Base):
    """Any other event (risk rejections, halts, commands, connectivity...), as its JSON."""

    __tablename__ = "system_events"
    __table_args__ = (Index(None, "type", "ts"), Index(None, "ts"))

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    type: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    channel: Mapped[str] = mapped_column(String)
    symbol: Mapped[str | None] = mapped_column(String)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
