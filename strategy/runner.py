"""The live side of a strategy: events from the bus in, its signals back onto the bus."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import structlog

from config import StrategySettings
from event_bus import Channels, Event, Handler, Subscription
from execution.model import Fill
from market_data.model import Bar, Tick
from strategy.base import Strategy
from strategy.model import StrategyDisabled, TradeSignal
from strategy.registry import build_strategy

log = structlog.get_logger()


class Bus(Protocol):
    """What the runner needs of a bus (`RedisEventBus` or `InMemoryEventBus`)."""

    channels: Channels

    async def subscribe_channels(
        self, channels: Iterable[str], handler: Handler, *, name: str
    ) -> Subscription: ...

    async def publish(self, event: Event) -> None: ...


class StrategyRunner:
    """Feeds one strategy from the bus and publishes what it decides.

    Subscribes, for each configured symbol, to `trading:bar:{SYMBOL}` (only bars of
    `bar_seconds` reach the strategy), `trading:fill:{SYMBOL}` and, when the strategy wants them,
    `trading:tick:{SYMBOL}`: one subscription per kind, so each kind reaches the strategy in the
    order it arrived, whatever the symbol. Publishes `TradeSignal` on `trading:signal:{SYMBOL}`.
    A strategy that raises is logged with the event and the runner goes on; after `max_failures`
    in a row it is disabled and `StrategyDisabled` goes out on `trading:system:strategy`.
    """

    name = "strategy"

    def __init__(
        self,
        strategy: Strategy,
        bus: Bus,
        *,
        symbols: Sequence[str],
        bar_seconds: int,
        max_failures: int,
    ) -> None:
        self.strategy = strategy
        self.bus = bus
        self.symbols = tuple(symbols)
        self.bar_seconds = bar_seconds
        self.max_failures = max_failures
        self.consecutive_failures = 0
        self.disabled = False
        self.running = False
        self._subscribed = False
        self._ignored_bar_sizes: set[int] = set()  # logged once each

    def status(self) -> dict[str, str]:
        """What `main.py status` shows for the strategy (through the heartbeat)."""
        return {"strategy": self.strategy.name, "disabled": "yes" if self.disabled else "no"}

    async def start(self) -> None:
        """Subscribe (once) and start feeding the strategy."""
        self.running = True
        if not self._subscribed:
            await self._subscribe()
            self._subscribed = True
        log.info(
            "strategy_started",
            strategy=self.strategy.name,
            symbols=list(self.symbols),
            bar_seconds=self.bar_seconds,
        )

    async def stop(self) -> None:
        """Stop feeding the strategy; the bus, stopped after us, ends the subscriptions."""
        self.running = False
        log.info("strategy_stopped", strategy=self.strategy.name)

    async def _subscribe(self) -> None:
        kinds: list[tuple[str, Handler]] = [("bar", self._on_bar), ("fill", self._on_fill)]
        if self.strategy.wants_ticks:
            kinds.append(("tick", self._on_tick))
        for kind, handler in kinds:  # one queue per kind for all symbols: no task per symbol
            channels = [self.bus.channels.instrument(kind, symbol) for symbol in self.symbols]
            await self.bus.subscribe_channels(channels, handler, name=f"strategy:{kind}")

    async def _on_bar(self, event: Event) -> None:
        if not isinstance(event, Bar) or not self._accepts_bar_size(event):
            return
        await self._feed(event, self.strategy.on_bar)

    async def _on_tick(self, event: Event) -> None:
        if isinstance(event, Tick):
            await self._feed(event, self.strategy.on_tick)

    async def _on_fill(self, event: Event) -> None:
        if isinstance(event, Fill):
            await self._feed(event, self.strategy.on_fill)

    def _accepts_bar_size(self, bar: Bar) -> bool:
        if bar.seconds == self.bar_seconds:
            return True
        if bar.seconds not in self._ignored_bar_sizes:
            self._ignored_bar_sizes.add(bar.seconds)
            log.info("bar_size_ignored", seconds=bar.seconds, wanted_seconds=self.bar_seconds)
        return False

    async def _feed(self, event: Event, step: Callable[[Any], list[TradeSignal] | None]) -> None:
        """Hand `event` to the strategy and publish its signals; count and log what it raises."""
        if not self.running or self.disabled:
            return
        try:
            signals = step(event) or []
        except Exception as error:
            await self._failed(event, error)
            return
        self.consecutive_failures = 0
        for signal in signals:
            # DEBUG: at INFO this line cost the order ~200 µs before execution saw the signal
            # (BENCHMARKS.md); the signal itself is on the bus, in the journal and in storage
            log.debug(
                "signal_emitted",
                signal_id=signal.id,
                symbol=signal.symbol,
                action=signal.action,
                quantity=signal.quantity,
                reason=signal.reason,
            )
            await self.bus.publish(signal)

    async def _failed(self, event: Event, error: Exception) -> None:
        self.consecutive_failures += 1
        log.exception(
            "strategy_failed",
            strategy=self.strategy.name,
            event_type=type(event).__name__,
            event_data=repr(event),
            consecutive_failures=self.consecutive_failures,
        )
        if self.consecutive_failures >= self.max_failures:
            self.disabled = True
            log.error(
                "strategy_disabled",
                strategy=self.strategy.name,
                consecutive_failures=self.consecutive_failures,
            )
            await self.bus.publish(
                StrategyDisabled(
                    strategy=self.strategy.name,
                    consecutive_failures=self.consecutive_failures,
                    last_error=f"{type(error).__name__}: {error}",
                )
            )


def build_runner(settings: StrategySettings, symbols: tuple[str, ...], bus: Bus) -> StrategyRunner:
    """The configured strategy on `symbols`, ready to `start()`."""
    return StrategyRunner(
        build_strategy(settings),
        bus,
        symbols=symbols,
        bar_seconds=settings.strategy_bar_seconds,
        max_failures=settings.strategy_max_failures,
    )
