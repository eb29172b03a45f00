"""Settings of the IB Gateway simulator: network, account, universe, market and fill model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_ACCOUNT = "DU0000001"


@dataclass(frozen=True, slots=True)
class Listing:
    """A stock the simulator knows by default: IB's real conId, a start price, its listing."""

    con_id: int
    start_price: float
    primary_exchange: str
    long_name: str


# symbol -> listing; other symbols get synthetic ones (see market.listing_for)
DEFAULT_UNIVERSE: Mapping[str, Listing] = {
    "AAPL": Listing(265598, 190.00, "NASDAQ", "APPLE INC"),
    "MSFT": Listing(272093, 410.00, "NASDAQ", "MICROSOFT CORP"),
    "SPY": Listing(756733, 500.00, "ARCA", "SPDR S&P 500 ETF TRUST"),
    "QQQ": Listing(320227571, 430.00, "NASDAQ", "INVESCO QQQ TRUST SERIES 1"),
    "AMZN": Listing(3691937, 180.00, "NASDAQ", "AMAZON.COM INC"),
    "GOOGL": Listing(208813719, 170.00, "NASDAQ", "ALPHABET INC-CL A"),
    "NVDA": Listing(4815747, 120.00, "NASDAQ", "NVIDIA CORP"),
    "TSLA": Listing(76792991, 250.00, "NASDAQ", "TESLA INC"),
    "IBM": Listing(8314, 200.00, "NYSE", "INTL BUSINESS MACHINES CORP"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything a Simulator needs; every field has a default that works out of the box.

    `symbols` lists the tradable stocks: names from DEFAULT_UNIVERSE keep their start price,
    any other name gets a deterministic synthetic one; `start_prices` overrides either.
    `synthetic_symbols=N` adds N more names (SYM0000, SYM0001, ...) for benchmarks.
    Intervals are in simulated seconds; `speed` makes simulated time run that many times
    faster than the wall clock (speed=10: 5-second bars every 0.5 s). `max_fill_size` caps
    the shares of one execution, so larger orders fill in parts, one part per tick.
    `paced_quotes` spreads each step's quotes evenly over the step (as a real feed, where
    symbols tick at their own moments) instead of writing them back to back at its start.
    """

    host: str = "127.0.0.1"
    port: int = 4002
    account: str = DEFAULT_ACCOUNT
    extra_accounts: tuple[str, ...] = ()
    seed: int = 1
    speed: float = 1.0
    symbols: tuple[str, ...] = tuple(DEFAULT_UNIVERSE)
    synthetic_symbols: int = 0
    start_prices: Mapping[str, float] = field(default_factory=dict)
    tick_interval: float = 0.25
    bar_interval: float = 5.0
    step_volatility: float = 0.0005
    max_fill_size: float = 500.0
    initial_cash: float = 1_000_000.0
    commission_per_share: float = 0.005
    min_commission: float = 1.0
    first_order_id: int = 1
    paced_quotes: bool = False
    market_data_lines: int = 0  # streaming reqMktData allowed at once (IB's "lines"); 0: no limit

    def __post_init__(self) -> None:
        if self.speed <= 0 or self.tick_interval <= 0:
            raise ValueError("speed and tick_interval must be positive")
        if round(self.bar_interval / self.tick_interval, 9) % 1:
            raise ValueError("bar_interval must be a whole number of tick_interval")
        if self.market_data_lines < 0:
            raise ValueError("market_data_lines must be 0 (no limit) or more")

    @property
    def accounts(self) -> tuple[str, ...]:
        """Every managed account, the default one first."""
        return (self.account, *self.extra_accounts)

    def universe(self) -> list[str]:
        """All symbols, configured ones first, then the synthetic ones."""
        names = list(dict.fromkeys(symbol.upper() for symbol in self.symbols))
        names += synthetic_names(self.synthetic_symbols)
        return names


def synthetic_names(count: int) -> Iterable[str]:
    """SYM0000, SYM0001, ...: predictable names for large benchmark universes."""
    return (f"SYM{index:04d}" for index in range(count))
