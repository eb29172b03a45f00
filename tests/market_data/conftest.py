"""Fixtures for the market data tests: a fast simulator and services pointed at it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

from broker.connection import IBConnection
from broker.model import ConnectivityChanged
from config import IBSettings, MarketDataSettings
from event_bus import Event, InMemoryEventBus
from ibsim import SimConfig, Simulator
from ibsim.session import ClientSession
from market_data.model import Bar, Tick
from market_data.service import MarketDataService
from tests.helpers import eventually

SYMBOLS = ("AAPL", "MSFT", "SPY")
CLIENT_ID = 11
# At speed 50 the simulator sends a quote every 5 ms and a 5-second bar every 100 ms.
SPEED = 50.0

ServiceFactory = Callable[..., MarketDataService]


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(port=0, seed=1, speed=SPEED, symbols=SYMBOLS)


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    memory = InMemoryEventBus()
    yield memory
    await memory.stop()


def market_data_settings(**overrides: Any) -> MarketDataSettings:
    """Settings for tests: 10-second bars, staleness off unless asked, no .env file read."""
    values: dict[str, Any] = {
        "symbols": SYMBOLS,
        "bar_seconds": 10,
        "stale_after_factor": 0.0,
        "market_data_request_timeout_seconds": 3.0,
    }
    values.update(overrides)
    return MarketDataSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def make_service(sim: Simulator, bus: InMemoryEventBus) -> AsyncIterator[ServiceFactory]:
    """Builds started-on-demand services on the simulator (fast backoff); stops them after."""
    made: list[MarketDataService] = []

    def factory(bus_override: Any = None, **overrides: Any) -> MarketDataService:
        target = bus_override or bus
        ib_settings = IBSettings(
            _env_file=None,  # type: ignore[call-arg]
            host="127.0.0.1",
            port=sim.port,
            client_id=CLIENT_ID,
            connect_timeout_seconds=2.0,
        )
        connection = IBConnection(
            ib_settings, target, client="market_data", client_id=CLIENT_ID, backoff_cap_seconds=0.3
        )
        service = MarketDataService(market_data_settings(**overrides), connection, target)
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.stop()


def our_sessions(sim: Simulator) -> list[ClientSession]:
    return [s for s in sim.sessions if s.client_id == CLIENT_ID and s.connected]


def live_requests(sim: Simulator) -> tuple[list[str], list[str]]:
    """(symbols with a reqMktData, symbols with reqRealTimeBars) the simulator holds for us."""
    quotes: list[str] = []
    bars: list[str] = []
    for session in our_sessions(sim):
        quotes += session.quotes.values()
        bars += session.realtime_bars.values()
    return sorted(quotes), sorted(bars)


def of_type(events: Iterable[Event], kind: type[Event]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def symbols_with_data(events: Iterable[Event]) -> tuple[set[str], set[str]]:
    """(symbols that had a Tick, symbols that had a Bar)."""
    ticks, bars = set(), set()
    for event in events:
        if isinstance(event, Tick):
            ticks.add(event.symbol)
        elif isinstance(event, Bar):
            bars.add(event.symbol)
    return ticks, bars


async def data_flowing(
    bus: InMemoryEventBus, since: int, timeout: float, symbols: Iterable[str] = SYMBOLS
) -> float:
    """Seconds until every symbol had a Tick and a Bar among the events published after index
    `since`; fails the test after `timeout`."""
    started = time.monotonic()
    wanted = set(symbols)

    def flowing() -> bool:
        ticks, bars = symbols_with_data(bus.published[since:])
        return wanted <= ticks and wanted <= bars

    await eventually(flowing, timeout=timeout, message="ticks and bars for every symbol")
    return time.monotonic() - started


def connectivity_story(bus: InMemoryEventBus) -> list[str]:
    """The connectivity states in order, without the farm-OK notices TWS sends at every
    connect (a farm_ok is kept only when it ends a farm_broken)."""
    story: list[str] = []
    for event in of_type(bus.published, ConnectivityChanged):
        if event.state != "farm_ok" or story[-1:] == ["farm_broken"]:
            story.append(event.state)
    return story
