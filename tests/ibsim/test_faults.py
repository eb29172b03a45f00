"""One test per fault the simulator can inject, seen through the real ib_async.IB."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock

from ibsim import Simulator
from tests.fixtures.ibsim import ConnectIB, connect_ib_to
from tests.helpers import eventually


def _error_codes(ib: IB) -> list[tuple[int, int]]:
    """(reqId, code) of every error and notice `ib` receives from now on."""
    codes: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, message, contract: codes.append((req_id, code))
    return codes


async def test_drop_all_clients(connect_ib: ConnectIB, sim: Simulator) -> None:
    """Every client socket is dropped; the simulator keeps accepting new ones."""
    clients = [await connect_ib(1), await connect_ib(2)]
    sim.drop_all_clients()
    await eventually(lambda: not any(ib.isConnected() for ib in clients))
    assert (await connect_ib(1)).isConnected()


async def test_refuse_connections_then_accept_again(ib: IB, sim: Simulator) -> None:
    """A Gateway restart: clients are dropped, connections refused, then accepted again."""
    sim.refuse_connections(0.5)
    await eventually(lambda: not ib.isConnected())
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", sim.port)

    async def reconnected() -> bool:
        try:
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=4)
        except ConnectionRefusedError:
            return False
        return True

    await eventually(reconnected, timeout=5, interval=0.05)
    assert ib.isConnected()


@pytest.mark.parametrize(("restored", "subscriptions_kept"), [(1101, False), (1102, True)])
async def test_connectivity_lost_then_restored(
    restored: int, subscriptions_kept: bool, ib: IB, sim: Simulator
) -> None:
    """1100 then 1101 (market data subscriptions lost) or 1102 (kept)."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    ib.reqMktData(contract)
    await eventually(lambda: any(session.quotes for session in sim.sessions))
    codes = _error_codes(ib)
    sim.connectivity_lost(restored_code=restored, after=0.2)
    await eventually(lambda: codes == [(-1, 1100), (-1, restored)])
    assert any(session.quotes for session in sim.sessions) is subscriptions_kept


async def test_farm_blip_pauses_market_data(ib: IB, sim: Simulator) -> None:
    """2103, no ticks while the farm is down, then 2104 and ticks again."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    ib.reqMktData(contract)
    paused_at_tick: list[bool] = []
    sim.tick_listener = lambda *_: paused_at_tick.append(sim.faults.market_data_paused)
    await eventually(lambda: len(paused_at_tick) > 0)
    codes = _error_codes(ib)
    sim.farm_blip(0.3)
    await eventually(lambda: codes == [(-1, 2103), (-1, 2104)])
    ticks_before_restore = len(paused_at_tick)
    await eventually(lambda: len(paused_at_tick) > ticks_before_restore)
    assert True not in paused_at_tick


async def test_drop_socket_on_next_order(connect_ib: ConnectIB, sim: Simulator) -> None:
    """The order is accepted and fills, but the socket drops before the ack; after a
    reconnect, executions and completed orders reveal it with its orderRef."""
    first = await connect_ib(1)
    [contract] = await first.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    sim.drop_socket_on_next_order()
    trade = first.placeOrder(contract, MarketOrder("BUY", 10, orderRef="lost-ack"))
    await eventually(lambda: not first.isConnected())
    assert trade.fills == []
    assert [order.order_ref for order in sim.broker.orders.values()] == ["lost-ack"]

    second = await connect_ib(1)
    await eventually(lambda: len(second.fills()) == 1)
    assert second.fills()[0].execution.orderRef == "lost-ack"
    completed = await second.reqCompletedOrdersAsync(apiOnly=True)
    assert [(t.order.orderRef, t.orderStatus.status) for t in completed] == [("lost-ack", "Filled")]


async def test_lose_next_order(connect_ib: ConnectIB, sim: Simulator) -> None:
    """The socket drops with the order: received, never at the broker, so a reconnected
    client finds neither an order nor an execution for it."""
    first = await connect_ib(1)
    [contract] = await first.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    sim.lose_next_order()
    first.placeOrder(contract, MarketOrder("BUY", 10, orderRef="lost"))
    await eventually(lambda: not first.isConnected())
    assert [order.order_ref for order in sim.orders_received] == ["lost"]
    assert sim.broker.orders == {}
    second = await connect_ib(1)
    assert await second.reqCompletedOrdersAsync(apiOnly=True) == []
    assert await second.reqExecutionsAsync() == []


async def test_new_trading_day_reports_only_todays_orders_and_executions(
    connect_ib: ConnectIB, sim: Simulator
) -> None:
    """After the daily restart a client is told of today's executions and finished orders and
    of every working order; the simulator's own history keeps yesterday's."""
    first = await connect_ib(1)
    [contract] = await first.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    first.placeOrder(contract, MarketOrder("BUY", 10, orderRef="yesterday-filled"))
    first.placeOrder(contract, LimitOrder("BUY", 10, 1.0, orderRef="still-working"))
    await eventually(lambda: len(sim.executions) == 1)
    sim.new_trading_day()
    first.placeOrder(contract, MarketOrder("SELL", 10, orderRef="today-filled"))
    await eventually(lambda: len(sim.executions) == 2)
    sim.drop_all_clients()

    second = await connect_ib(1)
    completed = await second.reqCompletedOrdersAsync(apiOnly=True)
    assert [t.order.orderRef for t in completed] == ["today-filled"]
    assert [f.execution.orderRef for f in await second.reqExecutionsAsync()] == ["today-filled"]
    assert [t.order.orderRef for t in await second.reqAllOpenOrdersAsync()] == ["still-working"]
    assert [e.order_ref for e in sim.executions] == ["yesterday-filled", "today-filled"]


async def test_pacing_violations_on_historical_requests(ib: IB, sim: Simulator) -> None:
    """The next N historical requests get error 162; the one after succeeds."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    codes = _error_codes(ib)
    sim.pacing_violations(2)
    for _ in range(2):
        assert (
            len(await ib.reqHistoricalDataAsync(contract, "", "60 S", "5 secs", "TRADES", True))
            == 0
        )
    assert [code for _, code in codes] == [162, 162]
    bars = await ib.reqHistoricalDataAsync(contract, "", "60 S", "5 secs", "TRADES", True)
    assert len(bars) == 12


async def test_send_error_reaches_every_client(connect_ib: ConnectIB, sim: Simulator) -> None:
    """send_error(code) goes to every connected client with reqId -1."""
    clients = [await connect_ib(1), await connect_ib(2)]
    received = [_error_codes(ib) for ib in clients]
    sim.send_error(2110, "Connectivity between TWS and server is broken. It will be restored.")
    await eventually(lambda: received == [[(-1, 2110)], [(-1, 2110)]])


async def test_error_10182_ends_keep_up_to_date_bars(ib: IB, sim: Simulator) -> None:
    """10182 arrives with the reqId of each keepUpToDate request, whose updates then stop."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    bars = await ib.reqHistoricalDataAsync(
        contract, "", "60 S", "5 secs", "TRADES", True, keepUpToDate=True
    )
    codes = _error_codes(ib)
    sim.send_error(10182)
    await eventually(lambda: codes == [(bars.reqId, 10182)])
    assert all(not session.live_histories for session in sim.sessions)


async def test_connect_ib_to_helper(sim: Simulator) -> None:
    """connect_ib_to connects a fresh IB, for tests that manage the client themselves."""
    ib = await connect_ib_to(sim.port, client_id=11)
    try:
        assert ib.isConnected()
    finally:
        ib.disconnect()
