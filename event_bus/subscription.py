"""One handler on one channel pattern, with its own bounded queue and worker task."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

from event_bus.events import Event
from event_bus.stats import BusStats
from event_bus.tasks import cancel_and_wait

log = structlog.get_logger()

Handler = Callable[[Event], Awaitable[None]]


class Subscription:
    """Queues events for `handler` so a slow handler stalls no other subscription; the bus
    decides which channels feed it.

    Up to `maxsize` events wait in order. Beyond that, droppable events (market data) are
    conflated, the newest per channel wins, and the others make the caller wait for room.
    """

    def __init__(self, handler: Handler, *, name: str, maxsize: int, stats: BusStats) -> None:
        self.handler = handler
        self.name = name
        self.maxsize = maxsize
        self._stats = stats
        self._pending: deque[Event] = deque()
        # channel -> newest droppable event that arrived while the queue was full
        self._conflated: dict[str, Event] = {}
        self._has_work = asyncio.Event()
        self._has_room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"subscription:{self.name}")

    async def put(self, channel: str, event: Event) -> None:
        while not self.offer(channel, event):  # an event that must not be lost waits for room
            self._has_room.clear()
            await self._has_room.wait()

    def offer(self, channel: str, event: Event) -> bool:
        """Queue `event` unless it must wait for room (False): `put` without a coroutine for
        the common case, one per event and subscription on the bus's read path."""
        if event.droppable and (channel in self._conflated or len(self._pending) >= self.maxsize):
            if channel in self._conflated:
                self._stats.conflated[type(event).__name__] += 1
            self._conflated[channel] = event
        elif len(self._pending) >= self.maxsize:
            return False
        else:
            self._pending.append(event)
        self._idle.clear()
        self._has_work.set()
        return True

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._conflated)

    async def drain(self) -> None:
        """Wait until every queued event has been handled."""
        await self._idle.wait()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            while self._pending or self._conflated:
                await self._handle(self._next())
            self._has_work.clear()
            self._idle.set()

    def _next(self) -> Event:
        if self._pending:
            event = self._pending.popleft()
            self._has_room.set()
            return event
        channel = next(iter(self._conflated))
        return self._conflated.pop(channel)

    async def _handle(self, event: Event) -> None:
        try:
            await self.handler(event)
        except Exception:
            self._stats.handler_errors[self.name] += 1
            log.exception(
                "handler_failed",
                subscription=self.name,
                event_type=type(event).__name__,
                event_id=event.id,
            )
        else:
            self._stats.delivered[type(event).__name__] += 1
            if self._stats.on_handled is not None:
                self._stats.on_handled(event)
