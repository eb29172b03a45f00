"""Signals to orders against the simulator: one order per signal id, its updates and its fills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ib_async import IB

from broker.model import ConnectivityChanged
from execution.decisions import KEPT_AFTER_EXPIRY
from execution.model import Fill, OrderUpdate, RiskRejection
from execution.state import MemoryExecutionState
from ibsim import SimConfig, Simulator
from strategy.model import TradeSignal
from tests.execution.conftest import Running
from tests.execution.proxy import CommissionDelayProxy
from tests.helpers import eventually


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(port=0, seed=1, speed=20.0, max_fill_size=100.0)


def buy(quantity: float = 10, **fields: Any) -> TradeSignal:
    return TradeSignal(symbol="AAPL", action="BUY", quantity=quantity, **fields)


def statuses(running: Running) -> list[str]:
    return [update.status for update in running.events(OrderUpdate)]


async def filled_with_commissions(running: Running, signal_id: str, quantity: float) -> bool:
    fills = [f for f in running.events(Fill) if f.signal_id == signal_id]
    return sum(f.quantity for f in fills) == quantity and all(
        f.commission is not None for f in fills
    )


async def test_market_buy_is_one_order_with_updates_fill_and_commission(
    make_service: Any, sim: Simulator
) -> None:
    """A BUY becomes one order (orderRef = signal id), then submitted and filled, one fill with
    its commission."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    signal = buy(10)
    await running.publish(signal)
    await eventually(lambda: filled_with_commissions(running, signal.id, 10))
    [received] = sim.orders_received
    assert (received.order_ref, received.action, received.quantity, received.order_type) == (
        signal.id,
        "BUY",
        10.0,
        "MKT",
    )
    await eventually(lambda: statuses(running)[-1:] == ["filled"])
    assert statuses(running) == ["pending_submit", "submitted", "filled"]
    [execution] = sim.executions
    [fill] = running.events(Fill)
    assert fill == Fill(
        id=f"fill-{execution.exec_id}",
        ts=fill.ts,
        symbol="AAPL",
        execution_id=execution.exec_id,
        signal_id=signal.id,
        side="BUY",
        quantity=10.0,
        price=execution.price,
        executed_at=fill.executed_at,
        order_id=execution.order_id,
        perm_id=execution.perm_id,
        commission=execution.commission,
        commission_currency="USD",
        realized_pnl=0.0,  # ib_async reports IB's "unset" realized P&L of an opening fill as 0
        exchange="ISLAND",
        account="DU0000001",
    )


async def barrier(ib: IB) -> None:
    """A round trip to the simulator: everything sent before it has been received there."""
    await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5)


