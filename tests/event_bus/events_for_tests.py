"""Event types used only by the event bus tests: one droppable, one not."""

from __future__ import annotations

from dataclasses import dataclass

from event_bus import Event, register


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SampleQuote(Event):
    """Market-data-like: may be dropped or conflated under pressure."""

    kind = "tick"
    droppable = True

    symbol: str
    price: float


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SampleFill(Event):
    """Order-like: never dropped."""

    kind = "fill"

    symbol: str
    quantity: float
    sequence: int = 0
