"""Reconciliation and risk over the wire: external orders, positions, limits and the loss halt."""

from __future__ import annotations

from typing import Any

import pytest
from ib_async import LimitOrder, Stock

from event_bus.system import ControlCommand
from execution.model import Fill, OrderUpdate, PositionSnapshot, RiskRejection, TradingHalted
from execution.state import FILL_COMPLETE, MemoryExecutionState
from ibsim import Simulator
from market_data.model import Tick
from strategy.model import TradeSignal
from tests.execution.conftest import Running
from tests.fixtures.ibsim import ConnectIB
from tests.helpers import eventually


def buy(quantity: float, **fields: Any) -> TradeSignal:
    return TradeSignal(symbol="AAPL", action="BUY", quantity=quantity, **fields)


async def test_order_quantity_limit_accepts_at_and_rejects_past_it(
    make_service: Any, sim: Simulator
) -> None:
    """With MAX_ORDER_QUANTITY=10, 10 shares are sent and 11 are refused with the signal id."""
    running: Running = await make_service(max_order_quantity=10)
    await running.mark("AAPL", 190.0)
    too_many, just_enough = buy(11), buy(10)
    await running.publish(too_many)
    await running.publish(just_enough)
    await eventually(lambda: len(sim.orders_received) == 1)
    await running.settle()
    assert [o.order_ref for o in sim.orders_received] == [just_enough.id]
    [rejection] = running.events(RiskRejection)
    assert rejection == RiskRejection(
        id=rejection.id,
        ts=rejection.ts,
        signal_id=too_many.id,
        symbol="AAPL",
        rule="max_order_quantity",
        reason="quantity 11 > MAX_ORDER_QUANTITY 10",
    )


async def test_market_order_without_any_price_is_rejected(
    make_service: Any, sim: Simulator
) -> None:
    """No tick and no limit price: the notional cannot be checked, so the order is refused."""
    running: Running = await make_service()
    signal = buy(1)
    await running.publish(signal)
    await running.settle()
    assert [(r.signal_id, r.rule) for r in running.events(RiskRejection)] == [
        (signal.id, "price_unknown")
    ]
    assert sim.orders_received == []


async def test_daily_loss_limit_halts_trading(make_service: Any, sim: Simulator) -> None:
    """A mark that puts today's P&L at the loss limit halts trading, durably, and refuses more."""
    running: Running = await make_service(daily_loss_limit=100.0)
    await running.mark("AAPL", 190.0)
    await running.publish(buy(10))
    await eventually(lambda: sim.positions() == {"AAPL": 10.0})
    await eventually(lambda: any(p.positions for p in running.events(PositionSnapshot)))
    await running.publish(Tick(symbol="AAPL", last=170.0))
    await eventually(lambda: running.service.halted)
    [halt] = running.events(TradingHalted)
    assert (halt.halted, halt.issued_by) == (True, "risk")
    assert halt.reason.startswith("daily loss limit hit")
    assert await running.service.state.halt() is not None
    refused = buy(1)
    await running.publish(refused)
    await running.settle()
    assert [(r.signal_id, r.rule) for r in running.events(RiskRejection)] == [
        (refused.id, "halted")
    ]


async def test_only_ticks_of_held_symbols_reprice_the_loss_limit(
    make_service: Any, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's P&L moves only with the marks of symbols held: at 20,000 ticks/s over 1,000
    symbols, recomputing it on every tick was most of execution's work per tick."""
    running: Running = await make_service(daily_loss_limit=100.0)
    await running.mark("AAPL", 190.0)
    await running.publish(buy(10))
    await eventually(lambda: sim.positions() == {"AAPL": 10.0})
    await eventually(lambda: any(p.positions for p in running.events(PositionSnapshot)))
    await running.publish(Tick(symbol="AAPL", last=190.5))  # learns what is held
    await running.settle()
    computed = 0
    daily_pnl = running.service.daily_pnl

    def counted() -> float:
        nonlocal computed
        computed += 1
        return daily_pnl()

    monkeypatch.setattr(running.service, "daily_pnl", counted)
    for price in (401.0, 402.0, 403.0):
        await running.publish(Tick(symbol="MSFT", last=price))
    await running.settle()
    assert computed == 0
    assert running.service._marks["MSFT"] == 403.0  # still marked, for the risk book
    await running.publish(Tick(symbol="AAPL", last=170.0))
    await eventually(lambda: running.service.halted)
    assert computed >= 1


async def test_external_orders_are_reported_and_left_alone(
    make_service: Any, sim: Simulator, connect_ib: ConnectIB
) -> None:
    """An order another client placed is published with external=True at reconciliation and
    survives a halt; positions are published."""
    other = await connect_ib(client_id=3)
    contract = Stock("MSFT", "SMART", "USD")
    other.placeOrder(contract, LimitOrder("BUY", 5, 100.0))
    await eventually(lambda: len(sim.broker.active_orders()) == 1)

    running: Running = await make_service()
    [external] = [u for u in running.events(OrderUpdate) if u.external]
    assert (external.symbol, external.signal_id, external.status, external.quantity) == (
        "MSFT",
        "",
        "submitted",
        5.0,
    )
    assert running.events(PositionSnapshot)[0].account == "DU0000001"
    await running.service.handle_signal(buy(1, order_type="LMT", limit_price=100.0))
    await eventually(lambda: len(sim.broker.active_orders()) == 2)
    await running.publish(ControlCommand(command="halt"))
    await eventually(lambda: len(sim.broker.active_orders()) == 1)
    [still_working] = sim.broker.active_orders()
    assert (still_working.client_id, still_working.symbol) == (3, "MSFT")


async def test_republish_publishes_every_fill_and_order_state_again_once(
    make_service: Any, sim: Simulator
) -> None:
    """`republish` (storage lost events from the journal): each fill the broker reports is
    published again, with its id and commission, and each order's latest state, though the
    durable state says they were; then they are settled again, not published a third time."""
    state = MemoryExecutionState()
    running: Running = await make_service(state=state)
    await running.mark("AAPL", 190.0)
    signal = TradeSignal(symbol="AAPL", action="BUY", quantity=10)
    await running.publish(signal)
    await eventually(
        lambda: [f.commission is not None for f in running.events(Fill)] == [True],
        message="filled with its commission",
    )
    await eventually(lambda: running.events(OrderUpdate)[-1].status == "filled")
    [fill] = running.events(Fill)
    orders_before = len(running.events(OrderUpdate))

    await running.publish(ControlCommand(command="republish", reason="test", issued_by="storage"))
    await eventually(lambda: len(running.events(Fill)) == 2, message="the fill again")
    again = running.events(Fill)[1]
    assert (again.id, again.execution_id, again.commission) == (
        fill.id,
        fill.execution_id,
        fill.commission,
    )
    await eventually(
        lambda: len(running.events(OrderUpdate)) > orders_before, message="the order again"
    )
    assert running.events(OrderUpdate)[-1].status == "filled"
    assert state.fills == {fill.execution_id: FILL_COMPLETE}

    await running.service.stop()
    restarted: Running = await make_service(state=state)
    await restarted.settle()
    assert restarted.events(Fill) == []  # reconciled at start: nothing forced any more
