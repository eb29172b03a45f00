"""The Strategy interface, and the base of the long-only bar strategies built on it."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from execution.model import Fill
from market_data.model import Bar, Tick
from strategy.model import TradeSignal
from strategy.position import Position

Action = Literal["BUY", "SELL"]


class StrategyParams(BaseModel):
    """Base of each strategy's parameters (`STRATEGY_PARAMS`): a misspelt name is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a bar rule wants: enter (BUY) or leave (SELL), and why in words."""

    action: Action
    reason: str


def signal_id(strategy: str, symbol: str, start: datetime, seconds: int, action: Action) -> str:
    """The id of the signal that `strategy` sends for the bar (`start`, `seconds`) of `symbol`.

    Replaying the same bars gives the same ids, and execution never trades one id twice.
    """
    cause = f"{strategy}|{symbol}|{start.astimezone(UTC).isoformat()}|{seconds}|{action}"
    return f"{strategy}-{hashlib.blake2b(cause.encode(), digest_size=8).hexdigest()}"


def bar_end(bar: Bar) -> datetime:
    """When the bar closed: the time a strategy acts at."""
    return bar.start + timedelta(seconds=bar.seconds)


class Strategy(ABC):
    """Market data and fills in, signals out. Keeps its own state and does no I/O.

    Time comes only from the events (a bar's start and length), never from the clock, so one
    object gives the same signals live, in replay and in tests. Subclasses set `name` (the
    `STRATEGY` setting) and `Params` (validates `STRATEGY_PARAMS`); `wants_ticks` asks the
    runner for ticks as well as bars.
    """

    name: ClassVar[str]
    Params: ClassVar[type[StrategyParams]]
    wants_ticks: ClassVar[bool] = False

    def __init__(self, params: StrategyParams, *, quantity: float, signal_ttl: timedelta) -> None:
        self.params = params
        self.quantity = quantity
        self.signal_ttl = signal_ttl
        self.positions: dict[str, Position] = {}  # symbol -> what this strategy holds there

    @abstractmethod
    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        """The signals `bar` causes (usually none)."""

    def on_tick(self, tick: Tick) -> list[TradeSignal]:
        """The signals `tick` causes; only called when `wants_ticks`."""
        return []

    def on_fill(self, fill: Fill) -> None:
        """Track the position from the fills of this strategy's own signals."""
        if fill.signal_id.startswith(f"{self.name}-"):
            self.position(fill.symbol).apply_fill(fill)

    def position(self, symbol: str) -> Position:
        return self.positions.setdefault(symbol, Position())

    def make_signal(
        self, symbol: str, decision: Decision, *, cause: Bar, quantity: float
    ) -> TradeSignal:
        """A market order intent caused by bar `cause`, dated and expiring from the bar's end."""
        ends = bar_end(cause)
        signal = TradeSignal(
            id=signal_id(self.name, symbol, cause.start, cause.seconds, decision.action),
            ts=ends,
            symbol=symbol,
            action=decision.action,
            quantity=quantity,
            strategy=self.name,
            expires_at=ends + self.signal_ttl,
            reason=decision.reason,
        )
        self.position(symbol).sent(signal)
        return signal


class LongOnlyBarStrategy(Strategy):
    """A strategy that decides at each bar's close whether to enter or leave a long position.

    Subclasses implement `decide`. This class sees to it that no BUY follows while long (or while
    a BUY is still in flight), no SELL is sent while flat, and an exit sells what is held.
    """

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        position = self.position(bar.symbol)
        holding = position.is_long(at=bar_end(bar))
        decision = self.decide(bar, holding=holding)
        if decision is None or (decision.action == "BUY") == holding:
            return []
        quantity = self.quantity if not holding else position.exit_quantity(self.quantity)
        return [self.make_signal(bar.symbol, decision, cause=bar, quantity=quantity)]

    @abstractmethod
    def decide(self, bar: Bar, *, holding: bool) -> Decision | None:
        """Take in `bar`; BUY to enter, SELL to leave, None to stay as is."""
