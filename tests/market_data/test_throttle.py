"""Many instruments against ib_async's request throttle: the watchdog waits for the queue."""

from __future__ import annotations

import pytest

from event_bus import InMemoryEventBus
from ibsim import SimConfig, Simulator
from market_data.model import MarketDataStale, Tick
from tests.helpers import eventually
from tests.market_data.conftest import ServiceFactory, of_type

MANY = tuple(f"SYM{n:04d}" for n in range(100))


@pytest.fixture
def sim_config() -> SimConfig:
    # A step every 25 ms (4,000 quotes/s in all), not the other tests' 5 ms: 20,000 quotes/s,
    # simulator and daemon in one process, left a slow machine's loop 0.4 s late, and streams
    # that were in fact quoting looked silent.
    return SimConfig(port=0, seed=1, speed=10.0, symbols=(), synthetic_symbols=len(MANY))


async def test_requests_still_queued_by_the_throttle_are_not_called_stale(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """100 instruments: ib_async sends 45 requests a second, so the last quote request leaves
    ~2 s after the first, beyond the 0.4 s a quote may be silent. Every symbol streams, and no
    stream is called stale (nor requested again) for the time its request sat in the queue."""
    service = make_service(
        symbols=MANY,
        market_data_bars=False,
        stale_after_factor=4.0,
        expected_tick_interval_seconds=0.1,
        market_data_request_timeout_seconds=20.0,
    )
    await service.start()
    await eventually(
        lambda: {tick.symbol for tick in of_type(bus.published, Tick)} == set(MANY),
        timeout=30,
        message="every symbol streams",
    )
    assert of_type(bus.published, MarketDataStale) == []
