"""Liveness: each module's heartbeat event plus a Redis key that expires when the module dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

import structlog

from event_bus.codec import Codec, EventRejected
from event_bus.events import utc_now
from event_bus.redis_bus import CONNECTION_ERRORS, RedisEventBus
from event_bus.system import Heartbeat
from event_bus.tasks import cancel_and_wait

log = structlog.get_logger()

# What a module reports about itself in its heartbeat: short strings, e.g. {"ib": "connected"}.
StatusProbe = Callable[[], dict[str, str]]


class HeartbeatPublisher:
    """Every `interval` seconds publishes a `Heartbeat` on `trading:system:heartbeat` and sets
    `trading:alive:{module}` to it with a TTL of three intervals, so a module that dies (or
    hangs its event loop) disappears from `status` within that time.
    """

    def __init__(
        self,
        bus: RedisEventBus,
        module: str,
        *,
        interval: float = 5.0,
        probe: StatusProbe | None = None,
    ) -> None:
        self.bus = bus
        self.module = module
        self.interval = interval
        self.probe = probe
        self.started_at = utc_now()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._beat_forever(), name=f"heartbeat:{self.module}")

    async def stop(self) -> None:
        """Stop beating and remove the key at once: a clean stop is not a death.

        The loop is asked to stop, not cancelled in the middle of a Redis call (see
        `event_bus.tasks.cancel_and_wait`); cancelling is the bounded last resort.
        """
        if self._task is not None:
            self._stopping.set()
            done, _ = await asyncio.wait({self._task}, timeout=self.interval + 5.0)
            if not done:
                await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.bus.redis.delete(self.bus.channels.heartbeat_key(self.module))

    def beat(self) -> Heartbeat:
        detail: dict[str, str] | None = None
        if self.probe is not None:
            try:
                detail = self.probe()
            except Exception as error:
                detail = {"probe_error": str(error)}
        return Heartbeat(
            module=self.module,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            interval_seconds=self.interval,
            detail=detail,
        )

    async def _beat_forever(self) -> None:
        key = self.bus.channels.heartbeat_key(self.module)
        while not self._stopping.is_set():
            heartbeat = self.beat()
            await self.bus.publish(heartbeat)
            try:
                await self.bus.redis.set(
                    key, self.bus.codec.encode(heartbeat), px=int(self.interval * 3000)
                )
            except CONNECTION_ERRORS as error:
                log.warning("heartbeat_key_failed", module=self.module, error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)


async def read_heartbeats(redis: Any, key_pattern: str, codec: Codec) -> list[Heartbeat]:
    """The live heartbeats under `key_pattern` (e.g. `trading:alive:*`), by module name."""
    keys = sorted([key async for key in redis.scan_iter(match=key_pattern)])
    beats = []
    for payload in await redis.mget(keys) if keys else []:
        if payload is None:
            continue  # expired between SCAN and MGET
        try:
            event = codec.decode(payload)
        except EventRejected:
            continue
        if isinstance(event, Heartbeat):
            beats.append(event)
    return sorted(beats, key=lambda beat: beat.module)
