"""The instruments to subscribe to, from settings: `SYMBOLS` stocks plus `INSTRUMENTS` entries."""

from __future__ import annotations

from dataclasses import dataclass

from config import InstrumentSetting, MarketDataSettings

# secType -> what a real-time bar shows (forex has no trades, only quotes)
BAR_SOURCE: dict[str, str] = {"CASH": "MIDPOINT", "IND": "TRADES", "CRYPTO": "AGGTRADES"}
DEFAULT_BAR_SOURCE = "TRADES"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """A contract as configured, before IB qualifies it; `name` is its symbol on the bus."""

    name: str
    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    last_trade_date: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    primary_exchange: str = ""
    multiplier: str = ""

    @property
    def bar_source(self) -> str:
        """`whatToShow` for its real-time bars."""
        return BAR_SOURCE.get(self.sec_type, DEFAULT_BAR_SOURCE)


def bus_name(setting: InstrumentSetting) -> str:
    """The symbol events carry: the explicit `name`, else one that tells contracts apart."""
    if setting.name:
        return setting.name.upper()
    symbol = setting.symbol.upper()
    if setting.sec_type == "CASH":
        return f"{symbol}.{setting.currency.upper()}"
    if setting.sec_type == "FUT":
        return (setting.local_symbol or f"{symbol}-{setting.last_trade_date}").upper()
    return symbol


def from_setting(setting: InstrumentSetting) -> Instrument:
    return Instrument(
        name=bus_name(setting),
        symbol=setting.symbol.upper(),
        sec_type=setting.sec_type,
        exchange=setting.exchange.upper(),
        currency=setting.currency.upper(),
        last_trade_date=setting.last_trade_date,
        local_symbol=setting.local_symbol,
        trading_class=setting.trading_class,
        primary_exchange=setting.primary_exchange.upper(),
        multiplier=setting.multiplier,
    )


def instruments_from_settings(settings: MarketDataSettings) -> list[Instrument]:
    """Every configured instrument once (by bus name), SYMBOLS first, in configured order."""
    configured = [Instrument(name=symbol, symbol=symbol) for symbol in settings.symbols]
    configured += [from_setting(setting) for setting in settings.instruments]
    unique: dict[str, Instrument] = {}  # bus name -> its first configuration
    for instrument in configured:
        unique.setdefault(instrument.name, instrument)
    return list(unique.values())
