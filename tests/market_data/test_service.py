"""The market data service against the simulator: ticks, bars and instruments on the bus."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from ib_async import IB, Stock
from structlog.testing import capture_logs

from broker.framing import CATCH_UP_BYTES
from config import IBSettings, InstrumentSetting
from event_bus import Channels, InMemoryEventBus, RedisEventBus
from ibsim import SimConfig, Simulator
from main import freeze_once_subscribed
from market_data.bars import bar_id
from market_data.convert import tick_from_ticker
from market_data.model import (
    Bar,
    InstrumentUnavailable,
    MarketDataResubscribed,
    MarketDataStale,
    Tick,
)
from market_data.service import build_market_data
from tests.helpers import eventually
from tests.market_data.conftest import (
    SPEED,
    SYMBOLS,
    ServiceFactory,
    connectivity_story,
    data_flowing,
    live_requests,
    market_data_settings,
    of_type,
    our_sessions,
)


async def test_ticks_and_bars_for_every_symbol(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """Each configured symbol gets one reqMktData and one reqRealTimeBars; both reach the bus."""
    service = make_service()
    await service.start()
    await data_flowing(bus, 0, timeout=10)
    assert live_requests(sim) == (sorted(SYMBOLS), sorted(SYMBOLS))
    [subscribed] = of_type(bus.published, MarketDataResubscribed)
    assert subscribed == MarketDataResubscribed(
        id=subscribed.id, ts=subscribed.ts, reason="connected", symbols=SYMBOLS
    )


async def test_once_subscribed_the_daemon_freezes_what_ib_async_made_for_the_requests(
    make_service: ServiceFactory, bus: InMemoryEventBus
) -> None:
    """`main.freeze_once_subscribed` waits for the first requests, then freezes: the tickers
    ib_async made for them (after start-up's freeze) are no longer walked by the collector."""
    service = make_service()
    daemon = cast(Any, SimpleNamespace(modules=[service]))
    freezing = asyncio.create_task(freeze_once_subscribed(daemon, timeout=10))
    await service.start()
    try:
        await asyncio.wait_for(freezing, 10)
        tickers = [feed.ticker for feed in service.subscriptions if feed.ticker is not None]
        assert len(tickers) == len(SYMBOLS)
        tracked = {id(obj) for obj in gc.get_objects()}
        assert not any(id(ticker) in tracked for ticker in tickers)
    finally:
        gc.unfreeze()
    tracked = {id(obj) for obj in gc.get_objects()}
    assert all(id(ticker) in tracked for ticker in tickers)


async def test_stop_cancels_every_subscription(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """stop() cancels the requests, disconnects and says so on the connectivity channel."""
    service = make_service()
    await service.start()
    await data_flowing(bus, 0, timeout=10)
    await service.stop()
    await eventually(lambda: not our_sessions(sim), message="session closed")
    assert service.subscriptions.requests == {}
    assert connectivity_story(bus) == ["connected", "disconnected"]


async def test_bars_aggregate_the_five_second_bars_exactly(
    make_service: ServiceFactory, bus: InMemoryEventBus, connect_ib: object
) -> None:
    """Each 10-second Bar equals the aggregate of the 5-second bars a second client received."""
    observer: IB = await connect_ib(client_id=99)  # type: ignore[operator]
    [contract] = await observer.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    raw = observer.reqRealTimeBars(contract, 5, "TRADES", False)
    service = make_service(symbols=("AAPL",))
    await service.start()

    def aapl_bars() -> list[Bar]:
        return [e for e in of_type(bus.published, Bar) if e.symbol == "AAPL"]

    await eventually(lambda: len(aapl_bars()) >= 3, timeout=10, message="three bars")
    by_start = {int(bar.time.timestamp()): bar for bar in raw}
    for bar in aapl_bars():
        start = int(bar.start.timestamp())
        pieces = [by_start[start], by_start[start + 5]]
        volume = pieces[0].volume + pieces[1].volume
        assert bar == Bar(
            id=bar_id("AAPL", datetime.fromtimestamp(start, UTC), 10),
            ts=bar.ts,
            symbol="AAPL",
            start=datetime.fromtimestamp(start, UTC),
            seconds=10,
            open=pieces[0].open_,
            high=max(p.high for p in pieces),
            low=min(p.low for p in pieces),
            close=pieces[1].close,
            volume=volume,
            wap=(pieces[0].wap * pieces[0].volume + pieces[1].wap * pieces[1].volume) / volume,
            trade_count=pieces[0].count + pieces[1].count,
        )


@pytest.mark.parametrize(
    "sim_config",
    [SimConfig(port=0, seed=1, speed=SPEED, symbols=SYMBOLS, market_data_lines=2)],
)
async def test_a_symbol_beyond_the_market_data_lines_is_given_up_not_asked_again(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """IB refuses a quote past the account's lines (101): the instrument is reported unavailable
    with what would help, the others stream, and the watchdog does not ask for it again and
    again (it would be refused every time)."""
    service = make_service(stale_after_factor=1_000.0, expected_tick_interval_seconds=0.01)
    await service.start()
    await eventually(
        lambda: bool(of_type(bus.published, InstrumentUnavailable)), message="one refused"
    )
    [refused] = of_type(bus.published, InstrumentUnavailable)
    assert refused.code == 101 and "market data lines" in refused.reason
    streaming = sorted(set(SYMBOLS) - {refused.symbol})
    await data_flowing(bus, 0, timeout=10, symbols=streaming)
    assert service.unavailable == {refused.symbol}
    assert service.status()["unavailable"] == refused.symbol
    assert live_requests(sim) == (streaming, streaming)
    with capture_logs() as logs:
        service.watch(time.monotonic() + 60)  # every stream silent past its 10 s limit
    assert {line["symbol"] for line in logs if line["event"] == "market_data_stale"} == set(
        streaming
    )
    await eventually(lambda: live_requests(sim) == (streaming, streaming), message="asked again")
    assert service.unavailable == {refused.symbol}


async def test_unknown_symbols_are_reported_and_the_others_go_on(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """An unknown stock and a future the simulator lacks are reported; AAPL still streams."""
    future = InstrumentSetting(
        symbol="ES", sec_type="FUT", exchange="CME", last_trade_date="202512"
    )
    service = make_service(symbols=("AAPL", "NOPE"), instruments=(future,))
    await service.start()
    await data_flowing(bus, 0, timeout=10, symbols=["AAPL"])
    unavailable = of_type(bus.published, InstrumentUnavailable)
    assert [(e.symbol, e.code) for e in unavailable] == [("NOPE", None), ("ES-202512", None)]
    assert service.unavailable == {"NOPE", "ES-202512"}
    assert live_requests(sim) == (["AAPL"], ["AAPL"])


async def test_delayed_market_data_type_is_requested_and_ticks_flow(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """MARKET_DATA_TYPE=delayed sends reqMarketDataType(3); delayed ticks become Ticks."""
    service = make_service(market_data_type="delayed", market_data_bars=False)
    await service.start()
    await eventually(lambda: {t.symbol for t in of_type(bus.published, Tick)} == set(SYMBOLS))
    assert [session.market_data_type for session in our_sessions(sim)] == [3]
    assert live_requests(sim) == (sorted(SYMBOLS), [])


class TestConstantPrices:
    """With a zero-volatility walk every quote is known in advance."""

    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig(port=0, seed=1, speed=SPEED, symbols=SYMBOLS, step_volatility=0.0)

    async def test_tick_fields_match_the_quote(
        self, make_service: ServiceFactory, bus: InMemoryEventBus
    ) -> None:
        """A Tick carries bid, ask, last (the simulator's quote), positive sizes and a UTC time."""
        service = make_service(market_data_bars=False)
        await service.start()
        await eventually(lambda: {t.symbol for t in of_type(bus.published, Tick)} == {*SYMBOLS})
        ticks = {t.symbol: t for t in of_type(bus.published, Tick)}
        quotes = {s: (t.bid, t.ask, t.last) for s, t in ticks.items()}
        assert quotes == {
            "AAPL": (189.98, 190.02, 190.0),
            "MSFT": (409.96, 410.04, 410.0),
            "SPY": (499.95, 500.05, 500.0),
        }
        for tick in ticks.values():
            sizes = (tick.bid_size, tick.ask_size, tick.last_size)
            assert all(size is not None and size > 0 and size % 100 == 0 for size in sizes)
            assert tick.volume is not None and tick.volume > 0
            assert tick.exchange_time is not None and tick.exchange_time.tzinfo is not None


@pytest.mark.integration
async def test_ticks_and_bars_through_redis(
    make_service: ServiceFactory,
    redis_url: str,
    channels: Channels,
    clean_keys: None,
) -> None:
    """Through a real Redis: Ticks and Bars arrive on trading:tick:* and trading:bar:*."""
    redis_bus = RedisEventBus.from_url(redis_url, timeout=2.0, channels=channels)
    received: list[Tick | Bar] = []

    async def record(event: Tick | Bar) -> None:  # type: ignore[misc]
        received.append(event)

    await redis_bus.subscribe(channels.instrument("tick", "*"), record)  # type: ignore[arg-type]
    await redis_bus.subscribe(channels.instrument("bar", "*"), record)  # type: ignore[arg-type]
    await redis_bus.start()
    service = make_service(bus_override=redis_bus, symbols=("AAPL",))
    try:
        await service.start()
        await eventually(
            lambda: {type(e) for e in received} == {Tick, Bar}, timeout=10, message="via Redis"
        )
    finally:
        await service.stop()
        await redis_bus.stop(timeout=2.0)
    assert {e.symbol for e in received} == {"AAPL"}


async def test_build_market_data_uses_ib_client_id(sim: Simulator, bus: InMemoryEventBus) -> None:
    """The factory main.py calls: clientId IB_CLIENT_ID, name market_data, data on the bus."""
    ib_settings = IBSettings(
        _env_file=None,  # type: ignore[call-arg]
        host="127.0.0.1",
        port=sim.port,
        client_id=21,
        connect_timeout_seconds=2.0,
    )
    service = build_market_data(market_data_settings(symbols=("SPY",)), ib_settings, bus)
    assert (service.name, service.connection.client_id) == ("market_data", 21)
    await service.start()
    try:
        await data_flowing(bus, 0, timeout=10, symbols=["SPY"])
        assert [s.client_id for s in sim.sessions if s.connected] == [21]
    finally:
        await service.stop()


async def test_falling_behind_is_said_once_and_so_is_catching_up(
    make_service: ServiceFactory, bus: InMemoryEventBus
) -> None:
    """While IB's data waits unread beyond the threshold the watchdog says so, once; when the
    daemon reads it again, it says it caught up."""
    service = make_service()
    await service.start()
    await data_flowing(bus, 0, timeout=10)
    service.falling_behind_bytes = 2_000
    transport = service.connection.ib.client.conn.transport

    def behind() -> bool:
        service.check_falling_behind(time.monotonic())
        return service.falling_behind

    with capture_logs() as logs:
        transport.pause_reading()
        try:
            await eventually(behind, timeout=10, message="IB's data piles up unread")
            assert behind()  # still behind, not said again
        finally:
            transport.resume_reading()
        await eventually(lambda: not behind(), timeout=10, message="read again in time")
    said = [line["event"] for line in logs]
    assert said.count("market_data_falling_behind") == 1
    assert said.count("market_data_caught_up") == 1


async def test_no_stream_is_called_stale_while_ibs_data_waits_unread(
    make_service: ServiceFactory, bus: InMemoryEventBus
) -> None:
    """Behind on IB's socket, the silence is the daemon's own: the watchdog calls no stream
    stale; caught up, silence counts from then, and a stream silent past its limit after that
    is called stale again. (Times are the watchdog's `now`, given: no waiting.)"""
    limit = 100.0  # for ticks, 1,000 x 0.1 s: the service's own watchdog looks every 25 s
    service = make_service(stale_after_factor=1_000.0, expected_tick_interval_seconds=0.1)
    await service.start()
    await data_flowing(bus, 0, timeout=10)
    service.falling_behind_bytes = 2_000
    transport = service.connection.ib.client.conn.transport
    late = time.monotonic() + limit + 1  # every stream has been silent past its limit

    def behind() -> bool:
        service.check_falling_behind(late)
        return service.falling_behind

    def called_stale(now: float) -> list[tuple[str, str]]:
        with capture_logs() as logs:
            service.watch(now)
        return [
            (line["symbol"], line["stream"])
            for line in logs
            if line["event"] == "market_data_stale"
        ]

    transport.pause_reading()
    try:
        await eventually(behind, timeout=10, message="IB's data piles up unread")
        assert called_stale(late) == []
    finally:
        transport.resume_reading()
    await eventually(lambda: not behind(), timeout=10, message="read again in time")
    assert called_stale(late + limit / 2) == []
    assert sorted(called_stale(late + limit + 1)) == [(s, "ticks") for s in sorted(SYMBOLS)]
    await eventually(
        lambda: len(of_type(bus.published, MarketDataStale)) == len(SYMBOLS),
        timeout=5,
        message="MarketDataStale published for each",
    )


QUOTE = ("bid", "bid_size", "ask", "ask_size", "last", "last_size", "volume")


async def test_a_backlog_is_conflated_to_the_latest_quote_per_symbol(
    make_service: ServiceFactory, bus: InMemoryEventBus, sim: Simulator
) -> None:
    """IB's data left unread past CATCH_UP_BYTES is read as a catch-up batch: fewer Ticks than
    reads, counted in status, and each symbol's last Tick is its latest quote."""
    service = make_service()
    await service.start()
    await data_flowing(bus, 0, timeout=10)
    connection = service.connection
    transport = connection.ib.client.conn.transport
    transport.pause_reading()
    try:
        await eventually(
            lambda: (connection.unread_bytes() or 0) > 4 * CATCH_UP_BYTES,
            timeout=10,
            message="a backlog of IB data",
        )
        sim.faults.market_data_outages += 1  # the quotes stop: the backlog is all there is
    finally:
        transport.resume_reading()
    try:
        stats = connection.read_stats()  # live figures
        reads_before, conflated_before = stats.reads, stats.reads_conflated
        published_before = len(bus.published)
        await eventually(lambda: connection.unread_bytes() == 0, timeout=10, message="read")
        assert stats.catch_up_batches >= 1 and stats.reads_conflated > conflated_before
        assert service.status()["ib_reads_conflated"] == str(stats.reads_conflated)
        tickers = {
            service.subscriptions.by_con_id[t.contract.conId].name: t
            for t in connection.ib.tickers()
            if t.contract is not None and t.contract.conId in service.subscriptions.by_con_id
        }
        assert set(tickers) == set(SYMBOLS)
        latest = {
            symbol: tuple(getattr(tick_from_ticker(symbol, ticker), f) for f in QUOTE)
            for symbol, ticker in tickers.items()
        }

        def last_ticks() -> dict[str, tuple[Any, ...]]:
            ticks = of_type(bus.published, Tick)
            return {tick.symbol: tuple(getattr(tick, f) for f in QUOTE) for tick in ticks}

        await eventually(lambda: last_ticks() == latest, timeout=10, message="latest quotes out")
        reads = stats.reads - reads_before
        reported = reads - (stats.reads_conflated - conflated_before)
        ticks = len(of_type(bus.published[published_before:], Tick))
        # a Tick per symbol at most per reported read, where every read would make up to one
        assert 0 < ticks <= len(SYMBOLS) * reported < len(SYMBOLS) * reads
    finally:
        sim.faults.market_data_outages -= 1
