"""Sample events of every kind, and reading the stored rows back as events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, func, select

from event_bus import Event
from event_bus.system import ControlCommand, Heartbeat
from execution.model import Fill, OrderUpdate, RiskRejection, TradingHalted
from market_data.model import Bar, Tick
from storage.models import Base
from storage.rows import (
    BARS,
    FILLS,
    ORDER_HISTORY,
    SIGNALS,
    SYSTEM_EVENTS,
    TICKS,
    bar_from_row,
    fill_from_row,
    order_from_history_row,
    signal_from_row,
    system_event_from_row,
    tick_from_row,
)
from strategy.model import TradeSignal
from tests.storage.events import SampleConnectivity

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)

READERS = {
    TICKS: tick_from_row,
    BARS: bar_from_row,
    SIGNALS: signal_from_row,
    ORDER_HISTORY: order_from_history_row,
    FILLS: fill_from_row,
    SYSTEM_EVENTS: system_event_from_row,
}


def every_kind(now: datetime = T0) -> list[Event]:
    """One event of each kind storage knows, with awkward values (exact decimals, None, UTC)."""
    signal = TradeSignal(
        ts=now,
        symbol="AAPL",
        action="BUY",
        quantity=10,
        order_type="LMT",
        limit_price=187.123456789012,
        strategy="sma_crossover",
        expires_at=now + timedelta(seconds=30),
        reason="fast crossed above slow",
    )
    order = {"symbol": "AAPL", "signal_id": signal.id, "action": "BUY", "quantity": 10.0}
    return [
        Tick(ts=now, symbol="AAPL", bid=187.1, ask=187.12, last=187.11, bid_size=300, volume=1e6),
        Tick(ts=now, symbol="MSFT", last=410.5, exchange_time=now - timedelta(milliseconds=3)),
        Bar(
            ts=now,
            symbol="AAPL",
            start=now - timedelta(minutes=1),
            seconds=60,
            open=187.0,
            high=187.5,
            low=186.9,
            close=187.11,
            volume=12_345,
            wap=187.23456789012345,
            trade_count=321,
        ),
        signal,
        OrderUpdate(ts=now, status="pending_submit", order_type="LMT", limit_price=187.12, **order),
        OrderUpdate(
            ts=now + timedelta(seconds=1),
            status="filled",
            order_type="LMT",
            limit_price=187.12,
            order_id=7,
            perm_id=2_000_000_123,
            filled=10,
            avg_fill_price=187.1150000000001,
            account="DU0000001",
            **order,
        ),
        Fill(
            ts=now + timedelta(seconds=1),
            symbol="AAPL",
            execution_id="0000e0d5.6789abcd.01.01",
            signal_id=signal.id,
            side="BUY",
            quantity=10,
            price=187.1150000000001,
            executed_at=now + timedelta(milliseconds=900),
            order_id=7,
            perm_id=2_000_000_123,
            commission=1.0,
            commission_currency="USD",
            exchange="ISLAND",
            account="DU0000001",
        ),
        RiskRejection(
            ts=now, signal_id="s-2", symbol="MSFT", rule="max_position", reason="too big"
        ),
        TradingHalted(ts=now, halted=True, reason="drawdown", issued_by="risk"),
        ControlCommand(ts=now, command="halt", reason="lunch", issued_by="ops"),
        SampleConnectivity(ts=now, link="ib", connected=False, detail={"code": "1100"}),
        Heartbeat(ts=now, module="storage", host="h", pid=1, started_at=now, interval_seconds=5),
    ]


def ticks(count: int, start: int = 0) -> list[Tick]:
    return [
        Tick(ts=T0 + timedelta(milliseconds=n), symbol=f"S{n % 7}", last=100 + n / 100)
        for n in range(start, start + count)
    ]


def stored_events(engine: Engine) -> list[Event]:
    """Every row of the event tables read back as the event it came from, sorted by id."""
    events: list[Event] = []
    with engine.connect() as connection:
        for table, read in READERS.items():
            events += [read(row) for row in connection.execute(select(table)).mappings()]
    return sorted(events, key=lambda event: event.id)


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows per table."""
    with engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
            if isinstance(table, Table)
        }


def by_id(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda event: event.id)
