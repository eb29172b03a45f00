"""A bounded, ordered queue of encoded events waiting for Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outgoing:
    sequence: int
    channel: str
    payload: bytes
    event_type: str
    droppable: bool
    publish: bool = True  # False: append to the journal only


class Outbox:
    """Holds events until they are sent, in publication order, at most `capacity` at once.

    When full, a droppable event (market data) pushes out the oldest droppable one (or is itself
    refused if there is none); any other event waits for room: orders, fills and signals are
    never dropped. Counting includes the batch being sent, so memory stays bounded while Redis
    is away.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be at least 1")
        self.capacity = capacity
        self._critical: deque[Outgoing] = deque()
        self._droppable: deque[Outgoing] = deque()
        self._in_flight = 0
        self._sequence = itertools.count()
        self._not_empty = asyncio.Event()
        self._has_critical = asyncio.Event()
        self._has_room = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._critical) + len(self._droppable) + self._in_flight

    async def put(
        self, channel: str, payload: bytes, event_type: str, droppable: bool, publish: bool = True
    ) -> Outgoing | None:
        """Queue one event; return the market data event dropped for it (older, or this one)."""
        evicted = None
        if len(self) >= self.capacity:
            if droppable:
                if not self._droppable:
                    return Outgoing(-1, channel, payload, event_type, droppable)
                evicted = self._droppable.popleft()
            else:
                evicted = self._evict_for_critical()
                while len(self) >= self.capacity:
                    self._has_room.clear()
                    await self._has_room.wait()
        item = Outgoing(next(self._sequence), channel, payload, event_type, droppable, publish)
        (self._droppable if droppable else self._critical).append(item)
        self._empty.clear()
        self._not_empty.set()
        if not droppable:
            self._has_critical.set()
        return evicted

    def _evict_for_critical(self) -> Outgoing | None:
        return self._droppable.popleft() if self._droppable else None

    async def take(self, limit: int, *, linger: float = 0.0) -> list[Outgoing]:
        """Wait for events, then take up to `limit` of them, oldest first, as in flight.

        With `linger`, market data alone waits up to that long for more to join it (one write
        to Redis for several ticks instead of one each); any other event ends the wait at once.
        """
        while not (self._critical or self._droppable):
            self._not_empty.clear()
            await self._not_empty.wait()
        if linger and not self._critical and len(self._droppable) < limit:
            self._has_critical.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self._has_critical.wait()
        batch: list[Outgoing] = []
        critical, droppable = self._critical, self._droppable
        while len(batch) < limit and (critical or droppable):
            if not droppable or (critical and critical[0].sequence < droppable[0].sequence):
                batch.append(critical.popleft())
            else:
                batch.append(droppable.popleft())
        self._in_flight += len(batch)
        return batch

    def sent(self, count: int) -> None:
        """The in-flight batch reached Redis."""
        self._in_flight -= count
        self._has_room.set()
        if not len(self):
            self._empty.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()
