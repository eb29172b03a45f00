"""Every Redis channel and key name the daemon uses, built in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from event_bus.events import INSTRUMENT_KINDS, Event


def is_exact(pattern: str) -> bool:
    """A pattern without glob characters names one channel: SUBSCRIBE it, not PSUBSCRIBE.

    Redis matches every PUBLISH against every PSUBSCRIBE pattern of every client, but finds
    SUBSCRIBE channels by a hash lookup: 15,000 per-symbol patterns took Redis to 95% CPU.
    """
    return not any(char in pattern for char in "*?[\\")


def exact_channels(channels: Iterable[str], owner: str) -> list[str]:
    """`channels` without repeats, for one subscription to several channels; a pattern among
    them is refused (two could match one channel, which would then arrive twice)."""
    wanted = list(dict.fromkeys(channels))
    if not wanted or not all(map(is_exact, wanted)):
        raise ValueError(f"{owner}: subscribe_channels takes exact channel names, not patterns")
    return wanted


@dataclass(frozen=True, slots=True)
class Channels:
    """Names under one prefix (`CHANNEL_PREFIX`, default `trading`)."""

    prefix: str = "trading"

    def instrument(self, kind: str, symbol: str) -> str:
        """`trading:{kind}:{SYMBOL}`; `symbol="*"` gives the pattern for every symbol."""
        if kind not in INSTRUMENT_KINDS:
            raise ValueError(f"not an instrument event kind: {kind!r}")
        return f"{self.prefix}:{kind}:{symbol}"

    def system(self, what: str) -> str:
        """`trading:system:{what}`: heartbeats, connectivity, risk rejections, halts."""
        return f"{self.prefix}:system:{what}"

    @property
    def control(self) -> str:
        """Operator commands (halt, resume)."""
        return f"{self.prefix}:control"

    @property
    def everything(self) -> str:
        """The pattern that matches every channel of this daemon."""
        return f"{self.prefix}:*"

    def for_event(self, event: Event) -> str:
        """The one channel an event belongs on."""
        kind = type(event).kind
        if kind in INSTRUMENT_KINDS:
            return self.instrument(kind, event.symbol)  # type: ignore[attr-defined]
        return f"{self.prefix}:{kind}"

    # Keys (not channels)

    @property
    def journal(self) -> str:
        """The capped stream every published event is appended to."""
        return f"{self.prefix}:journal"

    @property
    def dead_letter(self) -> str:
        """The stream where journal entries that cannot be processed are set aside."""
        return f"{self.prefix}:journal:dead"

    def heartbeat_key(self, module: str) -> str:
        """A key each module refreshes with a TTL while it is alive."""
        return f"{self.prefix}:alive:{module}"

    def state_key(self, what: str) -> str:
        """Durable daemon state, such as the kill switch (`state:halt`)."""
        return f"{self.prefix}:state:{what}"
