"""Pure, table-driven copies of ib_async's mutable Ticker and RealTimeBar into frozen values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ib_async import Contract

from market_data.bars import Slice
from market_data.instruments import Instrument
from market_data.model import Tick

if TYPE_CHECKING:
    from ib_async import RealTimeBar, Ticker

# (Tick price field, Tick size field, Ticker price attribute, Ticker size attribute,
#  whether a zero size means the side is empty: IB's "-1 price, 0 size" for no bid or no ask)
QUOTE_FIELDS: tuple[tuple[str, str, str, str, bool], ...] = (
    ("bid", "bid_size", "bid", "bidSize", True),
    ("ask", "ask_size", "ask", "askSize", True),
    ("last", "last_size", "last", "lastSize", False),
)

# MARKET_DATA_TYPE setting -> reqMarketDataType argument
MARKET_DATA_TYPES: dict[str, int] = {"live": 1, "frozen": 2, "delayed": 3, "delayed_frozen": 4}


def price_or_none(value: Any) -> float | None:
    """A usable price, or None for IB's sentinels: NaN, -1, 0, infinities, the unset double."""
    if value is None or not 0.0 < value < 1e300:  # False for NaN too
        return None
    return float(value)


def size_or_none(value: Any) -> float | None:
    """A usable size (>= 0), or None for NaN, negative and unset values."""
    if value is None or not 0.0 <= value < 1e300:
        return None
    return float(value)


def tick_from_ticker(symbol: str, ticker: Ticker) -> Tick | None:
    """The ticker's current state as a Tick; None if it holds nothing usable yet."""
    values: dict[str, Any] = {}
    for price_field, size_field, price_attribute, size_attribute, zero_is_empty in QUOTE_FIELDS:
        size = size_or_none(getattr(ticker, size_attribute))
        if zero_is_empty and not size:
            continue
        price = price_or_none(getattr(ticker, price_attribute))
        if price is not None:
            values[price_field] = price
            values[size_field] = size
    volume = size_or_none(ticker.volume)
    if not values and volume is None:
        return None
    return Tick(symbol=symbol, volume=volume, exchange_time=ticker.lastTimestamp, **values)


def slice_from_bar(bar: RealTimeBar) -> Slice | None:
    """A 5-second bar as a Slice; None when its prices are sentinels or inconsistent."""
    open_, high, low, close = (price_or_none(v) for v in (bar.open_, bar.high, bar.low, bar.close))
    if open_ is None or high is None or low is None or close is None:
        return None
    if not low <= min(open_, close) <= max(open_, close) <= high:
        return None
    return Slice(
        start=int(bar.time.timestamp()),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=size_or_none(bar.volume) or 0.0,  # -1 on MIDPOINT bars, which have no volume
        wap=price_or_none(bar.wap),
        count=bar.count if bar.count >= 0 else None,
    )


def contract_for(instrument: Instrument) -> Contract:
    """The ib_async Contract to qualify for a configured instrument."""
    return Contract(
        secType=instrument.sec_type,
        symbol=instrument.symbol,
        exchange=instrument.exchange,
        currency=instrument.currency,
        lastTradeDateOrContractMonth=instrument.last_trade_date,
        localSymbol=instrument.local_symbol,
        tradingClass=instrument.trading_class,
        primaryExchange=instrument.primary_exchange,
        multiplier=instrument.multiplier,
    )
