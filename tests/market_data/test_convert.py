"""Pure edge functions: Ticker and RealTimeBar copies, IB's sentinels, instruments, staleness."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from ib_async import Contract, RealTimeBar, Stock, Ticker

from config import InstrumentSetting, MarketDataSettings, SettingsError, load_settings
from market_data.bars import Slice
from market_data.convert import contract_for, price_or_none, slice_from_bar, tick_from_ticker
from market_data.instruments import Instrument, instruments_from_settings
from market_data.model import Tick
from market_data.staleness import overdue, stale_limits
from tests.market_data.conftest import market_data_settings

NAN = math.nan
UNSET_DOUBLE = 1.7976931348623157e308
WHEN = datetime(2024, 5, 1, 14, 30, tzinfo=UTC)


def ticker(**values: object) -> Ticker:
    """A Ticker as ib_async leaves it after these updates (its constructor resets prices)."""
    made = Ticker(contract=Stock("AAPL", "SMART", "USD"))
    for name, value in values.items():
        setattr(made, name, value)
    return made


@pytest.mark.parametrize("value", [NAN, -1.0, 0.0, math.inf, UNSET_DOUBLE, None])
def test_sentinels_are_not_prices(value: float | None) -> None:
    """NaN, -1, 0, infinity and IB's unset double are never prices."""
    assert price_or_none(value) is None


def test_full_quote_is_copied() -> None:
    """Every quote field of the Ticker lands in the Tick, sizes and time included."""
    full = ticker(
        bid=10.0,
        bidSize=300.0,
        ask=10.02,
        askSize=200.0,
        last=10.01,
        lastSize=100.0,
        volume=5000.0,
        lastTimestamp=WHEN,
    )
    tick = tick_from_ticker("AAPL", full)
    assert tick == Tick(
        id=tick.id if tick else "",
        ts=tick.ts if tick else WHEN,
        symbol="AAPL",
        bid=10.0,
        ask=10.02,
        last=10.01,
        bid_size=300.0,
        ask_size=200.0,
        last_size=100.0,
        volume=5000.0,
        exchange_time=WHEN,
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # ib_async's "no bid": price -1 with size 0
        (
            {"bid": -1.0, "bidSize": 0.0, "ask": 10.0, "askSize": 100.0},
            {"ask": 10.0, "ask_size": 100.0},
        ),
        # a price with a zero size on a quote side is IB's empty side too
        (
            {"bid": 9.9, "bidSize": 0.0, "last": 10.0, "lastSize": 0.0},
            {"last": 10.0, "last_size": 0.0},
        ),
        # unset fields are NaN
        ({"last": NAN, "lastSize": NAN, "volume": 700.0}, {"volume": 700.0}),
        ({"ask": UNSET_DOUBLE, "askSize": 100.0, "last": 10.0, "lastSize": NAN}, {"last": 10.0}),
    ],
)
def test_missing_values_become_none(values: dict[str, float], expected: dict[str, float]) -> None:
    """Only real prices and sizes are copied; the rest of the Tick stays None."""
    tick = tick_from_ticker("AAPL", ticker(**values))
    assert tick is not None
    copied = {
        name: getattr(tick, name)
        for name in ("bid", "ask", "last", "bid_size", "ask_size", "last_size", "volume")
        if getattr(tick, name) is not None
    }
    assert copied == expected


def test_empty_ticker_gives_no_tick() -> None:
    """A Ticker with nothing usable in it publishes nothing."""
    assert tick_from_ticker("AAPL", ticker(bid=-1.0, bidSize=0.0)) is None


def test_real_time_bar_becomes_a_slice() -> None:
    """A RealTimeBar is copied with its epoch start; MIDPOINT's -1 volume becomes 0."""
    bar = RealTimeBar(WHEN, -1, 10.0, 10.5, 9.5, 10.2, -1.0, -1.0, -1)
    assert slice_from_bar(bar) == Slice(
        start=int(WHEN.timestamp()),
        open=10.0,
        high=10.5,
        low=9.5,
        close=10.2,
        volume=0.0,
        wap=None,
        count=None,
    )


@pytest.mark.parametrize(
    "prices", [(NAN, 10.5, 9.5, 10.2), (10.0, 10.5, -1.0, 10.2), (10.0, 9.0, 9.5, 10.2)]
)
def test_unusable_real_time_bars_are_refused(prices: tuple[float, float, float, float]) -> None:
    """A bar with a sentinel price or high below low is not turned into a slice."""
    assert slice_from_bar(RealTimeBar(WHEN, -1, *prices, 100.0, 10.0, 3)) is None


def test_instruments_from_symbols_and_json_entries() -> None:
    """SYMBOLS are SMART/USD stocks; INSTRUMENTS add futures and forex with distinct bus names."""
    settings = market_data_settings(
        symbols=("AAPL", "MSFT"),
        instruments=(
            InstrumentSetting(
                symbol="ES", sec_type="FUT", exchange="CME", last_trade_date="202512"
            ),
            InstrumentSetting(symbol="EUR", sec_type="CASH", exchange="IDEALPRO", currency="USD"),
            InstrumentSetting(symbol="AAPL"),  # already configured: once only
        ),
    )
    assert instruments_from_settings(settings) == [
        Instrument(name="AAPL", symbol="AAPL"),
        Instrument(name="MSFT", symbol="MSFT"),
        Instrument(
            name="ES-202512", symbol="ES", sec_type="FUT", exchange="CME", last_trade_date="202512"
        ),
        Instrument(name="EUR.USD", symbol="EUR", sec_type="CASH", exchange="IDEALPRO"),
    ]


def test_instruments_setting_parses_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """INSTRUMENTS is a JSON list in the environment; a bad one is refused with its name."""
    monkeypatch.setenv("INSTRUMENTS", '[{"symbol": "ES", "sec_type": "FUT", "exchange": "CME"}]')
    [future] = MarketDataSettings(_env_file=None).instruments  # type: ignore[call-arg]
    assert future == InstrumentSetting(symbol="ES", sec_type="FUT", exchange="CME")
    monkeypatch.setenv("INSTRUMENTS", "{not json")
    with pytest.raises(SettingsError, match=r"^INSTRUMENTS: not valid JSON"):
        load_settings(env_file=None)


def test_contract_for_a_future() -> None:
    """The Contract to qualify carries every configured field."""
    future = Instrument(
        name="ESZ5",
        symbol="ES",
        sec_type="FUT",
        exchange="CME",
        last_trade_date="202512",
        local_symbol="ESZ5",
        multiplier="50",
    )
    assert contract_for(future) == Contract(
        secType="FUT",
        symbol="ES",
        exchange="CME",
        currency="USD",
        lastTradeDateOrContractMonth="202512",
        localSymbol="ESZ5",
        multiplier="50",
    )


def test_staleness_uses_each_streams_own_interval() -> None:
    """Ticks are stale after k x tick interval, bars after k x bar interval; 0 disables."""
    limits = stale_limits(3, tick_interval=1.0, bar_interval=5.0)
    last_seen = [
        ("A", "ticks", 96.0),
        ("A", "bars", 90.0),
        ("B", "ticks", 98.0),
        ("B", "bars", 84.0),
    ]
    assert overdue(last_seen, 100.0, limits) == [("A", "ticks", 4.0), ("B", "bars", 16.0)]
    assert stale_limits(0, 1.0, 5.0) == {}