async def test_signal_published_twice_is_one_order(make_service: Any, sim: Simulator) -> None:
    """The same signal published twice, and handed over twice at once, makes one order."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    signal = buy(5)
    await running.publish(signal)
    await running.publish(signal)
    await asyncio.gather(
        running.service.handle_signal(signal), running.service.handle_signal(signal)
    )
    await running.settle()
    await barrier(running.service.ib)
    assert [order.order_ref for order in sim.orders_received] == [signal.id]
    assert running.events(RiskRejection) == []


@pytest.mark.parametrize("shared_state", [True, False], ids=["state-kept", "broker-memory-only"])
async def test_signal_redelivered_after_kill_between_place_and_ack_is_one_order(
    make_service: Any, sim: Simulator, shared_state: bool
) -> None:
    """Killed after placeOrder but before IB acknowledged it, a fresh service handed the same
    signal sends nothing: it finds the order by its id (own state, or the broker's orderRef),
    and publishes the fill that happened while nobody was connected, with its commission."""
    state = MemoryExecutionState()
    first: Running = await make_service(state=state)
    await first.mark("AAPL", 190.0)
    signal = buy(10)
    sim.drop_socket_on_next_order()
    await first.publish(signal)
    await eventually(lambda: len(sim.orders_received) == 1)
    await first.service.stop()  # the crash: nothing acknowledged, nothing more handled

    second: Running = await make_service(state=state if shared_state else MemoryExecutionState())
    await second.mark("AAPL", 190.0)
    await second.publish(signal)
    await second.settle()
    await barrier(second.service.ib)
    assert [order.order_ref for order in sim.orders_received] == [signal.id]
    await eventually(lambda: filled_with_commissions(second, signal.id, 10))
    assert [(u.signal_id, u.status, u.filled) for u in second.events(OrderUpdate)] == [
        (signal.id, "filled", 10.0)
    ]


def in_doubt(running: Running) -> list[str]:
    return [r.signal_id for r in running.events(RiskRejection) if r.rule == "in_doubt"]


async def reconnected(
    running: Running, sim: Simulator, while_away: Callable[[], object] | None = None
) -> None:
    """Drop the execution's socket (and run `while_away` before it can connect again); return
    once it has connected again and reconciled."""

    def connections() -> int:
        return sum(e.state == "connected" for e in running.events(ConnectivityChanged))

    before = connections()
    sim.drop_all_clients()
    if while_away is not None:
        while_away()
    await eventually(lambda: connections() > before and running.service.ready, timeout=10)
    await running.settle()


async def test_an_order_the_broker_never_got_is_reported_in_doubt_and_never_resent(
    make_service: Any, sim: Simulator
) -> None:
    """Sent, and the connection dropped before the order reached the broker: once connected
    again, the broker does not know it, so it is reported in doubt (rule in_doubt), and neither
    it nor its signal handed over again is sent a second time."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    sim.lose_next_order()
    signal = buy(10)
    await running.publish(signal)
    await eventually(lambda: in_doubt(running) == [signal.id], timeout=10)
    await running.publish(signal)
    await running.settle()
    await barrier(running.service.ib)
    assert [order.order_ref for order in sim.orders_received] == [signal.id]
    assert sim.executions == []


async def test_orders_of_the_day_before_are_not_in_doubt_after_the_daily_restart(
    make_service: Any, sim: Simulator
) -> None:
    """After IB's daily restart, the broker no longer reports yesterday's finished orders. One
    it acknowledged and filled had a known fate: it is not reported in doubt then, nor is an
    order placed since."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    signal = buy(10)
    await running.publish(signal)
    await eventually(lambda: filled_with_commissions(running, signal.id, 10))
    await reconnected(running, sim)  # the same day: the broker still reports it
    sim.new_trading_day()
    await reconnected(running, sim)
    later = buy(5)
    await running.publish(later)
    await eventually(lambda: filled_with_commissions(running, later.id, 5))
    sim.new_trading_day()
    await reconnected(running, sim)
    assert in_doubt(running) == []
    assert [order.order_ref for order in sim.orders_received] == [signal.id, later.id]


async def test_a_working_order_that_finished_while_away_as_the_day_turned_is_reported(
    make_service: Any, sim: Simulator
) -> None:
    """Two buy orders working when the connection dropped. One filled while the daemon was
    away and IB's day turned before it came back: IB reports neither that order nor its
    execution, so the fill cannot be published; the order is reported in doubt (rule
    in_doubt), once. The other, still working, is reported by IB and is not."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    fills_away = buy(10, order_type="LMT", limit_price=180.0)
    stays = buy(5, order_type="LMT", limit_price=100.0)
    for signal in (fills_away, stays):
        await running.publish(signal)
        await eventually(lambda s=signal: (s.id, "submitted") in updates(running))

    def fill_then_turn_the_day() -> None:
        sim.set_price("AAPL", 170.0)
        sim.new_trading_day()

    await reconnected(running, sim, while_away=fill_then_turn_the_day)
    assert [e.order_ref for e in sim.executions] == [fills_away.id]
    assert in_doubt(running) == [fills_away.id]
    [report] = [r for r in running.events(RiskRejection) if r.rule == "in_doubt"]
    assert "IB no longer reports the order or its executions" in report.reason
    assert [f.signal_id for f in running.events(Fill)] == []
    await reconnected(running, sim)
    assert in_doubt(running) == [fills_away.id]


def updates(running: Running) -> list[tuple[str, str]]:
    return [(update.signal_id, update.status) for update in running.events(OrderUpdate)]


def kept_per_order(running: Running) -> dict[str, set[str]]:
    """What execution keeps per order and per execution (its private bookkeeping: the test is
    that it stops growing)."""
    service = running.service
    return {
        "at broker": set(service._at_broker),
        "ours": set(service._our_refs),
        "published": set(service._published),
        "acknowledged": set(service._acknowledged),
        "fill states": set(service.fills._states),
    }


async def test_what_is_kept_per_order_shrinks_to_todays_orders_at_the_daily_restart(
    make_service: Any, sim: Simulator
) -> None:
    """A daemon running for weeks keeps, per order and per execution, only what the broker
    still reports: after IB's daily restart, today's. The orders of the day before are gone
    from it, and a copy of one of their signals still makes no second order."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    yesterday = [buy(10), buy(3)]
    for signal in yesterday:
        await running.publish(signal)
        await eventually(lambda s=signal: filled_with_commissions(running, s.id, s.quantity))
    executions = {execution.exec_id: execution.order_ref for execution in sim.executions}
    everything = {signal.id for signal in yesterday}
    await reconnected(running, sim)  # the same day: the broker still reports them
    kept = kept_per_order(running)
    assert {name: refs for name, refs in kept.items() if name != "fill states"} == {
        "at broker": everything,
        "ours": everything,
        "published": everything,
        "acknowledged": everything,
    }
    assert kept["fill states"] == set(executions)

    sim.new_trading_day()
    await reconnected(running, sim)
    today = buy(5)
    await running.publish(today)
    await eventually(lambda: filled_with_commissions(running, today.id, 5))
    todays_executions = {e.exec_id for e in sim.executions if e.order_ref == today.id}
    kept = kept_per_order(running)
    assert kept == {
        "at broker": {today.id},
        "ours": {today.id},
        "published": {today.id},
        "acknowledged": {today.id},
        "fill states": todays_executions,
    }
    await running.publish(yesterday[0])
    await running.settle()
    await barrier(running.service.ib)
    assert [order.order_ref for order in sim.orders_received] == [
        *(signal.id for signal in yesterday),
        today.id,
    ]


async def test_a_decision_is_forgotten_only_when_a_copy_would_be_refused_as_expired(
    make_service: Any, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Execution forgets its decision on a signal an hour after the signal expired (a daemon
    running for weeks does not keep every signal id). A copy arriving later is refused as
    expired, even with every other record of it gone: the broker's (a new trading day) and the
    durable claim (Redis lost its data). No second order."""
    state = MemoryExecutionState()
    running: Running = await make_service(state=state)
    await running.mark("AAPL", 190.0)
    signal = buy(10)
    await running.publish(signal)
    await eventually(lambda: filled_with_commissions(running, signal.id, 10))
    sim.new_trading_day()
    await reconnected(running, sim)
    state.decisions.clear()  # Redis lost its data: only the process's own memory is left

    def clock_at(now: datetime) -> None:
        monkeypatch.setattr("execution.service.utc_now", lambda: now)

    expired = signal.ts + timedelta(seconds=60)  # the settings' signal_max_age_seconds

    def refusals_of(signal_id: str) -> list[str]:
        return [r.rule for r in running.events(RiskRejection) if r.signal_id == signal_id]

    clock_at(expired + KEPT_AFTER_EXPIRY - timedelta(seconds=1))
    await running.publish(buy(1))  # deciding any signal forgets what has expired
    await running.publish(signal)  # still remembered: a duplicate, nothing said
    await running.settle()
    assert refusals_of(signal.id) == []

    clock_at(expired + KEPT_AFTER_EXPIRY + timedelta(seconds=1))
    await running.publish(buy(1))  # deciding any signal forgets what has expired
    await running.publish(signal)
    await running.settle()
    await barrier(running.service.ib)
    assert refusals_of(signal.id) == ["expired"]
    assert [order.order_ref for order in sim.orders_received] == [signal.id]


async def test_partial_fills_add_up(make_service: Any, sim: Simulator) -> None:
    """An order larger than the simulator's fill size fills in parts that add up, with one
    update per part and a commission on each fill."""
    running: Running = await make_service(max_order_notional=100_000.0)
    await running.mark("AAPL", 190.0)
    signal = buy(350)
    await running.publish(signal)
    await eventually(lambda: filled_with_commissions(running, signal.id, 350))
    await eventually(lambda: statuses(running)[-1:] == ["filled"])
    fills = running.events(Fill)
    assert [f.quantity for f in fills] == [100.0, 100.0, 100.0, 50.0]
    assert [f.execution_id for f in fills] == [e.exec_id for e in sim.executions]
    assert [(u.status, u.filled) for u in running.events(OrderUpdate)] == [
        ("pending_submit", 0.0),
        ("submitted", 0.0),
        ("partially_filled", 100.0),
        ("partially_filled", 200.0),
        ("partially_filled", 300.0),
        ("filled", 350.0),
    ]
    [last] = running.events(OrderUpdate)[-1:]
    average = sum(f.quantity * f.price for f in fills) / 350
    assert last.avg_fill_price == pytest.approx(average)


async def test_late_commission_is_attached(make_service: Any, sim: Simulator) -> None:
    """A commission report arriving after the wait publishes the fill first without it, then
    the same execution again with the commission (storage fills in the row)."""
    proxy = CommissionDelayProxy(sim.port, delay=0.6)
    await proxy.start()
    try:
        running: Running = await make_service(port=proxy.port, commission_wait_seconds=0.1)
        await running.mark("AAPL", 190.0)
        signal = buy(10)
        await running.publish(signal)
        await eventually(lambda: len(running.events(Fill)) == 2)
    finally:
        await proxy.stop()
    [execution] = sim.executions
    first, second = running.events(Fill)
    assert (first.id, first.commission, first.commission_currency) == (
        f"fill-{execution.exec_id}",
        None,
        None,
    )
    assert second.id == f"fill-{execution.exec_id}-commission"
    assert (second.execution_id, second.quantity, second.price, second.commission) == (
        execution.exec_id,
        10.0,
        execution.price,
        execution.commission,
    )
    assert proxy.delayed == 1


async def test_commission_a_little_late_is_waited_for(make_service: Any, sim: Simulator) -> None:
    """A commission report within the wait is carried by the one and only Fill event."""
    proxy = CommissionDelayProxy(sim.port, delay=0.2)
    await proxy.start()
    try:
        running: Running = await make_service(port=proxy.port, commission_wait_seconds=2.0)
        await running.mark("AAPL", 190.0)
        signal = buy(10)
        await running.publish(signal)
        await eventually(lambda: filled_with_commissions(running, signal.id, 10))
        await running.settle()
    finally:
        await proxy.stop()
    [fill] = running.events(Fill)
    assert fill.commission == sim.executions[0].commission


async def test_signal_while_ib_link_is_down_is_rejected_not_queued(
    make_service: Any, sim: Simulator
) -> None:
    """Between 1100 and 1101 a signal is rejected with a reason, and never sent later."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    sim.connectivity_lost(1101, after=0.3)
    await eventually(lambda: not running.service.connection.ready_to_trade)
    signal = buy(10)
    await running.publish(signal)
    await running.settle()
    await eventually(lambda: running.service.connection.ready_to_trade)
    await barrier(running.service.ib)
    assert sim.orders_received == []
    [rejection] = running.events(RiskRejection)
    assert (rejection.signal_id, rejection.rule) == (signal.id, "not_connected")


async def test_dry_run_sends_nothing_and_says_what_it_would_have_sent(
    make_service: Any, sim: Simulator
) -> None:
    """DRY_RUN decides like live but never calls placeOrder; the would-be order is published."""
    running: Running = await make_service(dry_run=True)
    await running.mark("AAPL", 190.0)
    signal = buy(10, order_type="LMT", limit_price=189.5)
    await running.publish(signal)
    await running.settle()
    await barrier(running.service.ib)
    assert sim.orders_received == []
    [update] = running.events(OrderUpdate)
    assert update == OrderUpdate(
        id=update.id,
        ts=update.ts,
        symbol="AAPL",
        signal_id=signal.id,
        status="inactive",
        action="BUY",
        quantity=10.0,
        order_type="LMT",
        limit_price=189.5,
        remaining=10.0,
        account="DU0000001",
        reason="DRY_RUN: not sent to IB",
    )


async def test_expired_signal_is_dropped_with_a_reason(make_service: Any, sim: Simulator) -> None:
    """A signal past its expires_at becomes a RiskRejection with rule "expired", no order."""
    running: Running = await make_service()
    await running.mark("AAPL", 190.0)
    signal = buy(10, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await running.publish(signal)
    await running.settle()
    [rejection] = running.events(RiskRejection)
    assert (rejection.signal_id, rejection.symbol, rejection.rule) == (signal.id, "AAPL", "expired")
    assert sim.orders_received == []


class UnreachableState(MemoryExecutionState):
    """A state store whose every claim fails as Redis does when it is down."""

    async def claim(
        self, signal_id: str, decision: str, detail: str = "", *, meanwhile: Any = None
    ) -> bool:
        raise ConnectionError("Redis is down")


async def test_signal_is_refused_when_its_decision_cannot_be_recorded(
    make_service: Any, sim: Simulator
) -> None:
    """No record of the decision, no order: the signal is rejected as state_unavailable."""
    running: Running = await make_service(state=UnreachableState())
    await running.mark("AAPL", 190.0)
    signal = buy(5)
    await running.publish(signal)
    await running.settle()
    await barrier(running.service.ib)
    assert sim.orders_received == []
    [rejection] = running.events(RiskRejection)
    assert (rejection.signal_id, rejection.rule) == (signal.id, "state_unavailable")


async def test_signal_claimed_by_another_process_is_left_to_it(
    make_service: Any, sim: Simulator
) -> None:
    """A signal another process claimed first is a duplicate: no order and no rejection."""
    state = MemoryExecutionState()
    running: Running = await make_service(state=state)
    await running.mark("AAPL", 190.0)
    signal = buy(5)
    assert await state.claim(signal.id, "placing")  # the other process, first
    await running.publish(signal)
    await running.settle()
    await barrier(running.service.ib)
    assert sim.orders_received == []
    assert running.events(RiskRejection) == []
    assert running.service._decided[signal.id] == "placing"  # the other process's decision


async def test_a_refused_signal_is_recorded_as_rejected_with_its_rule(
    make_service: Any, sim: Simulator
) -> None:
    """The book's checks run while the claim is on its way, so a signal they refuse was
    claimed as placing: its record is overwritten as rejected, with the rule, and the signal
    sent again is a duplicate. A malformed or expired signal is claimed as rejected at once."""
    state = MemoryExecutionState()
    running: Running = await make_service(state=state, max_position_per_symbol=10)
    await running.mark("AAPL", 190.0)
    too_big = buy(50)
    expired = buy(1, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    for signal in (too_big, expired, too_big):
        await running.publish(signal)
    await running.settle()
    await barrier(running.service.ib)
    assert sim.orders_received == []
    assert [(r.signal_id, r.rule) for r in running.events(RiskRejection)] == [
        (too_big.id, "max_position"),
        (expired.id, "expired"),
    ]
    recorded = {key: (d["decision"], d["detail"]) for key, d in state.decisions.items()}
    assert recorded == {
        too_big.id: ("rejected", "max_position"),
        expired.id: ("rejected", "expired"),
    }


async def test_working_orders_count_against_the_position_limit_until_done(
    make_service: Any, sim: Simulator
) -> None:
    """A resting buy counts towards max_position; once cancelled, it no longer does."""
    running: Running = await make_service(max_position_per_symbol=10)
    await running.mark("AAPL", 190.0)
    resting = TradeSignal(
        symbol="AAPL", action="BUY", quantity=8, order_type="LMT", limit_price=100.0
    )
    await running.publish(resting)
    await eventually(lambda: statuses(running)[-1:] == ["submitted"])
    too_much = buy(5)
    await running.publish(too_much)
    await running.settle()
    assert [(r.signal_id, r.rule) for r in running.events(RiskRejection)] == [
        (too_much.id, "max_position")
    ]
    [trade] = running.service.ib.openTrades()
    running.service.ib.cancelOrder(trade.order)
    await eventually(lambda: statuses(running)[-1:] == ["cancelled"])
    allowed = buy(5)
    await running.publish(allowed)
    await eventually(lambda: filled_with_commissions(running, allowed.id, 5))
