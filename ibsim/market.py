"""Simulated market: a seeded random walk per symbol, and bars built from its trades."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ibsim.config import DEFAULT_UNIVERSE, Listing, SimConfig

SYNTHETIC_CON_ID_BASE = 900_000_000


@dataclass(slots=True)
class Instrument:
    """A tradable stock and its current quote; prices move one random-walk step per tick."""

    symbol: str
    listing: Listing
    walk: random.Random
    step_volatility: float
    last: float
    step: int = 0
    last_size: int = 100
    bid_size: int = 100
    ask_size: int = 100
    volume: int = 0

    @property
    def con_id(self) -> int:
        return self.listing.con_id

    @property
    def spread(self) -> float:
        return max(0.01, round(self.last * 0.0002, 2))

    @property
    def bid(self) -> float:
        return round(self.last - self.spread / 2, 2)

    @property
    def ask(self) -> float:
        return round(self.bid + self.spread, 2)

    def advance_to(self, step: int) -> None:
        """Walk forward to `step`; every symbol follows the same path whatever is watched."""
        while self.step < step:
            self.step += 1
            shock = self.walk.gauss(0.0, self.step_volatility)
            self.last = max(0.01, round(self.last * (1.0 + shock), 2))
            self.last_size = 100 * self.walk.randint(1, 5)
            self.bid_size = 100 * self.walk.randint(1, 10)
            self.ask_size = 100 * self.walk.randint(1, 10)
            self.volume += self.last_size


@dataclass(slots=True)
class BarBuilder:
    """Open/high/low/close/volume of the trades seen since `start` (epoch seconds)."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: int = 0
    count: int = 0
    turnover: float = field(default=0.0, repr=False)

    @classmethod
    def starting(cls, start: int, price: float) -> BarBuilder:
        return cls(start, price, price, price, price)

    def add_trade(self, price: float, size: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += size
        self.count += 1
        self.turnover += price * size

    @property
    def wap(self) -> float:
        return round(self.turnover / self.volume, 4) if self.volume else self.close


def listing_for(symbol: str, index: int, config: SimConfig) -> Listing:
    """The default listing of a known symbol, else a deterministic synthetic one."""
    known = DEFAULT_UNIVERSE.get(symbol)
    listing = known or Listing(
        SYNTHETIC_CON_ID_BASE + index,
        round(random.Random(f"start:{symbol}").uniform(10.0, 500.0), 2),
        "NASDAQ",
        f"{symbol} SIMULATED INC",
    )
    if symbol in config.start_prices:
        listing = Listing(
            listing.con_id, config.start_prices[symbol], listing.primary_exchange, listing.long_name
        )
    return listing


def build_universe(config: SimConfig) -> dict[str, Instrument]:
    """symbol -> Instrument for every configured symbol, each with its own seeded walk."""
    instruments = {}
    for index, symbol in enumerate(config.universe()):
        listing = listing_for(symbol, index, config)
        instruments[symbol] = Instrument(
            symbol=symbol,
            listing=listing,
            walk=random.Random(f"{config.seed}:{symbol}"),
            step_volatility=config.step_volatility,
            last=listing.start_price,
        )
    return instruments
