"""The storage module: consumes the journal and writes every event as rows."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import structlog
from sqlalchemy import Engine

from config import StorageSettings, masked_url
from event_bus import Channels, JournalEntry, JournalReader
from event_bus.tasks import cancel_and_wait
from storage.engine import make_engine
from storage.migrate import upgrade_database
from storage.writer import RowWriter

log = structlog.get_logger()

GROUP = "storage"


class StorageService:
    """Reads the journal stream (`Channels.journal`) as consumer group `storage` and stores
    each batch in one transaction; the reader acknowledges a batch once the commit returned.

    Publishes nothing. A batch the database refuses is retried entry by entry by the reader, which
    dead-letters (`Channels.dead_letter`) the entries that fail while others succeed.
    """

    name = "storage"

    def __init__(
        self,
        engine: Engine,
        redis: aioredis.Redis,
        *,
        channels: Channels,
        consumer: str = "storage",
        batch_size: int = 1_000,
        block_ms: int = 1_000,
        stop_timeout: float = 10.0,
    ) -> None:
        self.engine = engine
        self.writer = RowWriter(engine)
        self.reader = JournalReader(
            redis,
            group=GROUP,
            consumer=consumer,
            handler=self.store,
            channels=channels,
            batch_size=batch_size,
            block_ms=block_ms,
        )
        self.stop_timeout = stop_timeout
        self.rows_offered = 0
        self._task: asyncio.Task[None] | None = None

    def vital_tasks(self) -> list[asyncio.Task[None]]:
        """Background tasks that must not end while this runs; the daemon watches them."""
        return [self._task] if self._task is not None else []

    def status(self) -> dict[str, str]:
        """What `main.py status` shows for storage (through the heartbeat)."""
        return {
            "events_stored": str(self.reader.handled),
            "dead_lettered": str(self.reader.dead_lettered),
        }

    async def start(self) -> None:
        """Bring the schema up to date, then consume the journal in the background."""
        if self._task is not None:
            return
        await asyncio.to_thread(upgrade_database, self.engine)
        self._task = asyncio.create_task(self.reader.run(), name="storage:journal")
        self._task.add_done_callback(_log_crash)
        log.info(
            "storage_started",
            url=masked_url(self.engine.url.render_as_string(hide_password=False)),
            consumer=self.reader.consumer,
        )

    async def stop(self) -> None:
        """Finish the batch in hand, then store what is left in the journal (the modules that
        publish stop first), within the stop timeout; commit and acknowledge all of it."""
        if self._task is None:
            return
        self.reader.stop()
        task, self._task = self._task, None
        done, _ = await asyncio.wait([task], timeout=self.stop_timeout)
        if done:
            drained = asyncio.ensure_future(self.reader.drain())
            drained_in_time, _ = await asyncio.wait([drained], timeout=self.stop_timeout)
            if not drained_in_time:
                log.warning("storage_drain_timed_out", timeout_seconds=self.stop_timeout)
                await cancel_and_wait(drained, timeout=1.0)
            elif drained.exception() is not None:
                log.warning("storage_drain_failed", error=str(drained.exception()))
        else:
            # Whatever was committed but not acknowledged comes again and is ignored as a copy.
            log.warning("storage_stop_timed_out", timeout_seconds=self.stop_timeout)
            task.cancel()
            await asyncio.wait([task], timeout=1.0)  # bounded: see the report on redis-py
        self.engine.dispose()
        log.info("storage_stopped", handled=self.reader.handled, rows=self.rows_offered)

    async def store(self, entries: list[JournalEntry]) -> None:
        """The journal handler: one transaction per batch, in a worker thread."""
        self.rows_offered += await asyncio.to_thread(self.writer.write, entries)


def build_storage(
    settings: StorageSettings, redis_client: aioredis.Redis, channels: Channels
) -> StorageService:
    """The storage module as `main.py` wires it; `redis_client` stays the caller's to close."""
    return StorageService(
        make_engine(settings.database_url.get_secret_value()),
        redis_client,
        channels=channels,
        consumer=settings.storage_consumer,
        batch_size=settings.storage_batch_size,
        block_ms=settings.storage_block_ms,
        stop_timeout=settings.storage_stop_timeout_seconds,
    )


def _log_crash(task: asyncio.Task[None]) -> None:
    """The reader only ends by `stop()`; anything else is a fault worth a line in the log."""
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error("storage_reader_crashed", error=f"{type(error).__name__}: {error}")
