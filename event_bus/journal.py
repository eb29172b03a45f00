"""A consumer-group reader of the journal stream that acknowledges only what was handled."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from event_bus.backoff import Backoff
from event_bus.channels import Channels
from event_bus.codec import Codec, EventRejected
from event_bus.events import Event
from event_bus.redis_bus import CONNECTION_ERRORS
from event_bus.tasks import cancel_and_wait

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class JournalEntry:
    entry_id: str
    channel: str
    event: Event


class Dropped(NamedTuple):
    """What `JournalReader.dropped_unread` found."""

    entries: int  # dropped by the journal before the group read them, since it began
    caught_up: bool  # given the newest entry and acknowledged all it was given (else behind)


BatchHandler = Callable[[list[JournalEntry]], Awaitable[None]]
RawEntry = tuple[bytes, dict[bytes, bytes] | None]  # (entry id, fields) as XREADGROUP gives them
DeadEntry = tuple[str, dict[bytes, bytes], str]  # (entry id, fields, reason)


@dataclass(frozen=True, slots=True)
class _Batch:
    """One read of the journal, decoded: the entries for the handler, and those set aside."""

    entries: list[JournalEntry]
    undecodable: list[DeadEntry]

    def __len__(self) -> int:
        return len(self.entries) + len(self.undecodable)


@dataclass(frozen=True, slots=True)
class _Stored:
    """A batch handled (and its poison set aside): the entry ids to acknowledge."""

    entry_ids: list[str]
    handled: int  # of them, how many the handler stored (the rest were set aside)


class JournalReader:
    """Reads `Channels.journal` as consumer `consumer` of group `group`, in batches.

    A batch is acknowledged (XACK) only after `handler` returns, so a reader that dies mid-batch
    gets the batch again on restart: handlers must be idempotent (storage keys rows by event id).
    When the handler fails on a batch, it is given the batch's halves, and each half that fails
    is split again, down to single entries (a poison entry among 5,000 costs about 25 more
    calls, not 5,000). Entries that fail alone while others succeed are poison: set aside in
    `Channels.dead_letter` with the reason, and acknowledged. When nothing succeeds (say, the
    database is down), the batch stays pending and is retried with backoff; an entry that fails
    `max_attempts` such rounds is next tried beside new entries, so a lone poison entry cannot
    block the journal. A handler that raises `HandlerUnavailable` says nothing could succeed
    now: the batch is not split, what it had not handled stays pending, and the round counts
    against no entry (a long outage does not pull new entries into the pending list).

    `run()` and `drain()` read and decode the next batch of new entries while the handler works
    on the current one (at most one batch ahead), and acknowledge the previous batch meanwhile
    (at most one acknowledgement on its way), so Redis round trips and decoding overlap the
    handler's writes. A batch is acknowledged only after its own handling; one read ahead and
    dropped (the handler failed, the task was cancelled) stays pending and is read again.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        group: str,
        consumer: str,
        handler: BatchHandler,
        channels: Channels | None = None,
        codec: Codec | None = None,
        batch_size: int = 500,
        block_ms: int = 1_000,
        claim_idle_ms: int = 60_000,
        max_attempts: int = 3,
        dead_letter_maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.channels = channels or Channels()
        self.codec = codec or Codec()
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_attempts = max_attempts
        self.dead_letter_maxlen = dead_letter_maxlen
        self.handled = 0
        self.dead_lettered = 0
        self._group_ready = False
        self._retry_pending = True  # start with what this consumer (or a dead one) left pending
        self._failures: Counter[str] = Counter()  # entry id -> batches it failed in with no success
        self._stopping = asyncio.Event()
        self._backoff = Backoff(0.05, 10.0)

    async def run(self) -> None:
        """Read and handle batches until `stop()`; the batch in hand is finished first."""
        while not self._stopping.is_set():
            try:
                await self._consume(wait=True)
            except (*CONNECTION_ERRORS, HandlerFailed) as error:
                self._group_ready = self._group_ready and not _is_nogroup(error)
                self._retry_pending = True
                delay = self._backoff.next_delay()
                log.warning(
                    "journal_read_failed",
                    group=self.group,
                    error=str(error),
                    retry_in=round(delay, 3),
                )
                await self._sleep_unless_stopping(delay)

    def stop(self) -> None:
        self._stopping.set()

    async def dropped_unread(self) -> Dropped | None:
        """How many entries the journal has dropped (trimmed to its MAXLEN) before this group
        read them, since the group was created; None when that cannot be told right now.

        Redis counts the entries added to the stream and those delivered to the group
        (`entries-added`, `entries-read`); their difference is what was dropped unread plus what
        waits unread. What waits is known at two moments: none when the group has been given
        the newest entry, all of the stream when even its oldest is newer than that. Reading the
        stream before and after the group makes each case exact, whatever arrives meanwhile.
        (Entries trimmed after they were read come back empty and are dead-lettered instead.)
        Redis before 7.0 keeps no such counts: None. A group created without ENTRIESREAD
        (before `_ensure_group` gave it, or by hand) counts what was dropped before its first
        read only until then: Redis then estimates the count it read from the stream as it is.
        """
        before: Any = await self.redis.xinfo_stream(self.channels.journal)
        groups: Any = await self.redis.xinfo_groups(self.channels.journal)
        after: Any = await self.redis.xinfo_stream(self.channels.journal)
        group = next((g for g in groups if _text(g["name"]) == self.group), None)
        if group is None or "entries-read" not in group or "entries-added" not in after:
            return None
        delivered = _stream_id(group["last-delivered-id"])
        read = group["entries-read"]
        if read is None:  # known only for a group that was never given anything
            if delivered != (0, 0):
                return None
            read = 0
        if delivered >= _stream_id(after["last-generated-id"]):  # nothing waits
            done = not int(group["pending"])
            return Dropped(max(0, int(after["entries-added"]) - int(read)), caught_up=done)
        first = before.get("recorded-first-entry-id")
        if before["length"] and first is not None and _stream_id(first) > delivered:
            unread = int(before["entries-added"]) - int(read) - int(before["length"])
            return Dropped(max(0, unread), caught_up=False)
        return None

    async def drain(self) -> int:
        """Handle every entry already in the journal, without waiting for new ones; how many.

        For a clean stop: what the other modules published before they stopped is stored now,
        not at the next start."""
        return await self._consume(wait=False)

    async def read_once(self, *, wait: bool = True) -> int:
        """Read one batch (waiting up to `block_ms` for new entries), handle it; return its size."""
        batch = await self._next_batch(wait=wait)
        await self._acknowledge(await self._store(batch))
        return len(batch)

    async def _consume(self, *, wait: bool) -> int:
        """Handle batches, reading the next one while the handler works on the current one, and
        acknowledging the previous one meanwhile.

        Until `stop()` when `wait` (each read waits up to `block_ms` for new entries; a batch
        already read ahead is still handled), else until the journal has nothing left. Returns
        how many entries it handled or set aside.
        """
        consumed = 0
        ahead: asyncio.Future[_Batch] | None = None
        acknowledging: asyncio.Future[None] | None = None
        try:
            while ahead is not None or not (wait and self._stopping.is_set()):
                batch = await (ahead if ahead is not None else self._next_batch(wait=wait))
                ahead = None
                if not batch:
                    self._backoff.reset()
                    if wait or self._retry_pending:
                        continue
                    break
                if self._may_read_ahead(wait=wait):
                    ahead = asyncio.ensure_future(self._next_batch(wait=wait))
                stored = await self._store(batch)
                if acknowledging is not None:  # one acknowledgement on its way at most
                    await acknowledging
                acknowledging = asyncio.ensure_future(self._acknowledge(stored))
                consumed += len(batch)
                self._backoff.reset()
            if acknowledging is not None:
                await acknowledging
            return consumed
        except BaseException:
            await self._abandon(ahead, acknowledging)
            raise

    async def _abandon(
        self, ahead: asyncio.Future[_Batch] | None, acknowledging: asyncio.Future[None] | None
    ) -> None:
        """On the way out with an error: the batch read ahead is left pending, to be read again,
        and the acknowledgement on its way gets a moment to land. Their own failures (Redis went
        away too, say) are moot beside the error being raised: rows committed but not
        acknowledged come again and are ignored as copies."""
        if ahead is not None:
            self._retry_pending = True
            await cancel_and_wait(ahead, timeout=1.0)
        if acknowledging is not None:
            await asyncio.wait([acknowledging], timeout=1.0)
            await cancel_and_wait(acknowledging, timeout=1.0)  # retrieves (and logs) its error

    def _may_read_ahead(self, *, wait: bool) -> bool:
        """Only new entries are read ahead: a read of the pending ones would return the batch
        in hand again, and a reader told to stop finishes the batch in hand, no more."""
        return not self._retry_pending and not (wait and self._stopping.is_set())

    async def _next_batch(self, *, wait: bool) -> _Batch:
        """Pending entries first (after a start or a failure), else new ones; decoded."""
        await self._ensure_group()
        entries = await self._read_pending() if self._retry_pending else []
        if self._retry_pending and not entries:
            self._retry_pending = False
        if all(self._failures[entry_id.decode()] >= self.max_attempts for entry_id, _ in entries):
            # Only entries that keep failing alone: try them beside new ones, which tells a
            # poison entry (the new ones succeed) from a handler that is down (nothing does).
            entries += await self._read_new(block=wait and not entries)
        return self._decode(entries)

    async def _ensure_group(self) -> None:
        """Creates the group at the journal's start, unless it exists.

        Created as having read nothing (ENTRIESREAD 0, Redis 7): Redis then counts each entry it
        delivers, so what the journal dropped before the group's first read is counted as
        dropped unread (`dropped_unread`) rather than estimated as read. Redis before 7.0 does
        not take the option and keeps no counts: the group is created without it.
        """
        if self._group_ready:
            return
        try:
            try:
                await self.redis.xgroup_create(
                    self.channels.journal, self.group, id="0", mkstream=True, entries_read=0
                )
            except ResponseError as error:
                if "BUSYGROUP" in str(error):
                    raise
                # Redis 6.2: "Unknown subcommand or wrong number of arguments for 'CREATE'"
                await self.redis.xgroup_create(
                    self.channels.journal, self.group, id="0", mkstream=True
                )
            log.info("journal_group_created", group=self.group, stream=self.channels.journal)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def _read_pending(self) -> list[RawEntry]:
        claimed = await self.redis.xautoclaim(
            self.channels.journal,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            start_id="0-0",
            count=self.batch_size,
        )
        if claimed[1]:
            return list(claimed[1])
        response: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.channels.journal: "0"}, count=self.batch_size
        )
        return list(response[0][1]) if response else []

    async def _read_new(self, *, block: bool) -> list[RawEntry]:
        response: Any = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.channels.journal: ">"},
            count=self.batch_size,
            block=self.block_ms if block else None,
        )
        return list(response[0][1]) if response else []

    def _decode(self, raw: list[RawEntry]) -> _Batch:
        entries: list[JournalEntry] = []
        undecodable: list[DeadEntry] = []
        for entry_id, fields in raw:
            parsed = self._parse(entry_id.decode(), fields or {})
            if isinstance(parsed, JournalEntry):
                entries.append(parsed)
            else:
                undecodable.append((entry_id.decode(), fields or {}, parsed))
        return _Batch(entries, undecodable)

    async def _store(self, batch: _Batch) -> _Stored:
        """Handle the batch and set its poison aside; what to acknowledge."""
        if not batch:
            return _Stored([], 0)
        done, failed = await self._handle(batch.entries)
        dead = batch.undecodable + [self._poison(entry, error) for entry, error in failed]
        await self._set_aside(dead)
        acknowledged = [entry.entry_id for entry in done] + [entry_id for entry_id, _, _ in dead]
        return _Stored(acknowledged, len(done))

    async def _acknowledge(self, stored: _Stored) -> None:
        if stored.entry_ids:
            await self.redis.xack(self.channels.journal, self.group, *stored.entry_ids)
        self.handled += stored.handled

    def _parse(self, entry_id: str, fields: dict[bytes, bytes]) -> JournalEntry | str:
        if b"event" not in fields:
            return "entry has no event field (trimmed from the stream, or not ours)"
        channel = fields.get(b"channel", b"").decode("utf-8", "replace")
        try:
            return JournalEntry(entry_id, channel, self.codec.decode(fields[b"event"]))
        except EventRejected as rejected:
            return rejected.reason

    async def _handle(
        self, entries: list[JournalEntry]
    ) -> tuple[list[JournalEntry], list[tuple[JournalEntry, Exception]]]:
        """Handle the batch, split while it fails (see the class). Returns (handled, failed
        alone); entries in neither (the handler became unavailable midway) stay pending.

        Raises `HandlerFailed` when nothing could be handled: the batch stays pending.
        """
        if not entries:
            return [], []
        done: list[JournalEntry] = []
        failed: list[tuple[JournalEntry, Exception]] = []
        unavailable: HandlerUnavailable | None = None
        try:
            await self._handle_part(entries, done, failed)
        except HandlerUnavailable as error:
            unavailable = error
        if not done:
            if unavailable is None:  # a round the handler was down is no entry's failure
                for entry in entries:
                    self._failures[entry.entry_id] += 1
            self._retry_pending = True
            cause = unavailable or failed[0][1]
            raise HandlerFailed(str(cause)) from cause
        if unavailable is not None:
            self._retry_pending = True
        return done, failed

    async def _handle_part(
        self,
        part: list[JournalEntry],
        done: list[JournalEntry],
        failed: list[tuple[JournalEntry, Exception]],
        *,
        whole: bool = True,
    ) -> None:
        try:
            await self.handler(part)
        except HandlerUnavailable:
            raise
        except Exception as error:
            if len(part) == 1:
                failed.append((part[0], error))
                return
            if whole:
                log.warning(
                    "journal_batch_failed", group=self.group, size=len(part), error=str(error)
                )
            middle = len(part) // 2
            await self._handle_part(part[:middle], done, failed, whole=False)
            await self._handle_part(part[middle:], done, failed, whole=False)
        else:
            done.extend(part)

    def _poison(self, entry: JournalEntry, error: Exception) -> DeadEntry:
        """An entry the handler fails on while it handles others: set it aside."""
        self._failures.pop(entry.entry_id, None)
        fields = {b"channel": entry.channel.encode(), b"event": self.codec.encode(entry.event)}
        return entry.entry_id, fields, f"handler failed: {type(error).__name__}: {error}"

    async def _set_aside(self, dead: list[DeadEntry]) -> None:
        for entry_id, fields, reason in dead:
            await self.redis.xadd(
                self.channels.dead_letter,
                {
                    "entry_id": entry_id,
                    "group": self.group,
                    "reason": reason,
                    "channel": fields.get(b"channel", b""),
                    "event": fields.get(b"event", b""),
                },
                maxlen=self.dead_letter_maxlen,
                approximate=True,
            )
            self.dead_lettered += 1
            log.error(
                "journal_entry_dead_lettered",
                entry_id=entry_id,
                group=self.group,
                reason=reason,
                dead_letter=self.channels.dead_letter,
            )

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class HandlerUnavailable(Exception):
    """Raised by a handler that can handle nothing now (its database is down, say), so that
    the batch is retried as it is rather than split in search of a poison entry."""


class HandlerFailed(Exception):
    """The handler failed on every entry of a batch; it stays pending and is retried."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(value: bytes | str) -> tuple[int, int]:
    milliseconds, _, sequence = _text(value).partition("-")
    return int(milliseconds), int(sequence or 0)


def _is_nogroup(error: BaseException) -> bool:
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)
