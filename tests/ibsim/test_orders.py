"""Orders end to end with the real ib_async.IB: fills, commissions, rests, cancels, modifies."""

from __future__ import annotations

import time

import pytest
from ib_async import IB, Contract, LimitOrder, MarketOrder, Order, Stock, StopOrder, Trade

from ibsim import SimConfig, Simulator
from ibsim.orders import Broker, SimOrder
from tests.fixtures.ibsim import ConnectIB
from tests.helpers import eventually


async def _aapl(ib: IB) -> Contract:
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    assert contract is not None
    return contract


async def _filled(trade: Trade) -> None:
    await eventually(
        lambda: (
            trade.orderStatus.status == "Filled"
            and len(trade.fills) > 0
            and all(fill.commissionReport.execId for fill in trade.fills)
        ),
        message="order filled with commissions",
    )


async def test_market_order_fills_with_commission(ib: IB, sim: Simulator) -> None:
    """A market buy fills at the ask; the Fill carries the simulator's execution and commission."""
    contract = await _aapl(ib)
    trade = ib.placeOrder(contract, MarketOrder("BUY", 10, orderRef="hello-1"))
    await _filled(trade)
    [execution] = sim.executions
    [fill] = trade.fills
    assert (fill.execution.execId, fill.execution.shares, fill.execution.price) == (
        execution.exec_id,
        10.0,
        execution.price,
    )
    assert (fill.execution.side, fill.execution.orderRef) == ("BOT", "hello-1")
    assert fill.commissionReport.commission == pytest.approx(1.0)
    assert trade.order.permId == execution.perm_id
    assert sim.positions() == {"AAPL": 10.0}


async def test_place_order_is_recorded_as_received(ib: IB, sim: Simulator) -> None:
    """orders_received keeps each placeOrder with its orderRef and receive times."""
    contract = await _aapl(ib)
    before_ns, before_wall_ns = time.perf_counter_ns(), time.time_ns()
    trade = ib.placeOrder(contract, LimitOrder("SELL", 5, 999.5, orderRef="ref-42"))
    await eventually(lambda: len(sim.orders_received) == 1)
    after_ns, after_wall_ns = time.perf_counter_ns(), time.time_ns()
    [received] = sim.orders_received
    assert (
        received.order_id,
        received.client_id,
        received.order_ref,
        received.action,
        received.quantity,
        received.order_type,
        received.limit_price,
    ) == (trade.order.orderId, 1, "ref-42", "SELL", 5.0, "LMT", 999.5)
    # stamped when its bytes arrived: after the send, before the test saw it
    assert before_ns < received.received_perf_ns < after_ns
    assert before_wall_ns - 1_000_000 < received.received_time_ns < after_wall_ns + 1_000_000


async def test_limit_order_rests_until_price_crosses(ib: IB, sim: Simulator) -> None:
    """A buy limit below the market rests; when the price falls through it, it fills."""
    contract = await _aapl(ib)
    limit = round(sim.instruments["AAPL"].last * 0.8, 2)
    trade = ib.placeOrder(contract, LimitOrder("BUY", 20, limit))
    await eventually(lambda: trade.orderStatus.status == "Submitted")
    assert trade.fills == []
    sim.set_price("AAPL", limit - 1.0)
    await _filled(trade)
    assert trade.fills[0].execution.price <= limit


