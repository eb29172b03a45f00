"""The broker connection's published event: `ConnectivityChanged`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from event_bus import Event, register

ConnectivityState = Literal[
    "connected",  # socket up and synchronised (first time, or again after a loss)
    "disconnected",  # socket closed; reconnecting with backoff
    "connect_failed",  # an attempt failed; `message` says why, `attempt` counts
    "client_id_in_use",  # TWS refused the clientId (326)
    "ib_link_lost",  # 1100 / 2110: TWS lost IB's servers; socket still up
    "ib_link_restored",  # 1101 (data lost) / 1102 (data kept)
    "farm_broken",  # 2103 / 2105: a market data or historical data farm is down
    "farm_ok",  # 2104 / 2106 / 2158
]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectivityChanged(Event):
    """A change in one module's connection to TWS/IB Gateway, on `trading:system:connectivity`."""

    kind = "system:connectivity"

    client: str  # the module holding the connection, e.g. "market_data"
    client_id: int
    state: ConnectivityState
    code: int | None = None  # IB's message code, when IB sent one
    message: str = ""
    attempt: int | None = None
