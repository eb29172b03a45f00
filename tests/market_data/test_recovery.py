"""Every simulator fault is survived: data flows again within a stated bound, never doubled."""

from __future__ import annotations

import logging
import os
import time

import pytest

from event_bus import InMemoryEventBus
from ibsim import Simulator
from market_data.model import MarketDataResubscribed, MarketDataStale, Tick
from market_data.service import MarketDataService
from tests.helpers import eventually
from tests.market_data.conftest import (
    SYMBOLS,
    ServiceFactory,
    connectivity_story,
    data_flowing,
    live_requests,
    of_type,
    our_sessions,
)

log = logging.getLogger(__name__)


def measured(what: str, seconds: float) -> None:
    """Recovery times, shown with `--log-cli-level=INFO`."""
    log.info(
        "%s %s: %.3f s", os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0], what, seconds
    )


EVERY_SYMBOL = (sorted(SYMBOLS), sorted(SYMBOLS))  # one reqMktData and one reqRealTimeBars each


async def started(
    make_service: ServiceFactory, bus: InMemoryEventBus, **settings: object
) -> MarketDataService:
    service = make_service(**settings)
    await service.start()
    await data_flowing(bus, 0, timeout=10)
    return service


def reasons(bus: InMemoryEventBus) -> list[str]:
    return [event.reason for event in of_type(bus.published, MarketDataResubscribed)]


async def recovered(bus: InMemoryEventBus, reason: str, count: int, timeout: float) -> float:
    """Seconds until the `count`-th resubscription for `reason`, then ticks and bars for every
    symbol published after it; fails the test after `timeout` seconds in all."""
    started_at = time.monotonic()

    def resubscription_index() -> int | None:
        seen = 0
        for index, event in enumerate(bus.published):
            if isinstance(event, MarketDataResubscribed) and event.reason == reason:
                seen += 1
                if seen == count:
                    return index
        return None

    await eventually(lambda: resubscription_index() is not None, timeout, message=reason)
    index = resubscription_index()
    assert index is not None
    await data_flowing(bus, index, timeout - (time.monotonic() - started_at))
    return time.monotonic() - started_at


async def test_socket_drop(
    make_service: ServiceFactory,
    bus: InMemoryEventBus,
    sim: Simulator,
) -> None:
    """The Gateway drops the socket: reconnect, resubscribe, ticks and bars again within 5 s."""
    await started(make_service, bus)
    sim.drop_all_clients()
    seconds = await recovered(bus, "connected", 2, timeout=5)
    measured("recovery_seconds", round(seconds, 3))
    assert live_requests(sim) == EVERY_SYMBOL
    assert connectivity_story(bus) == ["connected", "disconnected", "connected"]


async def test_gateway_restart_window(
    make_service: ServiceFactory,
    bus: InMemoryEventBus,
    sim: Simulator,
) -> None:
    """Connections refused for 3 s (a Gateway restart): data again within 3 s + 5 s."""
    await started(make_service, bus)
    sim.refuse_connections(3.0)
    seconds = await recovered(bus, "connected", 2, timeout=8)
    measured("recovery_seconds", round(seconds, 3))
    assert live_requests(sim) == EVERY_SYMBOL
    story = connectivity_story(bus)
    assert story[:2] == ["connected", "disconnected"] and story[-1] == "connected"
    assert set(story[2:-1]) == {"connect_failed"}


@pytest.mark.parametrize("restored_code", [1101, 1102])
async def test_ib_link_lost_and_restored(
    restored_code: int,
    make_service: ServiceFactory,
    bus: InMemoryEventBus,
    sim: Simulator,
) -> None:
    """1100 then 1101 (subscriptions lost) or 1102 (kept): resubscribed once each, data again
    within 3 s of the restore."""
    await started(make_service, bus)
    sim.connectivity_lost(restored_code=restored_code, after=0.5)
    seconds = await recovered(bus, f"ib_link_restored_{restored_code}", 1, timeout=3.5)
    measured("recovery_seconds_after_fault", round(seconds, 3))
    assert live_requests(sim) == EVERY_SYMBOL
    assert connectivity_story(bus) == ["connected", "ib_link_lost", "ib_link_restored"]
    assert reasons(bus) == ["connected", f"ib_link_restored_{restored_code}"]


