"""The journal's consumer-group reader: acknowledged after handling, poison set aside."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from event_bus import Channels, JournalEntry, JournalReader, RedisEventBus, connect_redis
from event_bus.embedded import EmbeddedRedis
from event_bus.journal import HandlerFailed, HandlerUnavailable
from tests.event_bus.events_for_tests import SampleFill
from tests.helpers import eventually, redis_keeps_stream_counts

ReaderFactory = Callable[..., JournalReader]


@pytest.fixture
async def client(redis_url: str, clean_keys: None) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def publish_fills(url: str, channels: Channels, count: int, start: int = 0) -> list[str]:
    bus = RedisEventBus.from_url(url, channels=channels)
    await bus.start()
    fills = [SampleFill(symbol="A", quantity=1, sequence=n) for n in range(start, start + count)]
    for fill in fills:
        await bus.publish(fill)
    await bus.stop()
    return [fill.id for fill in fills]


class Store:
    """A handler that records event ids, and can be told to fail."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.fail_all = False
        self.unavailable = False  # says so (HandlerUnavailable)
        self.poison: set[int] = set()  # sequences it always fails on
        self.sizes: list[int] = []  # of every batch it was given

    async def __call__(self, entries: list[JournalEntry]) -> None:
        self.sizes.append(len(entries))
        if self.unavailable:
            raise HandlerUnavailable("database down")
        if self.fail_all:
            raise ConnectionError("database down")
        if any(entry.event.sequence in self.poison for entry in entries):  # type: ignore[attr-defined]
            raise ValueError("cannot store this one")
        self.ids += [entry.event.id for entry in entries]


class GatedStore(Store):
    """A `Store` whose first call waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls = 0

    async def __call__(self, entries: list[JournalEntry]) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.gate.wait()
        await super().__call__(entries)


class FailsAfterFirstBatch(Store):
    """A `Store` that stores its first batch and fails on the next ones, until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_after_first = True

    async def __call__(self, entries: list[JournalEntry]) -> None:
        if self.fail_after_first and self.ids:
            raise ConnectionError("database down")
        await super().__call__(entries)


class FailsOnceAheadIsRead(Store):
    """A `Store` that, told to fail, first waits until a second batch of 10 has been read."""

    def __init__(self, client: aioredis.Redis, channels: Channels) -> None:
        super().__init__()
        self.client = client
        self.channels = channels

    async def __call__(self, entries: list[JournalEntry]) -> None:
        if self.fail_all:
            await eventually(lambda: _pending_is(self.client, self.channels, 20))
        await super().__call__(entries)


def reader(
    client: aioredis.Redis, channels: Channels, store: Store, **options: object
) -> JournalReader:
    options.setdefault("block_ms", 50)
    return JournalReader(
        client, group="storage", consumer="storage-1", handler=store, channels=channels, **options
    )  # type: ignore[arg-type]


async def read_until_idle(journal: JournalReader) -> None:
    """Drive the reader until a read finds nothing (the tests' "run until idle")."""
    for _ in range(1000):
        if await journal.read_once() == 0 and not journal._retry_pending:
            return
    raise AssertionError("journal reader never became idle")


async def pending_count(client: aioredis.Redis, channels: Channels) -> int:
    summary = await client.xpending(channels.journal, "storage")
    return int(summary["pending"])


