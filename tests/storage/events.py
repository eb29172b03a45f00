"""An event type storage has no table for, as another package may add (a connectivity change)."""

from __future__ import annotations

from dataclasses import dataclass

from event_bus import Event, register


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SampleConnectivity(Event):
    """A link going up or down, on `trading:system:connectivity`."""

    kind = "system:connectivity"

    link: str
    connected: bool
    detail: dict[str, str] | None = None