async def test_market_data_farm_blip(
    make_service: ServiceFactory,
    bus: InMemoryEventBus,
    sim: Simulator,
) -> None:
    """2103, data paused 0.5 s, 2104: resubscribed once, data again within 3 s of the fault."""
    await started(make_service, bus)
    sim.farm_blip(pause_seconds=0.5)
    seconds = await recovered(bus, "market_data_farm_ok", 1, timeout=3.5)
    measured("recovery_seconds_after_fault", round(seconds, 3))
    assert live_requests(sim) == EVERY_SYMBOL
    assert connectivity_story(bus) == ["connected", "farm_broken", "farm_ok"]


async def test_live_updates_failed_10182(
    make_service: ServiceFactory,
    bus: InMemoryEventBus,
    sim: Simulator,
) -> None:
    """10182 on AAPL's bar request (its updates ended): only that request is made again, with a
    new reqId, and AAPL bars flow within 2 s."""
    service = await started(make_service, bus)
    old = {feed.name: dict(feed.request_ids) for feed in service.subscriptions}
    [session] = our_sessions(sim)
    # sim.send_error(10182) only reaches keepUpToDate history requests: say it as TWS would
    session.realtime_bars.pop(old["AAPL"]["bars"])
    session.send_error(old["AAPL"]["bars"], 10182, "Failed to request live updates (disconnected).")
    seconds = await recovered(bus, "error_10182", 1, timeout=2)
    measured("recovery_seconds", round(seconds, 3))
    new = {feed.name: dict(feed.request_ids) for feed in service.subscriptions}
    assert new["AAPL"]["bars"] != old["AAPL"]["bars"]
    assert {**new, "AAPL": {**new["AAPL"], "bars": old["AAPL"]["bars"]}} == old
    assert live_requests(sim) == EVERY_SYMBOL
    [event] = of_type(bus.published, MarketDataResubscribed)[1:]
    assert event.symbols == ("AAPL",)


async def test_silent_feed_is_resubscribed_by_the_watchdog(
    make_service: ServiceFactory,
    bus: InMemoryEventBus,
    sim: Simulator,
) -> None:
    """Quotes that stop without a word are resubscribed after 4 x the tick interval (0.4 s),
    `MarketDataStale` says so per symbol, and ticks flow again within 2 s."""
    await started(
        make_service,
        bus,
        stale_after_factor=4.0,
        expected_tick_interval_seconds=0.1,
        expected_bar_interval_seconds=1.0,
    )
    [session] = our_sessions(sim)
    started_at = time.monotonic()
    session.quotes.clear()  # TWS forgets the requests, as after a farm blip that killed the feed
    await eventually(
        lambda: (
            {(e.symbol, e.stream) for e in of_type(bus.published, MarketDataStale)}
            == {(symbol, "ticks") for symbol in SYMBOLS}
        ),
        timeout=2,
        message="stale ticks reported",
    )
    mark = len(bus.published)
    await eventually(
        lambda: {e.symbol for e in of_type(bus.published[mark:], Tick)} == set(SYMBOLS), timeout=2
    )
    measured("recovery_seconds", round(time.monotonic() - started_at, 3))
    assert live_requests(sim) == EVERY_SYMBOL
    stale = of_type(bus.published, MarketDataStale)[0]
    assert (stale.stream, stale.expected_interval_seconds) == ("ticks", 0.1)
    assert stale.silent_seconds >= 0.4  # rounded to the ms: 0.40014 s silent reads 0.4


async def test_drop_restart_and_farm_blip_in_a_row(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """Socket drop, a 2 s restart window, then a farm blip: every symbol's ticks and bars
    resume after each, and the connectivity events tell the story in order."""
    await started(make_service, bus)
    sim.drop_all_clients()
    await recovered(bus, "connected", 2, timeout=5)
    sim.refuse_connections(2.0)
    await recovered(bus, "connected", 3, timeout=7)
    sim.farm_blip(pause_seconds=0.3)
    await recovered(bus, "market_data_farm_ok", 1, timeout=3)
    story = [state for state in connectivity_story(bus) if state != "connect_failed"]
    assert story == [
        "connected",
        "disconnected",
        "connected",
        "disconnected",
        "connected",
        "farm_broken",
        "farm_ok",
    ]
    assert live_requests(sim) == EVERY_SYMBOL
