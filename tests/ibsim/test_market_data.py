"""Market data end to end: contract details, ticks, real-time and historical bars, determinism."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

from ib_async import IB, BarDataList, RealTimeBarList, Stock

from ibsim import SimConfig, Simulator
from tests.fixtures.ibsim import connect_ib_to
from tests.helpers import eventually


async def test_qualify_known_symbol(ib: IB) -> None:
    """qualifyContracts fills conId, primary exchange and trading class from contract details."""
    [contract] = await ib.qualifyContractsAsync(Stock("MSFT", "SMART", "USD"))
    assert contract == Stock(
        "MSFT",
        "SMART",
        "USD",
        conId=272093,
        primaryExchange="NASDAQ",
        localSymbol="MSFT",
        tradingClass="NMS",
    )


async def test_unknown_symbol_gets_error_200(ib: IB) -> None:
    """reqContractDetails for an unknown symbol answers error 200 and no details."""
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, message, contract: codes.append(code)
    assert await ib.reqContractDetailsAsync(Stock("NOPE", "SMART", "USD")) == []
    assert codes == [200]


async def test_ticks_stream_bid_ask_last(ib: IB, sim: Simulator) -> None:
    """reqMktData streams bid < ask, last and sizes; cancelling stops the stream."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(contract)
    await eventually(lambda: len(ticker.ticks) > 0 and ticker.bid > 0 and ticker.last > 0)
    assert ticker.bid < ticker.ask
    assert ticker.bidSize > 0 and ticker.askSize > 0 and ticker.lastSize > 0
    assert ticker.marketDataType == 1
    updates = asyncio.Event()
    ticker.updateEvent += lambda _: updates.set()
    await asyncio.wait_for(updates.wait(), 2)
    ib.cancelMktData(contract)
    await eventually(lambda: all(not session.quotes for session in sim.sessions))


async def test_delayed_market_data_uses_delayed_tick_types(ib: IB) -> None:
    """After reqMarketDataType(3), ticks come as delayed types (66/67/68) and type 3."""
    ib.reqMarketDataType(3)
    [contract] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    ticker = ib.reqMktData(contract)
    await eventually(lambda: {66, 67, 68} <= {tick.tickType for tick in ticker.ticks})
    assert ticker.marketDataType == 3


async def test_tick_listener_sees_every_tick_sent(ib: IB, sim: Simulator) -> None:
    """The tick listener is called with (symbol, last, perf_counter_ns) for each tick batch."""
    seen: list[tuple[str, float, int]] = []
    sim.tick_listener = lambda symbol, last, sent_ns: seen.append((symbol, last, sent_ns))
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    ib.reqMktData(contract)
    await eventually(lambda: len(seen) >= 3)
    assert {symbol for symbol, _, _ in seen} == {"AAPL"}
    assert sim.ticks_sent >= len(seen)


async def test_real_time_bars_arrive_every_five_simulated_seconds(ib: IB) -> None:
    """reqRealTimeBars delivers consistent 5-second OHLC bars, 5 s apart."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    bars: RealTimeBarList = ib.reqRealTimeBars(contract, 5, "TRADES", False)
    await eventually(lambda: len(bars) >= 2)
    first, second = bars[0], bars[1]
    assert (second.time - first.time).total_seconds() == 5
    assert all(
        bar.low <= min(bar.open_, bar.close) <= max(bar.open_, bar.close) <= bar.high
        for bar in bars
    )
    assert all(bar.volume > 0 and bar.count > 0 for bar in bars)
    ib.cancelRealTimeBars(bars)


async def test_historical_bars(ib: IB) -> None:
    """reqHistoricalData returns the bars the duration asks for, ending at the current price."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    bars = await ib.reqHistoricalDataAsync(contract, "", "3600 S", "1 min", "TRADES", True)
    assert len(bars) == 60
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
    assert [(b.date - a.date).total_seconds() for a, b in itertools.pairwise(bars)] == [60.0] * 59


async def test_historical_daily_bars_are_dated(ib: IB) -> None:
    """Daily bars carry a plain date."""
    [contract] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    bars = await ib.reqHistoricalDataAsync(contract, "", "10 D", "1 day", "TRADES", True)
    assert len(bars) == 10
    assert all(type(bar.date).__name__ == "date" for bar in bars)


