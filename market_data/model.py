"""The market data module's published events: `Tick`, `Bar` and its system notices."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from event_bus import Event, UtcDatetime, register

_INF = math.inf


def _check_prices(event: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(event, name)
        # `0 < value < inf` is False for NaN too
        if value is not None and not 0 < value < math.inf:
            raise ValueError(f"{name} must be a positive finite price, got {value!r}")


def _check_sizes(event: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(event, name)
        if value is not None and not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a non-negative finite size, got {value!r}")


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Event):
    """Top of book and last trade for one instrument, on `trading:tick:{SYMBOL}`.

    A field is None when IB has not sent it (IB's -1 and NaN never become prices).
    """

    kind = "tick"
    droppable = True

    symbol: str
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_size: float | None = None
    volume: float | None = None
    exchange_time: UtcDatetime | None = None  # when IB says the last trade happened

    def __post_init__(self) -> None:
        # Runs for every tick built and every tick decoded: the checks of `_check_prices` and
        # `_check_sizes`, unrolled (0.5 against 1.1 us); they run only to name what is wrong.
        bid, ask, last = self.bid, self.ask, self.last
        bid_size, ask_size, last_size, volume = (
            self.bid_size,
            self.ask_size,
            self.last_size,
            self.volume,
        )
        if not (
            (bid is None or 0 < bid < _INF)
            and (ask is None or 0 < ask < _INF)
            and (last is None or 0 < last < _INF)
            and (bid_size is None or 0 <= bid_size < _INF)
            and (ask_size is None or 0 <= ask_size < _INF)
            and (last_size is None or 0 <= last_size < _INF)
            and (volume is None or 0 <= volume < _INF)
        ):
            _check_prices(self, ("bid", "ask", "last"))
            _check_sizes(self, ("bid_size", "ask_size", "last_size", "volume"))


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Bar(Event):
    """One OHLCV bar of `seconds` starting at `start`, on `trading:bar:{SYMBOL}`.

    Bars are never dropped: a strategy needs every one.
    """

    kind = "bar"

    symbol: str
    start: UtcDatetime
    seconds: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float | None = None
    trade_count: int | None = None

    def __post_init__(self) -> None:
        _check_prices(self, ("open", "high", "low", "close"))
        _check_sizes(self, ("volume",))
        if self.seconds <= 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValueError("bar prices must satisfy low <= open, close <= high")


Stream = Literal["ticks", "bars"]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataStale(Event):
    """A feed silent for `silent_seconds` (> k times its expected interval) was resubscribed;
    on `trading:system:market_data`."""

    kind = "system:market_data"

    symbol: str
    stream: Stream
    silent_seconds: float
    expected_interval_seconds: float


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentUnavailable(Event):
    """A configured instrument IB does not know (not qualified, or error 200 on a request); the
    others go on. On `trading:system:market_data`."""

    kind = "system:market_data"

    symbol: str
    code: int | None = None  # IB's error code, when IB sent one
    reason: str = ""


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataResubscribed(Event):
    """Every subscription (or one instrument's, for a per-request error) was cancelled and
    requested again, and why; on `trading:system:market_data`."""

    kind = "system:market_data"

    reason: str  # "connected", "ib_link_restored_1101", "market_data_farm_ok", "error_10182", ...
    symbols: tuple[str, ...]
