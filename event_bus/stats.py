"""Counters the bus keeps, for logs, `status`, metrics and tests."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from event_bus.events import Event


# Rejections are counted by channel for this many distinct channels, the rest together.
REJECTED_CHANNELS_KEPT = 1_000
OTHER_CHANNELS = "(other channels)"


@dataclass
class BusStats:
    """Every counter is keyed by event type name, except where noted."""

    published: Counter[str] = field(default_factory=Counter)
    journaled: Counter[str] = field(default_factory=Counter)  # journal only, not published
    delivered: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # market data dropped from the outbox
    conflated: Counter[str] = field(default_factory=Counter)  # replaced by a newer one in a queue
    rejected: Counter[str] = field(default_factory=Counter)  # by channel: see count_rejected
    handler_errors: Counter[str] = field(default_factory=Counter)  # by subscription name
    duplicates: Counter[str] = field(default_factory=Counter)  # seen twice (journal gap fill)
    reconnects: int = 0
    data_losses: int = 0  # Redis came back without its data
    rejected_total: int = 0
    # Called with each event a subscription has handled (metrics' latency histogram), or None.
    on_handled: Callable[[Event], Any] | None = None

    def count_rejected(self, channel: str) -> int:
        """Counts a rejected payload by its channel and returns how many were rejected in all.

        A subscribed pattern is open-ended (`trading:signal:*` matches any symbol typed), so past
        REJECTED_CHANNELS_KEPT distinct channels the rest are counted together under
        OTHER_CHANNELS: garbage on ever new channels cannot grow a daemon that runs for weeks.
        """
        if channel not in self.rejected and len(self.rejected) >= REJECTED_CHANNELS_KEPT:
            channel = OTHER_CHANNELS
        self.rejected[channel] += 1
        self.rejected_total += 1
        return self.rejected_total

    def snapshot(self) -> dict[str, object]:
        return {
            "published": dict(self.published),
            "journaled": dict(self.journaled),
            "delivered": dict(self.delivered),
            "dropped": dict(self.dropped),
            "conflated": dict(self.conflated),
            "rejected": dict(self.rejected),
            "handler_errors": dict(self.handler_errors),
            "duplicates": dict(self.duplicates),
            "reconnects": self.reconnects,
            "data_losses": self.data_losses,
        }


# Rejected messages each logged when they come a few at a time (hand-typed ones, say), before the
# log falls back to its average rate.
REJECTIONS_LOGGED_AT_ONCE = 20


class ThrottledLog:
    """Logs at most `burst` lines of one event name at once and `per_second` on average (a
    token bucket); counts what it held back and says so on its next line.

    Ten thousand malformed messages should be counted, not written ten thousand times; a few
    mistakes in a row (an operator's hand-typed messages, say) each get their line.
    """

    def __init__(
        self,
        event: str,
        per_second: float = 5.0,
        level: str = "warning",
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.event = event
        self.per_second = per_second
        self.burst = burst
        self.level = level
        self.suppressed = 0
        self._clock = clock
        self._tokens = float(burst)
        self._updated_at = clock()
        self._log = structlog.get_logger("event_bus")

    def __call__(self, **fields: object) -> None:
        now = self._clock()
        elapsed, self._updated_at = now - self._updated_at, now
        self._tokens = min(self.burst, self._tokens + elapsed * self.per_second)
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        if self.suppressed:
            fields["suppressed_since_last"] = self.suppressed
            self.suppressed = 0
        getattr(self._log, self.level)(self.event, **fields)
