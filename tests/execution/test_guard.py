"""The paper/live guard: pure account rules, and the service refusing to start against IB."""

from __future__ import annotations

from typing import Any

import pytest

from execution import GuardRefused
from execution.guard import port_warning, trading_account
from execution.model import TradingHalted
from ibsim import SimConfig, Simulator
from tests.execution.conftest import Running


@pytest.mark.parametrize(
    ("mode", "live_account", "accounts", "expected"),
    [
        ("paper", "", ["DU1234567"], "DU1234567"),
        ("paper", "", ["DU1", "DU2"], "DU1"),
        ("paper", "U1234567", ["DU1234567"], "DU1234567"),  # LIVE_ACCOUNT ignored in paper
        ("live", "U1234567", ["U1234567"], "U1234567"),
    ],
)
def test_guard_allows(mode: Any, live_account: str, accounts: list[str], expected: str) -> None:
    """Paper mode trades only DU accounts; live mode only the named live account."""
    assert trading_account(mode, live_account, accounts) == expected


@pytest.mark.parametrize(
    ("mode", "live_account", "accounts", "says"),
    [
        ("paper", "", ["U1234567"], "non-paper account(s) U1234567"),
        ("paper", "", ["DU1", "U2"], "non-paper account(s) U2"),
        ("paper", "", [], "no managed account"),
        ("live", "", ["U1234567"], "needs LIVE_ACCOUNT"),
        ("live", "U7654321", ["U1234567"], "IB manages U1234567"),
        ("live", "DU1234567", ["DU1234567"], "is a paper account"),
        ("live", "U1234567", ["U1234567", "DU1"], "paper account(s) DU1"),
    ],
)
def test_guard_refuses(mode: Any, live_account: str, accounts: list[str], says: str) -> None:
    """Every contradiction between mode, LIVE_ACCOUNT and IB's accounts is refused, saying why."""
    with pytest.raises(GuardRefused, match=says.replace("(", r"\(").replace(")", r"\)")):
        trading_account(mode, live_account, accounts)


@pytest.mark.parametrize(
    ("mode", "port", "warns"),
    [
        ("paper", 4002, False),
        ("paper", 7497, False),
        ("paper", 7496, True),
        ("paper", 4001, True),
        ("live", 4001, False),
        ("live", 7497, True),
        ("live", 4002, True),
        ("live", 5555, False),
    ],
)
def test_port_contradicting_the_mode_is_a_warning(mode: Any, port: int, warns: bool) -> None:
    """Another mode's default port gives a warning, never a refusal (ports are configurable)."""
    assert (port_warning(mode, port) is not None) == warns


async def test_paper_mode_refuses_a_live_account_at_start(
    make_service: Any, sim: Simulator
) -> None:
    """Against a Gateway logged into U1234567, paper mode raises GuardRefused from start()."""
    async with Simulator(SimConfig(port=0, account="U1234567")) as live_gateway:
        with pytest.raises(GuardRefused, match="TRADING_MODE=paper"):
            await make_service(port=live_gateway.port)
        assert live_gateway.orders_received == []


async def test_live_mode_refuses_another_account_at_start(
    make_service: Any, sim: Simulator
) -> None:
    """Live mode with LIVE_ACCOUNT=U7654321 refuses a Gateway managing another account."""
    async with Simulator(SimConfig(port=0, account="U1234567")) as live_gateway:
        with pytest.raises(GuardRefused, match="LIVE_ACCOUNT=U7654321"):
            await make_service(port=live_gateway.port, trading_mode="live", live_account="U7654321")


async def test_live_mode_refuses_a_paper_account_at_start(
    make_service: Any, sim: Simulator
) -> None:
    """Live mode refuses the paper Gateway even when LIVE_ACCOUNT names its DU account."""
    with pytest.raises(GuardRefused, match="paper account"):
        await make_service(trading_mode="live", live_account="DU0000001")


async def test_live_mode_trades_the_named_live_account(make_service: Any, sim: Simulator) -> None:
    """Live mode with the matching LIVE_ACCOUNT starts ready, nothing halted."""
    async with Simulator(SimConfig(port=0, account="U1234567")) as live_gateway:
        running: Running = await make_service(
            port=live_gateway.port, trading_mode="live", live_account="U1234567"
        )
        assert running.service.ready
        assert running.events(TradingHalted) == []
        await running.service.stop()
