"""Fixtures for execution: services wired to the simulator, each on its own in-memory bus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from config import ExecutionSettings, IBSettings
from event_bus import Event, InMemoryEventBus
from execution import ExecutionService
from execution.state import ExecutionState, MemoryExecutionState
from ibsim import Simulator
from market_data.model import Tick

ServiceFactory = Callable[..., "Running"]

DEFAULTS: dict[str, Any] = {
    "trading_mode": "paper",
    "live_account": "",
    "dry_run": False,
    "allowed_symbols": ("AAPL", "MSFT"),
    "commission_wait_seconds": 2.0,
    "guard_timeout_seconds": 5.0,
    "broker_sync_timeout_seconds": 3.0,
}


def execution_settings(**overrides: Any) -> ExecutionSettings:
    """Settings from the values given here only (no environment, no .env)."""
    return ExecutionSettings(_env_file=None, **{**DEFAULTS, **overrides})  # type: ignore[call-arg]


class Running:
    """One service instance (one 'process'): its own bus, a state that may outlive it."""

    def __init__(self, service: ExecutionService, bus: InMemoryEventBus) -> None:
        self.service = service
        self.bus = bus

    def events(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.bus.published if isinstance(event, kind)]

    async def publish(self, event: Event) -> None:
        await self.bus.publish(event)

    async def mark(self, symbol: str, price: float) -> None:
        """A tick, so market orders have a price for the notional check."""
        await self.bus.publish(Tick(symbol=symbol, last=price, bid=price, ask=price))
        await self.bus.drain()

    async def settle(self) -> None:
        await self.bus.drain()
        await self.service.wait_idle()


@pytest.fixture
async def make_service(sim: Simulator) -> AsyncIterator[Callable[..., Any]]:
    """`await make_service(state=None, port=None, **settings)` -> a started `Running`."""
    made: list[ExecutionService] = []

    async def factory(
        state: ExecutionState | None = None, port: int | None = None, **overrides: Any
    ) -> Running:
        bus = InMemoryEventBus()
        ib_settings = IBSettings(
            _env_file=None,  # type: ignore[call-arg]
            host="127.0.0.1",
            port=port or sim.port,
            client_id=10,
            connect_timeout_seconds=3.0,
        )
        service = ExecutionService(
            execution_settings(**overrides),
            ib_settings,
            bus,
            state if state is not None else MemoryExecutionState(),
            backoff_cap_seconds=0.5,
        )
        made.append(service)
        await service.start()
        return Running(service, bus)

    yield factory
    for service in made:
        await service.stop()