async def test_cancel_order(ib: IB, sim: Simulator) -> None:
    """cancelOrder on a resting order: status Cancelled at both ends, no fill."""
    contract = await _aapl(ib)
    trade = ib.placeOrder(contract, LimitOrder("BUY", 20, 1.0))
    await eventually(lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    await eventually(lambda: trade.orderStatus.status == "Cancelled")
    assert [o.status for o in sim.broker.orders.values()] == ["Cancelled"]
    assert sim.executions == []


async def test_modify_order(ib: IB, sim: Simulator) -> None:
    """placeOrder with a live orderId modifies it; the new limit then fills."""
    contract = await _aapl(ib)
    trade = ib.placeOrder(contract, LimitOrder("BUY", 20, 1.0))
    await eventually(lambda: trade.orderStatus.status == "Submitted")
    trade.order.lmtPrice = round(sim.instruments["AAPL"].last * 1.2, 2)
    trade.order.totalQuantity = 30
    ib.placeOrder(contract, trade.order)
    await _filled(trade)
    assert sum(fill.execution.shares for fill in trade.fills) == 30
    assert len(sim.broker.orders) == 1


async def test_stop_order_triggers_when_price_reaches_it(ib: IB, sim: Simulator) -> None:
    """A sell stop waits (PreSubmitted) until the last price falls to it, then fills."""
    contract = await _aapl(ib)
    buy = ib.placeOrder(contract, MarketOrder("BUY", 10))
    await _filled(buy)
    stop = round(sim.instruments["AAPL"].last * 0.8, 2)
    trade = ib.placeOrder(contract, StopOrder("SELL", 10, stop))
    await eventually(lambda: trade.orderStatus.status == "PreSubmitted")
    sim.set_price("AAPL", stop - 0.5)
    await _filled(trade)
    assert sim.positions() == {}


async def test_duplicate_order_id_gets_103(ib: IB, sim: Simulator) -> None:
    """Reusing the orderId of a finished order is refused with error 103."""
    contract = await _aapl(ib)
    trade = ib.placeOrder(contract, MarketOrder("BUY", 1))
    await _filled(trade)
    codes: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, message, contract: codes.append((req_id, code))
    ib.client.placeOrder(trade.order.orderId, contract, MarketOrder("BUY", 1))
    await eventually(lambda: codes == [(trade.order.orderId, 103)])
    assert len(sim.executions) == 1


async def test_unsupported_order_type_is_rejected(ib: IB, sim: Simulator) -> None:
    """An order type the simulator does not match is rejected (error 201): ib_async cancels it."""
    contract = await _aapl(ib)
    trade = ib.placeOrder(contract, Order(action="BUY", totalQuantity=1, orderType="TRAIL"))
    await eventually(lambda: trade.orderStatus.status == "Cancelled")
    assert trade.log[-1].errorCode == 201
    assert sim.broker.orders == {}


async def test_account_values_and_portfolio_follow_fills(ib: IB) -> None:
    """After a fill, the portfolio shows the position and the cash has gone down."""
    contract = await _aapl(ib)
    cash_before = _account_value(ib, "TotalCashValue")
    trade = ib.placeOrder(contract, MarketOrder("BUY", 10))
    await _filled(trade)
    await eventually(lambda: [item.position for item in ib.portfolio()] == [10.0])
    spent = 10 * trade.fills[0].execution.price + 1.0
    await eventually(lambda: _account_value(ib, "TotalCashValue") == cash_before - spent)


async def test_account_summary(ib: IB) -> None:
    """accountSummary answers the configured starting cash as net liquidation."""
    summary = await ib.accountSummaryAsync()
    values = {(v.tag, v.currency): v.value for v in summary}
    assert values[("NetLiquidation", "USD")] == "1000000.00"
    assert values[("AccountType", "")] == "INDIVIDUAL"


def _account_value(ib: IB, tag: str) -> float:
    [value] = [v.value for v in ib.accountValues() if v.tag == tag]
    return round(float(value), 2)


async def test_state_survives_reconnect(connect_ib: ConnectIB, sim: Simulator) -> None:
    """After a reconnect, positions, executions (with commissions), open and completed orders
    are all reported again, orderRef included."""
    first = await connect_ib(1)
    contract = await _aapl(first)
    filled = first.placeOrder(contract, MarketOrder("BUY", 10, orderRef="before-reconnect"))
    await _filled(filled)
    resting = first.placeOrder(contract, LimitOrder("BUY", 5, 1.0, orderRef="resting"))
    await eventually(lambda: resting.orderStatus.status == "Submitted")
    first.disconnect()
    await eventually(lambda: not sim.sessions)

    second = await connect_ib(1)
    assert [(p.contract.symbol, p.position) for p in second.positions()] == [("AAPL", 10.0)]
    [fill] = second.fills()
    assert (fill.execution.orderRef, fill.commissionReport.commission) == ("before-reconnect", 1.0)
    [open_trade] = second.openTrades()
    assert (open_trade.order.orderRef, open_trade.orderStatus.status) == ("resting", "Submitted")
    completed = await second.reqCompletedOrdersAsync(apiOnly=True)
    assert [(t.order.orderRef, t.orderStatus.status) for t in completed] == [
        ("before-reconnect", "Filled")
    ]


@pytest.mark.parametrize("quantity", [350])
async def test_large_order_fills_in_parts(quantity: int, decoder_errors: object) -> None:
    """With max_fill_size 100, a 350-share order fills as 100+100+100+50, each with a commission."""
    async with Simulator(SimConfig(port=0, speed=20, max_fill_size=100)) as sim:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=4)
        try:
            contract = await _aapl(ib)
            trade = ib.placeOrder(contract, MarketOrder("BUY", quantity))
            await _filled(trade)
            assert [fill.execution.shares for fill in trade.fills] == [100, 100, 100, 50]
            assert [fill.execution.cumQty for fill in trade.fills] == [100, 200, 300, 350]
        finally:
            ib.disconnect()


def test_a_simulator_started_again_does_not_repeat_its_execution_ids() -> None:
    """IB never reuses an execution id, and the daemon dedupes fills by it (in Redis, which
    outlives a demo): two brokers filling the same first order give different ids."""
    config = SimConfig(port=0, seed=1)
    ids = []
    for broker in (Broker(config), Broker(config)):
        order = SimOrder(
            order_id=1,
            client_id=2,
            perm_id=broker.new_perm_id(),
            account=config.accounts[0],
            symbol="AAPL",
            action="BUY",
            total_quantity=10,
            order_type="MKT",
            limit_price=None,
            aux_price=None,
            tif="DAY",
            order_ref="ref-1",
        )
        broker.add(order)
        ids.append(broker.execute(order, 190.0, time.time()).exec_id)
    assert ids[0] != ids[1]
    assert ids[0].split(".")[1:] == ids[1].split(".")[1:]  # same perm id and count
