"""Queries: average-cost positions and realized P&L, today's orders and fills, bars for replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine

from event_bus import JournalEntry
from execution.model import Fill, OrderUpdate, RiskRejection
from market_data.model import Bar
from storage import (
    Position,
    load_bars,
    open_orders,
    positions,
    realized_pnl,
    risk_rejections,
    stored_accounts,
    todays_fills,
    todays_orders,
)
from storage.engine import make_engine
from storage.migrate import upgrade_database
from storage.writer import RowWriter
from tests.storage.samples import T0


def write(engine: Engine, events: list) -> None:
    RowWriter(engine).write([JournalEntry(f"{n}-0", "test", e) for n, e in enumerate(events)])


def fill(n: int, symbol: str, side: str, quantity: float, price: float, **extra: object) -> Fill:
    return Fill(
        ts=T0,
        symbol=symbol,
        execution_id=f"exec-{n}",
        signal_id=f"sig-{n}",
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        price=price,
        executed_at=T0 + timedelta(minutes=n),
        **extra,  # type: ignore[arg-type]
    )


def submitted_order(**fields: object) -> OrderUpdate:
    """A market BUY of 10 AAPL the broker has accepted, at T0."""
    return OrderUpdate(
        ts=T0,
        symbol="AAPL",
        signal_id="sig-1",
        status="submitted",
        action="BUY",
        quantity=10,
        order_type="MKT",
        **fields,  # type: ignore[arg-type]
    )


FILLS = [
    fill(1, "AAPL", "BUY", 10, 100.10, commission=1.0),
    fill(2, "AAPL", "BUY", 10, 110.30, commission=1.0),  # average cost 105.20
    fill(3, "AAPL", "SELL", 15, 120.00, commission=1.5),  # realizes 15 * 14.80 = 222.00
    fill(4, "AAPL", "SELL", 10, 100.00),  # closes 5 at -5.20 (-26.00), opens 5 short at 100
    fill(5, "AAPL", "BUY", 2, 90.05),  # covers 2 short at +9.95 (+19.90)
    fill(6, "MSFT", "SELL", 3, 400.25, commission=0.35),  # short from nothing
    fill(7, "MSFT", "SELL", 1, 404.25),  # average 401.25
    fill(8, "SPY", "BUY", 1, 500.0),
    fill(9, "SPY", "SELL", 1, 499.99),  # flat, realized -0.01
]


def test_positions_and_realized_pnl_by_average_cost(engine: Engine) -> None:
    """Hand-worked fills give exact decimal positions, costs and realized P&L per symbol."""
    write(engine, list(reversed(FILLS)))  # stored out of order: execution time decides

    assert positions(engine) == [
        Position("AAPL", Decimal("-3"), Decimal("100.00"), Decimal("215.90"), Decimal("3.5")),
        Position("MSFT", Decimal("-4"), Decimal("401.25"), Decimal("0"), Decimal("0.35")),
        Position("SPY", Decimal("0"), Decimal("0"), Decimal("-0.01"), Decimal("0")),
    ]
    assert realized_pnl(engine) == Decimal("215.89")


def test_todays_orders_fills_and_open_orders(engine: Engine) -> None:
    """Orders and fills since midnight UTC, and the orders still working, as events."""
    yesterday = T0 - timedelta(days=1)
    order = submitted_order()
    old = replace(order, id="old", ts=yesterday, signal_id="sig-0", status="filled")
    done = replace(order, id="done", signal_id="sig-2", status="cancelled")
    today_fill, old_fill = FILLS[0], replace(FILLS[1], executed_at=yesterday)
    write(engine, [order, old, done, today_fill, old_fill])

    assert todays_orders(engine, now=T0) == [order, done]
    assert open_orders(engine) == [order]
    assert todays_fills(engine, now=T0 + timedelta(hours=1)) == [today_fill]


def test_stored_accounts_of_orders_and_fills(database_url: str) -> None:
    """The accounts of the orders and fills stored, once each; none before the tables exist."""
    assert stored_accounts(database_url) == set()
    engine = make_engine(database_url)
    try:
        upgrade_database(engine)
        assert stored_accounts(engine) == set()
        order = submitted_order(account="U1111111")
        write(engine, [order, FILLS[0], replace(FILLS[1], account="U2222222")])
        assert stored_accounts(engine) == {"U1111111", "U2222222", ""}
    finally:
        engine.dispose()


def test_risk_rejections_all_or_by_rule(engine: Engine) -> None:
    """Refused signals as events, oldest first; other system events are not among them."""
    limit = RiskRejection(
        ts=T0, symbol="AAPL", signal_id="sig-1", rule="max_order_quantity", reason="too big"
    )
    doubt = RiskRejection(
        ts=T0 + timedelta(seconds=1),
        symbol="MSFT",
        signal_id="sig-2",
        rule="in_doubt",
        reason="unknown",
    )
    write(engine, [doubt, limit, FILLS[0]])
    assert risk_rejections(engine) == [limit, doubt]
    assert risk_rejections(engine, rule="in_doubt") == [doubt]
    assert risk_rejections(engine, rule="halted") == []


def test_load_bars_for_a_symbol_and_time_range(engine: Engine, database_url: str) -> None:
    """Bars of one symbol starting in [start, end), oldest first, as `Bar` events."""
    bars = [
        Bar(
            ts=T0,
            symbol=symbol,
            start=T0 + timedelta(minutes=minute),
            seconds=60,
            open=100 + minute,
            high=101.5 + minute,
            low=99.25 + minute,
            close=100.125 + minute,
            volume=1000 * minute,
        )
        for symbol in ("AAPL", "MSFT")
        for minute in (3, 0, 2, 1)
    ]
    write(engine, bars)
    aapl = sorted(bars[:4], key=lambda bar: bar.start)

    assert load_bars(database_url, "AAPL") == aapl
    assert (
        load_bars(engine, "AAPL", T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
        == (aapl[1:3])
    )
    assert load_bars(engine, "AAPL", start=T0 + timedelta(minutes=3), seconds=60) == aapl[3:]
    assert load_bars(engine, "AAPL", seconds=5) == []