async def test_every_event_is_handled_once_and_acknowledged(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """All journal entries reach the handler in order, and none stays pending."""
    ids = await publish_fills(redis_url, channels, 25)
    store = Store()
    await read_until_idle(reader(client, channels, store, batch_size=10))
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_failed_batch_stays_pending_and_is_handled_by_the_next_reader(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """A handler that fails (storage down, or killed) leaves its batch for the restarted reader."""
    ids = await publish_fills(redis_url, channels, 10)
    store = Store()
    store.fail_all = True
    first = reader(client, channels, store)
    with pytest.raises(Exception, match="database down"):
        await first.read_once()
    assert await pending_count(client, channels) == 10

    store.fail_all = False
    await read_until_idle(reader(client, channels, store))  # a new reader, as after a restart
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_poison_entry_is_dead_lettered_and_the_rest_go_on(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """One entry the handler always fails on goes to the dead letter; the others are stored."""
    ids = await publish_fills(redis_url, channels, 10)
    store = Store()
    store.poison = {4}
    journal = reader(client, channels, store)
    await read_until_idle(journal)
    assert store.ids == ids[:4] + ids[5:]
    dead = await client.xrange(channels.dead_letter)
    assert len(dead) == 1
    assert dead[0][1][b"reason"].startswith(b"handler failed: ValueError")
    assert journal.dead_lettered == 1
    assert await pending_count(client, channels) == 0


async def test_a_poison_entry_is_found_by_halving_not_by_trying_each_entry(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """One poison entry in a batch of 64: the batch, then halves of halves (2 per level, 6
    levels), not 64 single entries."""
    ids = await publish_fills(redis_url, channels, 64)
    store = Store()
    store.poison = {37}
    journal = reader(client, channels, store, batch_size=64)
    await journal.read_once()
    assert store.ids == ids[:37] + ids[38:]
    assert len(store.sizes) == 1 + 2 * 6
    assert store.sizes.count(1) == 2  # the poison entry and its neighbour
    assert journal.dead_lettered == 1
    assert await pending_count(client, channels) == 0


async def test_a_handler_that_says_it_is_unavailable_gets_the_batch_again_whole(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """HandlerUnavailable: the batch is not split (one call), stays pending, and is handled
    once the handler is back; nothing is set aside."""
    ids = await publish_fills(redis_url, channels, 10)
    store = Store()
    store.unavailable = True
    journal = reader(client, channels, store)
    with pytest.raises(HandlerFailed, match="database down"):
        await journal.read_once()
    assert store.sizes == [10]
    assert await pending_count(client, channels) == 10
    store.unavailable = False
    await read_until_idle(journal)
    assert store.ids == ids
    assert journal.dead_lettered == 0
    assert await pending_count(client, channels) == 0


async def test_a_long_outage_of_the_handler_pulls_no_more_entries_into_pending(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """Rounds of an unavailable handler are not failures of its entries: past `max_attempts`
    the batch is not tried beside new entries (which would move the whole journal, a batch a
    round, into the group's pending list during a long outage). Every entry is stored once
    the handler is back."""
    ids = await publish_fills(redis_url, channels, 20)
    store = Store()
    store.unavailable = True
    journal = reader(client, channels, store, batch_size=5, max_attempts=2)
    for _ in range(6):
        with pytest.raises(HandlerFailed, match="database down"):
            await journal.read_once()
    assert store.sizes == [5] * 6
    assert await pending_count(client, channels) == 5
    store.unavailable = False
    await read_until_idle(journal)
    assert store.ids == ids
    assert journal.dead_lettered == 0


class UnavailableAfterStoring(Store):
    """A `Store` that says it is unavailable once it has stored `limit` entries (None: never)."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit

    async def __call__(self, entries: list[JournalEntry]) -> None:
        if self.limit is not None and len(self.ids) >= self.limit:
            self.sizes.append(len(entries))
            raise HandlerUnavailable("database down")
        await super().__call__(entries)


async def test_a_handler_unavailable_midway_keeps_what_it_stored_and_the_rest_pending(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """Halving a batch of 8 for its poison (entry 0): entry 1 is stored, then the handler says
    it is unavailable. Entry 1 is acknowledged and entry 0 set aside; the other six stay
    pending and are stored once the handler is back."""
    ids = await publish_fills(redis_url, channels, 8)
    store = UnavailableAfterStoring(limit=1)
    store.poison = {0}
    journal = reader(client, channels, store, batch_size=8)
    await journal.read_once()
    assert store.ids == ids[1:2]
    assert store.sizes == [8, 4, 2, 1, 1, 2]
    assert journal.dead_lettered == 1
    assert await pending_count(client, channels) == 6
    store.limit = None
    await read_until_idle(journal)
    assert store.ids == ids[1:]
    assert journal.dead_lettered == 1
    assert await pending_count(client, channels) == 0


async def test_lone_poison_entry_is_dead_lettered_once_new_entries_succeed(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """A poison entry alone in its batch cannot block the journal once others arrive."""
    [poison_id] = await publish_fills(redis_url, channels, 1)
    store = Store()
    store.poison = {0}
    journal = reader(client, channels, store, max_attempts=2)
    for _ in range(2):
        with pytest.raises(Exception, match="cannot store"):
            await journal.read_once()
    later = await publish_fills(redis_url, channels, 3, start=1)
    await read_until_idle(journal)
    assert store.ids == later
    assert [fields[b"event"] for _, fields in await client.xrange(channels.dead_letter)] != []
    assert poison_id not in store.ids


async def test_undecodable_entry_is_dead_lettered_with_its_reason(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """Garbage written straight into the journal is set aside; good entries are handled."""
    await client.xadd(channels.journal, {"channel": "x", "event": b"{broken"})
    ids = await publish_fills(redis_url, channels, 2)
    store = Store()
    await read_until_idle(reader(client, channels, store))
    assert store.ids == ids
    [(_, fields)] = await client.xrange(channels.dead_letter)
    assert fields[b"reason"].startswith(b"not a JSON event")
    assert fields[b"event"] == b"{broken"


async def test_reader_survives_a_redis_restart_that_loses_the_group(
    embedded_redis: EmbeddedRedis,
) -> None:
    """Redis restarted empty (group gone): the reader recreates its group and goes on."""
    channels = Channels("restart")
    connection = aioredis.Redis.from_url(embedded_redis.url, socket_timeout=2)
    store = Store()
    journal = reader(connection, channels, store)
    first = await publish_fills(embedded_redis.url, channels, 3)
    await read_until_idle(journal)
    await embedded_redis.restart()
    with pytest.raises(Exception):  # noqa: B017 - the connection error itself
        await journal.read_once()
    journal._group_ready = False  # what run() does on a NOGROUP or connection error
    second = await publish_fills(embedded_redis.url, channels, 3, start=3)
    await read_until_idle(journal)
    await connection.aclose()
    assert store.ids == first + second


async def test_the_next_batch_is_read_while_the_handler_works_and_acked_only_after_its_own(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """While the handler holds the first batch, one batch more is read, and nothing is acked."""
    ids = await publish_fills(redis_url, channels, 30)
    store = GatedStore()
    draining = asyncio.create_task(reader(client, channels, store, batch_size=10).drain())
    await eventually(
        lambda: _pending_is(client, channels, 20), message="a batch read ahead, none acked"
    )
    assert (store.calls, store.ids) == (1, [])

    store.gate.set()
    assert await draining == 30
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_a_batch_read_ahead_of_a_failed_one_is_handled_once_later(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """The handler fails on a batch while the next is read ahead: both are handled, once, later."""
    ids = await publish_fills(redis_url, channels, 30)
    store = FailsOnceAheadIsRead(client, channels)
    store.fail_all = True
    journal = reader(client, channels, store, batch_size=10)
    with pytest.raises(HandlerFailed, match="database down"):
        await journal.drain()

    store.fail_all = False
    assert await journal.drain() == 30
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_a_batch_stored_before_a_failed_one_is_acknowledged_when_the_reader_gives_up(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """The acknowledgement of a batch, sent while the next is handled, lands even when that next
    batch fails: only the failed batch (and the one read ahead) stays pending."""
    ids = await publish_fills(redis_url, channels, 30)
    store = FailsAfterFirstBatch()
    journal = reader(client, channels, store, batch_size=10)
    with pytest.raises(HandlerFailed, match="database down"):
        await journal.drain()
    assert store.ids == ids[:10]
    assert journal.handled == 10
    assert await pending_count(client, channels) in (10, 20)  # 20 when the read ahead was done

    store.fail_after_first = False
    assert await journal.drain() == 20
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_cancelled_while_a_batch_is_read_ahead_a_new_reader_handles_each_entry_once(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """A reader cancelled mid-batch with one read ahead leaves both pending for its successor."""
    ids = await publish_fills(redis_url, channels, 30)
    own_client = aioredis.Redis.from_url(redis_url)
    cancelled = reader(own_client, channels, GatedStore(), batch_size=10)
    draining = asyncio.create_task(cancelled.drain())
    await eventually(lambda: _pending_is(client, channels, 20), message="a batch read ahead")
    draining.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await draining
    await own_client.aclose()

    store = Store()
    await read_until_idle(reader(client, channels, store, batch_size=10))
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_stopped_while_a_batch_is_read_ahead_run_handles_it_and_drain_the_rest(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """stop() during a batch: run() finishes it and the one read ahead; drain() takes the rest."""
    ids = await publish_fills(redis_url, channels, 30)
    store = GatedStore()
    journal = reader(client, channels, store, batch_size=10)
    running = asyncio.create_task(journal.run())
    await eventually(lambda: _pending_is(client, channels, 20), message="a batch read ahead")
    journal.stop()
    store.gate.set()
    await asyncio.wait_for(running, 5)
    assert store.ids == ids[:20]

    assert await journal.drain() == 10
    assert store.ids == ids
    assert await pending_count(client, channels) == 0


async def test_a_failed_read_ahead_beside_a_failed_batch_is_not_left_unretrieved(
    redis_url: str, channels: Channels, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis drops the read ahead, then the handler fails: only the handler's failure is raised,
    and asyncio has no unretrieved task exception to log (the drills count those as crashes)."""
    await publish_fills(redis_url, channels, 10)
    own_client = connect_redis(redis_url, timeout=5.0, name=f"{channels.prefix}-reader")
    store = GatedStore()
    journal = reader(own_client, channels, store, batch_size=10, block_ms=10_000)
    running = asyncio.create_task(journal.run())
    await eventually(lambda: _reader_blocked(client, channels), message="a read ahead waiting")
    [blocked] = [c for c in await client.client_list() if c["name"] == f"{channels.prefix}-reader"]
    await client.client_kill_filter(_id=blocked["id"])
    await eventually(lambda: _reader_gone(client, channels), message="its connection closed")

    store.fail_all = True
    store.gate.set()
    await eventually(lambda: journal._retry_pending, message="the failure handled")
    journal.stop()
    await asyncio.wait_for(running, 5)
    await own_client.aclose()
    gc.collect()
    assert [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()] == []


async def _reader_blocked(client: aioredis.Redis, channels: Channels) -> bool:
    name = f"{channels.prefix}-reader"
    return any(
        c["name"] == name and c["cmd"] == "xreadgroup" and "b" in c["flags"]
        for c in await client.client_list()
    )


async def _reader_gone(client: aioredis.Redis, channels: Channels) -> bool:
    name = f"{channels.prefix}-reader"
    return not any(c["name"] == name for c in await client.client_list())


async def _pending_is(client: aioredis.Redis, channels: Channels, count: int) -> bool:
    """Whether `count` entries are delivered and unacknowledged (False before the group exists)."""
    try:
        return await pending_count(client, channels) == count
    except ResponseError as error:
        if "NOGROUP" not in str(error):
            raise
        return False


async def test_entries_the_journal_dropped_before_they_were_read_are_counted(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """A reader 10 entries in, the journal trimmed to its last 5 of 25: the 10 it had not read
    and no longer can are counted, while it waits behind the gap and once it is past it; the
    count is cumulative (the next drop adds to it)."""
    ids = await publish_fills(redis_url, channels, 25)
    store = Store()
    journal = reader(client, channels, store, batch_size=10)
    assert await journal.dropped_unread() is None  # no group yet
    if not await redis_keeps_stream_counts(client):  # the bundled 6.2: no counts, no answer
        await journal.read_once()
        await client.xtrim(channels.journal, maxlen=5, approximate=False)
        assert await journal.dropped_unread() is None
        return
    await journal.read_once()
    assert await journal.dropped_unread() is None  # 15 wait: cannot tell what is gone
    await client.xtrim(channels.journal, maxlen=5, approximate=False)
    assert await journal.dropped_unread() == (10, False)  # behind the gap
    await read_until_idle(journal)
    assert store.ids == ids[:10] + ids[20:]
    assert await journal.dropped_unread() == (10, True)  # caught up
    more = await publish_fills(redis_url, channels, 4, start=25)
    await client.xtrim(channels.journal, maxlen=1, approximate=False)
    await read_until_idle(journal)
    assert store.ids[-1:] == more[-1:]
    assert await journal.dropped_unread() == (13, True)


async def test_a_group_that_read_nothing_counts_what_was_dropped_from_the_start(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    await client.xgroup_create(channels.journal, "storage", id="0", mkstream=True)
    journal = reader(client, channels, Store())
    if not await redis_keeps_stream_counts(client):  # the bundled 6.2: no counts, no answer
        assert await journal.dropped_unread() is None
        return
    assert await journal.dropped_unread() == (0, True)
    await publish_fills(redis_url, channels, 8)
    await client.xtrim(channels.journal, maxlen=3, approximate=False)
    assert await journal.dropped_unread() == (5, False)


async def test_what_the_journal_dropped_before_the_group_existed_is_counted(
    redis_url: str, channels: Channels, client: aioredis.Redis
) -> None:
    """Storage started for the first time on a journal that has already wrapped (25 published,
    the last 5 kept): the 20 it never saw are counted once it has read the rest, not estimated
    as read."""
    ids = await publish_fills(redis_url, channels, 25)
    await client.xtrim(channels.journal, maxlen=5, approximate=False)
    store = Store()
    journal = reader(client, channels, store, batch_size=2)
    await read_until_idle(journal)
    assert store.ids == ids[20:]
    if not await redis_keeps_stream_counts(client):  # the bundled 6.2: no counts, no answer
        assert await journal.dropped_unread() is None
        return
    assert await journal.dropped_unread() == (20, True)
