"""The storage module: consumes the journal and writes every event as rows."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError
from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from config import StorageSettings, masked_url
from event_bus import CONNECTION_ERRORS, Channels, Event, JournalEntry, JournalReader
from event_bus.journal import HandlerUnavailable
from event_bus.system import ControlCommand
from event_bus.tasks import cancel_and_wait
from storage.engine import make_engine
from storage.migrate import upgrade_database
from storage.retention import prune_ticks
from storage.writer import RowWriter

log = structlog.get_logger()

# Errors that say the database, not an event, is the problem: every entry would fail alike.
DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for statement_timeout (an OperationalError)

GROUP = "storage"
PRUNE_EVERY_SECONDS = 3_600.0  # with TICK_RETENTION_DAYS: a pass at start, then hourly
WATCH_EVERY_SECONDS = 10.0  # how often storage looks for journal entries dropped unstored


class StorageService:
    """Reads the journal stream (`Channels.journal`) as consumer group `storage` and stores
    each batch in one transaction; the reader acknowledges a batch once the commit returned.

    Publishes nothing but `republish` (see `_watch_journal`). A batch the database refuses is
    halved by the reader until what fails is alone, and that is dead-lettered
    (`Channels.dead_letter`); a database that is down gets the batch again whole (`store`).

    With `tick_retention_days`, ticks older than that are deleted at start and then every
    `prune_every_seconds` (`storage.retention`); everything else is kept.
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
        tick_retention_days: float = 0.0,
        prune_every_seconds: float = PRUNE_EVERY_SECONDS,
        watch_every_seconds: float = WATCH_EVERY_SECONDS,
        publish: Callable[[Event], Awaitable[None]] | None = None,
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
        self.tick_retention_days = tick_retention_days
        self.prune_every_seconds = prune_every_seconds
        self.watch_every_seconds = watch_every_seconds
        self._publish = publish  # the bus's, for `republish`
        self.rows_offered = 0
        self.ticks_pruned = 0
        self._task: asyncio.Task[None] | None = None
        self.journal_dropped = 0  # entries the journal dropped before they were read, all told
        self.journal_watches = 0  # rounds of `_watch_journal` done
        self._chores: list[asyncio.Task[None]] = []  # the journal watch, the ticks' pruning
        self._stop_pruning = threading.Event()  # seen by the pass in its thread, between chunks
        self._chores_stopped = asyncio.Event()  # ends their waits for the next round

    def vital_tasks(self) -> list[asyncio.Task[None]]:
        """Background tasks that must not end while this runs; the daemon watches them."""
        return [self._task] if self._task is not None else []

    def status(self) -> dict[str, str]:
        """What `main.py status` shows for storage (through the heartbeat)."""
        detail = {
            "events_stored": str(self.reader.handled),
            "dead_lettered": str(self.reader.dead_lettered),
        }
        if self.journal_dropped:
            detail["journal_dropped"] = str(self.journal_dropped)
        if self.tick_retention_days:
            detail["ticks_pruned"] = str(self.ticks_pruned)
        return detail

    async def start(self) -> None:
        """Bring the schema up to date, then consume the journal in the background."""
        if self._task is not None:
            return
        await asyncio.to_thread(upgrade_database, self.engine)
        self._task = asyncio.create_task(self.reader.run(), name="storage:journal")
        self._task.add_done_callback(_log_crash)
        if self.tick_retention_days:
            self._chores.append(asyncio.create_task(self._prune(), name="storage:prune"))
        self._chores.append(asyncio.create_task(self._watch_journal(), name="storage:watch"))
        for chore in self._chores:
            chore.add_done_callback(_log_crash)
        log.info(
            "storage_started",
            url=masked_url(self.engine.url.render_as_string(hide_password=False)),
            consumer=self.reader.consumer,
            tick_retention_days=self.tick_retention_days or None,
        )

    async def stop(self) -> None:
        """Finish the batch in hand, then store what is left in the journal (the modules that
        publish stop first), within the stop timeout; commit and acknowledge all of it."""
        if self._task is None:
            return
        self.reader.stop()
        await self._stop_chores()
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

    async def _prune(self) -> None:
        while not self._chores_stopped.is_set():
            cutoff = datetime.now(UTC) - timedelta(days=self.tick_retention_days)
            try:
                pruned = await asyncio.to_thread(
                    prune_ticks, self.engine, cutoff, stopping=self._stop_pruning
                )
            except Exception as error:  # the database is down, say: the next pass tries again
                log.warning("ticks_prune_failed", error=f"{type(error).__name__}: {error}")
            else:
                self.ticks_pruned += pruned
                if pruned:
                    log.info("ticks_pruned", rows=pruned, older_than=cutoff.isoformat())
            await self._wait_unless_stopped(self.prune_every_seconds)

    async def _watch_journal(self) -> None:
        """Say when the journal dropped entries (JOURNAL_MAXLEN) before storage read them: they
        are not in the database. Once storage has caught up, ask execution to publish every
        order state and fill the broker reports again (`republish`), which puts back what can
        be put back. Each loss is told once across restarts: how many were is kept in Redis."""
        redis, told_key = self.reader.redis, self.reader.channels.state_key("journal_dropped")
        logged, refused = 0, False
        while not self._chores_stopped.is_set():
            try:
                dropped = await self.reader.dropped_unread()
                if dropped is not None:
                    self.journal_dropped = dropped.entries
                    told = int(await redis.get(told_key) or 0)
                    if dropped.entries > max(told, logged):
                        logged = dropped.entries
                        log.error(
                            "journal_entries_lost",
                            count=dropped.entries - told,
                            dropped_since_the_group_began=dropped.entries,
                            stream=self.reader.channels.journal,
                            hint="the journal (JOURNAL_MAXLEN) dropped them before storage read"
                            " them: storage was that far behind. Execution is asked to publish"
                            " again the order states and fills the broker still reports",
                        )
                    if dropped.entries != told and (dropped.caught_up or dropped.entries < told):
                        # swapped, so that of two storages in the group only one asks
                        before = int(await redis.set(told_key, dropped.entries, get=True) or 0)
                        if dropped.entries > before and self._publish is not None:
                            await self._publish(_republish(dropped.entries - before))
                            log.warning("republish_requested", dropped=dropped.entries - before)
            except (*CONNECTION_ERRORS, ResponseError, ValueError) as error:
                if "NOPERM" in str(error) and not refused:  # an ACL from before the watch
                    refused = True
                    log.warning(
                        "journal_watch_not_allowed",
                        error=str(error),
                        hint="the Redis user needs +xinfo|stream +xinfo|groups to tell lost"
                        " journal entries: python -m deploy.redis_acl prints the rules",
                    )
                log.debug("journal_watch_failed", error=str(error))  # the reader says why
            self.journal_watches += 1
            await self._wait_unless_stopped(self.watch_every_seconds)

    async def _wait_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._chores_stopped.wait(), seconds)

    async def _stop_chores(self) -> None:
        """Let a pruning pass finish its chunk (its thread cannot be cancelled), within the stop
        timeout, before the engine is disposed of."""
        self._stop_pruning.set()
        self._chores_stopped.set()
        chores, self._chores = self._chores, []
        if not chores:
            return
        _, late = await asyncio.wait(chores, timeout=self.stop_timeout)
        if late:
            log.warning("storage_chores_stop_timed_out", timeout_seconds=self.stop_timeout)
            await cancel_and_wait(*late, timeout=1.0)

    async def store(self, entries: list[JournalEntry]) -> None:
        """The journal handler: one transaction per batch, in a worker thread.

        A database that cannot be reached or used now (`DATABASE_DOWN`: a refused connection,
        SQLite's lock held past its timeout, a full disk) says so (`HandlerUnavailable`), so the
        batch is retried whole later, not halved in search of a poison entry meanwhile."""
        try:
            self.rows_offered += await asyncio.to_thread(self.writer.write, entries)
        except DATABASE_DOWN as error:
            if getattr(getattr(error, "orig", None), "sqlstate", None) == QUERY_CANCELED:
                raise  # a statement timeout: a smaller batch may pass, so let it be halved
            raise HandlerUnavailable(str(error)) from error


def build_storage(
    settings: StorageSettings,
    redis_client: aioredis.Redis,
    channels: Channels,
    publish: Callable[[Event], Awaitable[None]] | None = None,
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
        tick_retention_days=settings.tick_retention_days,
        publish=publish,
    )


def _republish(dropped: int) -> ControlCommand:
    return ControlCommand(
        command="republish",
        reason=f"the journal dropped {dropped} events before storage stored them",
        issued_by="storage",
    )


def _log_crash(task: asyncio.Task[None]) -> None:
    """The reader only ends by `stop()`; anything else is a fault worth a line in the log."""
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error("storage_reader_crashed", error=f"{type(error).__name__}: {error}")
