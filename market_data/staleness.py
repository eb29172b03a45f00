"""Which feeds have been silent too long: a pure function of when each last had data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from market_data.model import Stream

FeedT = TypeVar("FeedT")


def overdue(
    last_seen: Iterable[tuple[FeedT, Stream, float]],
    now: float,
    limits: Mapping[Stream, float],
) -> list[tuple[FeedT, Stream, float]]:
    """(feed, stream, silent seconds) for each stream silent longer than its limit.

    `last_seen` holds (feed, stream, time of its last data or subscription), in the same clock
    as `now`; a stream without a limit is never overdue.
    """
    return [
        (feed, stream, now - seen)
        for feed, stream, seen in last_seen
        if stream in limits and now - seen > limits[stream]
    ]


def stale_limits(factor: float, tick_interval: float, bar_interval: float) -> dict[Stream, float]:
    """Silence allowed per stream: `factor` times its expected interval; none if factor is 0."""
    if factor <= 0:
        return {}
    return {"ticks": factor * tick_interval, "bars": factor * bar_interval}