async def test_keep_up_to_date_updates_the_last_bar(ib: IB) -> None:
    """keepUpToDate=True keeps sending historicalDataUpdate for the bar in progress."""
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    bars: BarDataList = await ib.reqHistoricalDataAsync(
        contract, "", "60 S", "5 secs", "TRADES", True, keepUpToDate=True
    )
    initial = len(bars)
    updates: list[bool] = []
    bars.updateEvent += lambda bar_list, has_new_bar: updates.append(has_new_bar)
    await eventually(lambda: True in updates, message="a new bar")
    assert len(bars) > initial
    ib.cancelHistoricalData(bars)


def _price_path(seed: int, steps: int) -> list[float]:
    sim = Simulator(SimConfig(port=0, seed=seed))
    path = []
    for _ in range(steps):
        sim.advance()
        instrument = sim.instruments["AAPL"]
        sim.catch_up(instrument)
        path.append(instrument.last)
    return path


def test_same_seed_same_prices() -> None:
    """Prices are a function of the seed and the step, not of who watches them."""
    assert _price_path(7, 50) == _price_path(7, 50)
    assert _price_path(7, 50) != _price_path(8, 50)


def test_synthetic_universe_for_benchmarks() -> None:
    """synthetic_symbols=N adds N symbols with distinct conIds and positive prices."""
    sim = Simulator(SimConfig(port=0, symbols=("AAPL",), synthetic_symbols=1000))
    assert len(sim.instruments) == 1001
    assert len({i.con_id for i in sim.instruments.values()}) == 1001
    assert min(i.last for i in sim.instruments.values()) > 0


async def test_paced_quotes_spread_over_the_step() -> None:
    """paced_quotes: each step quotes every symbol once, spread over the step, not in a burst."""
    config = SimConfig(
        port=0, symbols=(), synthetic_symbols=10, tick_interval=0.1, paced_quotes=True
    )
    async with Simulator(config) as sim:
        sent: dict[float, list[tuple[str, int]]] = defaultdict(list)
        sim.tick_listener = lambda symbol, _last, ns: sent[sim.epoch()].append((symbol, ns))
        ib = await connect_ib_to(sim.port)
        contracts = [Stock(name, "SMART", "USD") for name in config.universe()]
        await ib.qualifyContractsAsync(*contracts)
        tickers = [ib.reqMktData(contract) for contract in contracts]
        await eventually(lambda: sum(len(quotes) == 10 for quotes in sent.values()) >= 3)
        await eventually(lambda: all(ticker.last > 0 for ticker in tickers))
        for quotes in [q for q in sent.values() if len(q) == 10]:
            assert sorted(symbol for symbol, _ in quotes) == config.universe()
            span_ms = (quotes[-1][1] - quotes[0][1]) / 1e6
            assert span_ms >= 50, span_ms  # ten slices 10 ms apart over a 100 ms step
        ib.disconnect()


async def test_paced_step_moves_each_symbol_when_its_quote_is_written() -> None:
    """paced_quotes: a symbol moves when its quote goes out, not all at the start of the step
    (which held the loop ~3 us per symbol), and stays on the seeded path; a symbol streamed for
    bars only still moves every step."""
    config = SimConfig(
        port=0,
        symbols=("AAPL",),
        synthetic_symbols=10,
        speed=10.0,
        tick_interval=0.5,
        paced_quotes=True,
    )
    async with Simulator(config) as sim:
        quoted = [name for name in config.universe() if name != "AAPL"]
        behind: list[bool] = []  # per quote: was some quoted symbol still a step behind it?

        def listener(symbol: str, last: float, _sent_ns: int) -> None:
            step = sim.instruments[symbol].step
            behind.append(any(sim.instruments[name].step < step for name in quoted))
            path = Simulator(config).instruments[symbol]
            path.advance_to(step)
            assert last == path.last, symbol  # the same price as an unpaced walk

        sim.tick_listener = listener
        ib = await connect_ib_to(sim.port)
        contracts = [Stock(name, "SMART", "USD") for name in config.universe()]
        await ib.qualifyContractsAsync(*contracts)
        for contract in contracts[1:]:
            ib.reqMktData(contract)
        bars: RealTimeBarList = ib.reqRealTimeBars(contracts[0], 5, "TRADES", False)
        steps_before = sim.instruments["AAPL"].step
        await eventually(lambda: len(behind) >= 30)
        assert any(behind)
        await eventually(lambda: sim.instruments["AAPL"].step >= steps_before + 3)
        await eventually(lambda: len(bars) >= 1)
        assert bars[-1].count > 0
        ib.disconnect()
