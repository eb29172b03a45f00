"""The kill switch: halt cancels working orders and blocks new ones, across restarts; resume."""

from __future__ import annotations

from typing import Any

from event_bus.system import ControlCommand
from execution.model import OrderUpdate, RiskRejection, TradingHalted
from execution.state import MemoryExecutionState
from ibsim import Simulator
from strategy.model import TradeSignal
from tests.execution.conftest import Running
from tests.helpers import eventually


def resting_buy(quantity: float = 10) -> TradeSignal:
    """A limit far below the market: it rests, working, until cancelled."""
    return TradeSignal(
        symbol="AAPL", action="BUY", quantity=quantity, order_type="LMT", limit_price=100.0
    )


def rejections(running: Running) -> list[tuple[str, str]]:
    return [(r.signal_id, r.rule) for r in running.events(RiskRejection)]


def halts(running: Running) -> list[tuple[bool, str, str]]:
    return [(h.halted, h.reason, h.issued_by) for h in running.events(TradingHalted)]


async def test_halt_cancels_working_orders_blocks_new_ones_and_survives_restart(
    make_service: Any, sim: Simulator
) -> None:
    """halt: the working order is cancelled and a new signal rejected; a restarted service is
    still halted (the state key); resume lets the next signal through."""
    state = MemoryExecutionState()
    running: Running = await make_service(state=state)
    resting = resting_buy()
    await running.publish(resting)
    await eventually(lambda: [u.status for u in running.events(OrderUpdate)][-1:] == ["submitted"])

    await running.publish(ControlCommand(command="halt", reason="test", issued_by="tester"))
    await eventually(lambda: [u.status for u in running.events(OrderUpdate)][-1:] == ["cancelled"])
    assert halts(running) == [(True, "test", "tester")]
    blocked = resting_buy(5)
    await running.publish(blocked)
    await running.settle()
    assert rejections(running) == [(blocked.id, "halted")]
    assert state.halt_payload is not None
    await running.service.stop()

    restarted: Running = await make_service(state=state)
    assert halts(restarted) == [(True, "test", "tester")]
    still_blocked = resting_buy(6)
    await restarted.publish(still_blocked)
    await restarted.settle()
    assert rejections(restarted) == [(still_blocked.id, "halted")]

    await restarted.publish(ControlCommand(command="resume", issued_by="tester"))
    allowed = resting_buy(7)
    await restarted.publish(allowed)
    await eventually(lambda: [o.order_ref for o in sim.orders_received][-1:] == [allowed.id])
    assert [o.order_ref for o in sim.orders_received] == [resting.id, allowed.id]
    assert halts(restarted) == [(True, "test", "tester"), (False, "", "tester")]
    assert state.halt_payload is None


async def test_halt_set_while_down_cancels_orders_at_reconnect(
    make_service: Any, sim: Simulator
) -> None:
    """A halt recorded while execution was stopped cancels its working orders on start."""
    state = MemoryExecutionState()
    running: Running = await make_service(state=state)
    resting = resting_buy()
    await running.publish(resting)
    await eventually(lambda: [u.status for u in running.events(OrderUpdate)][-1:] == ["submitted"])
    await running.service.stop()
    command = ControlCommand(command="halt", reason="overnight")
    state.halt_payload = running.bus.codec.encode(command)

    restarted: Running = await make_service(state=state)
    await eventually(lambda: [o.status for o in sim.broker.orders.values()] == ["Cancelled"])
    await eventually(
        lambda: [u.status for u in restarted.events(OrderUpdate)][-1:] == ["cancelled"]
    )
