"""What a drill watches from outside: ticks per symbol and heartbeats on Redis, and memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping

import redis.asyncio as aioredis

from drills.services import DaemonProcess
from event_bus import CONNECTION_ERRORS, Channels, Codec, EventRejected
from event_bus.system import Heartbeat
from market_data.model import Tick

RECONNECT_SECONDS = 0.1


class BusWatcher:
    """Subscribes to `{prefix}:tick:*` and the heartbeat channel, reconnecting when Redis goes.

    `last_tick` maps symbol -> wall-clock time (time.monotonic) the last tick was received;
    `heartbeats` maps module -> its latest Heartbeat.
    """

    def __init__(self, redis_url: str, channels: Channels) -> None:
        self.redis_url = redis_url
        self.channels = channels
        self.codec = Codec()
        self.last_tick: dict[str, float] = {}  # symbol -> monotonic time of its last tick
        self.heartbeats: dict[str, Heartbeat] = {}  # module -> latest heartbeat
        self.ticks_received = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def patterns(self) -> tuple[str, str]:
        return self.channels.instrument("tick", "*"), self.channels.system("heartbeat")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="drill:watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def ticking_since(self, moment: float, symbols: Iterable[str]) -> bool:
        """Every symbol has had a tick received after `moment` (monotonic)."""
        return all(self.last_tick.get(symbol, 0.0) > moment for symbol in symbols)

    def detail(self, module: str) -> dict[str, str]:
        beat = self.heartbeats.get(module)
        return dict(beat.detail or {}) if beat is not None else {}

    async def _run(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=1.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(*self.patterns)
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage":
                            self._on_message(message["data"])
            except CONNECTION_ERRORS:
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await client.aclose()

    def _on_message(self, payload: bytes) -> None:
        try:
            event = self.codec.decode(payload)
        except EventRejected:
            return  # the drill's own malformed messages
        if isinstance(event, Tick):
            self.last_tick[event.symbol] = time.monotonic()
            self.ticks_received += 1
        elif isinstance(event, Heartbeat):
            self.heartbeats[event.module] = event


class MemorySampler:
    """Samples a set of processes' resident memory every `interval` seconds; keeps the peak."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.peak: dict[str, int] = {}  # process name -> highest RSS seen, bytes
        self.first: dict[str, int] = {}  # process name -> RSS at the first sample after start
        self.last: dict[str, int] = {}  # process name -> latest RSS
        self._task: asyncio.Task[None] | None = None

    def start(self, sources: Mapping[str, DaemonProcess]) -> None:
        self._task = asyncio.create_task(self._run(sources), name="drill:memory")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, sources: Mapping[str, DaemonProcess]) -> None:
        while True:
            for name, process in sources.items():
                rss = process.rss_bytes()
                if rss:
                    self.first.setdefault(name, rss)
                    self.last[name] = rss
                    self.peak[name] = max(self.peak.get(name, 0), rss)
            await asyncio.sleep(self.interval)
