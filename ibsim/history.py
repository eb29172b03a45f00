"""Historical bars: parsing IB's bar-size and duration strings, and generating seeded bars."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HISTORICAL_BARS = 5000
DAY = 86_400

# unit word (singular, as in "1 min" / "2 mins") -> seconds
_BAR_UNITS: Mapping[str, int] = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": DAY,
    "days": DAY,
    "week": 7 * DAY,
    "weeks": 7 * DAY,
    "month": 30 * DAY,
    "months": 30 * DAY,
}
# duration unit letter -> seconds (a trading "D" is counted as a calendar day here)
_DURATION_UNITS: Mapping[str, int] = {
    "S": 1,
    "D": DAY,
    "W": 7 * DAY,
    "M": 30 * DAY,
    "Y": 365 * DAY,
}


def bar_seconds(bar_size: str) -> int:
    """'5 secs' -> 5, '1 min' -> 60, '1 day' -> 86400; ValueError if unknown."""
    count, _, unit = bar_size.strip().partition(" ")
    return int(count) * _BAR_UNITS[unit.strip().lower()]


def duration_seconds(duration: str) -> int:
    """'3600 S' -> 3600, '1 D' -> 86400; ValueError if unknown."""
    count, _, unit = duration.strip().partition(" ")
    return int(count) * _DURATION_UNITS[unit.strip().upper()]


def format_bar_date(epoch: int, seconds_per_bar: int, format_date: int) -> str:
    """A bar's date as TWS writes it: epoch seconds for formatDate=2, else a UTC datetime,
    or a plain YYYYMMDD for daily and longer bars."""
    if seconds_per_bar >= DAY:
        return time.strftime("%Y%m%d", time.gmtime(epoch))
    if format_date == 2:
        return str(epoch)
    return time.strftime("%Y%m%d %H:%M:%S", time.gmtime(epoch)) + " UTC"


def bucket_start(epoch: float, seconds_per_bar: int) -> int:
    """Start of the bar that `epoch` falls in."""
    return int(epoch // seconds_per_bar) * seconds_per_bar


@dataclass(frozen=True, slots=True)
class HistoricalBar:
    """One generated bar; `start` is its opening time as a Unix epoch."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int

    def row(self, date: str) -> dict[str, object]:
        """The bar's fields as historicalData sends them, dated `date`."""
        return {
            "date": date,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "wap": self.wap,
            "count": self.count,
        }


def generate_bars(
    *,
    rng: random.Random,
    end_price: float,
    end_epoch: float,
    seconds_per_bar: int,
    count: int,
    volatility_per_bar: float,
) -> list[HistoricalBar]:
    """`count` bars ending with the bar that holds `end_epoch`, the last one closing at
    `end_price`: a random walk run backwards, oldest bar first."""
    closes = [end_price]
    for _ in range(count - 1):
        closes.append(max(0.01, closes[-1] / (1.0 + rng.gauss(0.0, volatility_per_bar))))
    closes.reverse()
    last_start = bucket_start(end_epoch, seconds_per_bar)
    bars = []
    previous_close = closes[0]
    for index, close in enumerate(closes):
        wick = abs(rng.gauss(0.0, volatility_per_bar / 2))
        open_ = previous_close
        bars.append(
            HistoricalBar(
                start=last_start - (count - 1 - index) * seconds_per_bar,
                open=round(open_, 2),
                high=round(max(open_, close) * (1 + wick), 2),
                low=round(min(open_, close) * (1 - wick), 2),
                close=round(close, 2),
                volume=100 * rng.randint(1, 50),
                wap=round((open_ + close) / 2, 4),
                count=rng.randint(1, 40),
            )
        )
        previous_close = close
    return bars


def bar_count(duration: int, seconds_per_bar: int) -> int:
    """How many bars cover `duration`, at least one and at most MAX_HISTORICAL_BARS."""
    return max(1, min(MAX_HISTORICAL_BARS, math.ceil(duration / seconds_per_bar)))
