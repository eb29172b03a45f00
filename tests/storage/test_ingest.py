"""The storage service: every journal event stored exactly once, through restarts and poison."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import ResponseError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from structlog.testing import capture_logs

from config import StorageSettings
from event_bus import CONNECTION_ERRORS, Channels, Event, JournalEntry
from event_bus.journal import HandlerFailed, HandlerUnavailable
from event_bus.system import ControlCommand, Heartbeat
from execution.model import Fill, OrderUpdate
from market_data.model import Bar
from storage import StorageService, build_storage, make_engine, todays_orders, upgrade_database
from storage.writer import RowWriter
from tests.helpers import eventually, redis_keeps_stream_counts
from tests.storage.conftest import POSTGRES_URL, postgres_answers, publish
from tests.storage.samples import T0, by_id, every_kind, row_counts, stored_events, ticks


def service(engine: Engine, client: aioredis.Redis, channels: Channels, **options: object):
    options.setdefault("block_ms", 20)
    return StorageService(engine, client, channels=channels, **options)  # type: ignore[arg-type]


async def read_until_idle(storage: StorageService) -> None:
    """Drive the journal reader until a read finds nothing ("run until idle")."""
    for _ in range(10_000):
        if await storage.reader.read_once() == 0 and not storage.reader._retry_pending:
            return
    raise AssertionError("storage never became idle")


async def pending(client: aioredis.Redis, channels: Channels) -> int:
    return int((await client.xpending(channels.journal, "storage"))["pending"])


def entries(events: list) -> list[JournalEntry]:
    return [JournalEntry(f"{n}-0", "test", event) for n, event in enumerate(events)]


async def test_every_event_kind_round_trips_through_journal_and_database(
    redis_url: str, channels: Channels, client: aioredis.Redis, database_url: str
) -> None:
    """Published events come back whole from the rows (heartbeats excepted); stop acks them."""
    events = every_kind()
    settings = StorageSettings(
        database_url=SecretStr(database_url), storage_block_ms=20, storage_batch_size=4
    )
    storage = build_storage(settings, client, channels)
    await storage.start()
    await publish(redis_url, channels, events)
    await eventually(lambda: storage.reader.handled == len(events), message="all handled")
    await storage.stop()

    expected = [event for event in events if not isinstance(event, Heartbeat)]
    assert stored_events(storage.engine) == by_id(expected)
    assert todays_orders(storage.engine, now=T0) == [events[5]]
    assert await pending(client, channels) == 0
    storage.engine.dispose()


async def test_redelivered_events_make_no_second_row(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine
) -> None:
    """The same events twice in the journal, and the same batch written again, store once."""
    events = every_kind()
    await publish(redis_url, channels, events + events)
    await read_until_idle(service(engine, client, channels, batch_size=5))
    RowWriter(engine).write(entries(events))

    expected = [event for event in events if not isinstance(event, Heartbeat)]
    assert stored_events(engine) == by_id(expected)
    assert row_counts(engine) == {
        "ticks": 2,
        "bars": 1,
        "signals": 1,
        "orders": 1,
        "order_history": 2,
        "fills": 1,
        "system_events": 4,
    }


def test_an_older_order_update_arriving_late_keeps_the_latest_state(engine: Engine) -> None:
    """An order's row holds its newest update; a late older copy changes nothing, ids stay."""
    events = every_kind()
    pending_submit, filled = events[4], events[5]
    later = replace(filled, id="cancel-1", ts=filled.ts + timedelta(seconds=1), perm_id=None)
    writer = RowWriter(engine)
    writer.write(entries([filled]))
    writer.write(entries([pending_submit]))
    writer.write(entries([later]))

    assert todays_orders(engine, now=T0) == [replace(later, perm_id=filled.perm_id)]


def test_orders_within_one_batch_end_in_their_latest_state(engine: Engine) -> None:
    """Several updates of one order in one batch: one order row, every update in the history."""
    events = every_kind()
    RowWriter(engine).write(entries([events[5], events[4]]))

    assert todays_orders(engine, now=T0) == [events[5]]
    assert row_counts(engine)["order_history"] == 2


def test_a_bar_built_twice_is_one_row(engine: Engine) -> None:
    """Bars are unique by (symbol, start, seconds): a second build under a new id is ignored."""
    bar = next(event for event in every_kind() if isinstance(event, Bar))
    RowWriter(engine).write(entries([bar, replace(bar, id="rebuilt", close=187.2)]))

    assert stored_events(engine) == [bar]


def test_a_fill_copy_bringing_its_commission_completes_the_row(engine: Engine) -> None:
    """IB reports commissions after the execution: a later copy fills in what was missing."""
    fill = next(event for event in every_kind() if isinstance(event, Fill))
    bare = replace(fill, commission=None, commission_currency=None)
    writer = RowWriter(engine)
    writer.write(entries([bare]))
    writer.write(entries([replace(fill, id="report-copy", realized_pnl=None)]))
    writer.write(entries([bare]))

    assert stored_events(engine) == [replace(fill, id=bare.id)]


async def test_cancelled_mid_stream_and_restarted_stores_each_event_once(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine
) -> None:
    """Cancelling the ingest task anywhere, then restarting, loses and doubles nothing."""
    first, second = ticks(600), ticks(400, start=600)
    await publish(redis_url, channels, first)
    own_client = aioredis.Redis.from_url(redis_url)  # the cancelled run's, as a process has its own
    storage = service(engine, own_client, channels, batch_size=10)
    task = asyncio.create_task(storage.reader.run())
    await eventually(lambda: row_counts(engine)["ticks"] > 0, message="some ticks stored")
    task.cancel()
    await reap(task, storage, own_client)
    await publish(redis_url, channels, second)

    await read_until_idle(service(engine, client, channels, batch_size=10))
    assert stored_events(engine) == by_id(first + second)
    assert await pending(client, channels) == 0


async def reap(task: asyncio.Task[None], storage: StorageService, client: aioredis.Redis) -> None:
    """Wait for a cancelled reader task to end.

    redis-py 8.1 sometimes swallows a cancellation that lands in XREADGROUP and then waits for a
    reply that never comes; stopping the reader and closing its client ends such a task too.
    """
    done, _ = await asyncio.wait([task], timeout=1.0)
    if not done:
        storage.reader.stop()
        await client.aclose()
    with contextlib.suppress(asyncio.CancelledError, *CONNECTION_ERRORS):
        await task
    await client.aclose()


class GatedWriter(RowWriter):
    """A `RowWriter` whose first batch waits (in its worker thread) for the test's gate."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        self.batches = 0

    def write(self, entries: list[JournalEntry]) -> int:
        self.batches += 1
        if self.batches == 1:
            self.gate.wait(timeout=10)
        return super().write(entries)


async def test_a_batch_read_ahead_is_acknowledged_only_after_its_rows_commit(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine
) -> None:
    """While the first batch is being written, the next is read but neither is acknowledged."""
    events = ticks(30)
    await publish(redis_url, channels, events)
    storage = service(engine, client, channels, batch_size=10)
    storage.writer = writer = GatedWriter(engine)
    await storage.start()
    await eventually(lambda: pending_is(client, channels, 20), message="one batch read ahead")
    assert (writer.batches, row_counts(engine)["ticks"]) == (1, 0)

    writer.gate.set()
    await eventually(lambda: storage.reader.handled == 30, message="all handled")
    await storage.stop()
    assert stored_events(engine) == by_id(events)
    assert await pending(client, channels) == 0


async def test_stop_while_a_batch_is_written_and_one_read_ahead_leaves_nothing_behind(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine
) -> None:
    """stop() mid-batch: the batch in hand, the one read ahead and the rest are all stored."""
    events = ticks(35)
    await publish(redis_url, channels, events)
    storage = service(engine, client, channels, batch_size=10)
    storage.writer = writer = GatedWriter(engine)
    await storage.start()
    await eventually(lambda: pending_is(client, channels, 20), message="one batch read ahead")
    stopping = asyncio.create_task(storage.stop())
    writer.gate.set()
    await stopping

    assert stored_events(engine) == by_id(events)
    assert await pending(client, channels) == 0


async def pending_is(client: aioredis.Redis, channels: Channels, count: int) -> bool:
    """Whether `count` entries are delivered and unacknowledged (False before the group exists)."""
    try:
        return await pending(client, channels) == count
    except ResponseError as error:
        if "NOGROUP" not in str(error):
            raise
        return False


async def test_poison_event_is_dead_lettered_with_its_reason_and_the_rest_go_on(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine
) -> None:
    """A fill the database refuses (quantity 0) is set aside; the events around it are stored."""
    fill = next(event for event in every_kind() if isinstance(event, Fill))
    poison = replace(fill, id="poison", execution_id="bad", quantity=0)
    good = [*ticks(3), fill, *ticks(2, start=3)]
    await publish(redis_url, channels, [*good[:3], poison, *good[3:]])
    storage = service(engine, client, channels)
    await read_until_idle(storage)

    assert stored_events(engine) == by_id(good)
    [(_, dead)] = await client.xrange(channels.dead_letter)
    assert storage.reader.codec.decode(dead[b"event"]) == poison
    assert dead[b"reason"].startswith(b"handler failed: IntegrityError")
    assert await pending(client, channels) == 0


async def test_a_database_that_is_down_gets_the_batch_again_whole_not_entry_by_entry(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine, tmp_path
) -> None:
    """A database that cannot be opened (here a SQLite path that is a directory): one write per
    round, the batch stays pending and nothing is set aside as poison; once the database is
    back, every event is stored."""
    events = ticks(10)
    await publish(redis_url, channels, events)
    storage = service(engine, client, channels)
    down = make_engine(f"sqlite:///{tmp_path}")
    storage.writer = RowWriter(down)
    writes: list[int] = []
    write = storage.writer.write
    storage.writer.write = lambda batch: writes.append(len(batch)) or write(batch)  # type: ignore[method-assign]

    with pytest.raises(HandlerFailed, match="unable to open database file"):
        await storage.reader.read_once()
    assert writes == [10]
    assert await pending(client, channels) == 10
    storage.writer = RowWriter(engine)
    await read_until_idle(storage)
    down.dispose()

    assert stored_events(engine) == by_id(events)
    assert await client.xlen(channels.dead_letter) == 0
    assert await pending(client, channels) == 0


class RaisingWriter:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def write(self, batch: list[JournalEntry]) -> int:
        raise self.error


async def test_a_statement_timeout_is_not_the_database_being_down(
    client: aioredis.Redis, channels: Channels, engine: Engine
) -> None:
    """PostgreSQL's statement timeout is an OperationalError too, but a smaller batch may pass:
    it is left to be halved; a refused connection says the database is down."""
    storage = service(engine, client, channels)
    timeout = OperationalError("INSERT", {}, psycopg.errors.QueryCanceled("statement timeout"))
    storage.writer = RaisingWriter(timeout)  # type: ignore[assignment]
    with pytest.raises(OperationalError):
        await storage.store(entries(ticks(2)))
    refused = OperationalError("connect", {}, psycopg.OperationalError("connection refused"))
    storage.writer = RaisingWriter(refused)  # type: ignore[assignment]
    with pytest.raises(HandlerUnavailable):
        await storage.store(entries(ticks(2)))


async def test_stop_while_idle_returns_and_restart_goes_on(
    redis_url: str, channels: Channels, client: aioredis.Redis, engine: Engine
) -> None:
    """start/stop/start: events published between runs are stored by the next one."""
    storage = service(engine, client, channels)
    await storage.start()
    await storage.stop()
    events = ticks(5)
    await publish(redis_url, channels, events)
    again = service(engine, client, channels)
    await again.start()
    await eventually(lambda: again.reader.handled == 5, message="5 ticks handled")
    await again.stop()

    assert stored_events(engine) == by_id(events)


def test_a_batch_after_one_the_database_refused_is_stored(engine: Engine) -> None:
    """A refused batch rolls back whole; the next one, on the same or a new connection, is stored
    (on PostgreSQL the rollback also undid the staging table's creation)."""
    fill = next(event for event in every_kind() if isinstance(event, Fill))
    poison = replace(fill, id="poison", execution_id="bad", quantity=0)
    later = ticks(2, start=2)
    writer = RowWriter(engine)
    with pytest.raises(IntegrityError):
        writer.write(entries([*ticks(2), poison]))
    writer.write(entries(later))
    engine.dispose()
    writer.write(entries([fill]))

    assert stored_events(engine) == by_id([*later, fill])


def test_a_postgres_role_that_may_not_create_temporary_tables_still_stores_rows() -> None:
    """Without the TEMPORARY privilege (no staging table for COPY), rows are stored all the same."""
    if not postgres_answers():
        pytest.skip(f"no PostgreSQL answers at TEST_DATABASE_URL ({POSTGRES_URL})")
    with database_without_temporary_tables() as url:
        engine = make_engine(url)
        upgrade_database(engine)
        fill = next(event for event in every_kind() if isinstance(event, Fill))
        events = [*ticks(3), fill]
        RowWriter(engine).write(entries(events))
        assert stored_events(engine) == by_id(events)
        engine.dispose()


@contextlib.contextmanager
def database_without_temporary_tables() -> Iterator[str]:
    """A scratch database, and a role that may create tables there but no temporary ones."""
    name = f"storage_no_temp_{uuid.uuid4().hex[:10]}"
    admin_url = make_url(POSTGRES_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        connection.execute(text(f'REVOKE TEMPORARY ON DATABASE "{name}" FROM PUBLIC'))
    inside = create_engine(admin_url.set(database=name), isolation_level="AUTOCOMMIT")
    with inside.connect() as connection:
        connection.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{name}"'))
    inside.dispose()
    try:
        yield admin_url.set(username=name, database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE "{name}"'))
        admin.dispose()


def test_order_update_of_an_external_order_is_keyed_by_its_perm_id(engine: Engine) -> None:
    """An order placed elsewhere (no signal id) is one order across its updates, by perm id."""
    external = OrderUpdate(
        ts=T0,
        symbol="SPY",
        signal_id="",
        status="submitted",
        action="SELL",
        quantity=1,
        order_type="MKT",
        perm_id=99,
        external=True,
    )
    done = replace(external, id="x2", ts=T0 + timedelta(seconds=1), status="cancelled")
    RowWriter(engine).write(entries([external]))
    RowWriter(engine).write(entries([done]))

    assert todays_orders(engine, now=T0) == [done]


async def test_entries_the_journal_dropped_unstored_are_told_once_across_restarts(
    engine: Engine, client: aioredis.Redis, channels: Channels, redis_url: str
) -> None:
    """Storage away while the journal wrapped (JOURNAL_MAXLEN): at its start it stores what is
    left, says in one error line how many events the journal dropped before it could, and,
    caught up, asks execution to publish again what the broker still reports (`republish`);
    `status` shows the count; a restart neither tells it nor asks again. (Redis before 7.0, the
    bundled server, keeps no counts: nothing is told or asked there.)"""
    counts = await redis_keeps_stream_counts(client)
    earlier = service(engine, client, channels)
    await publish(redis_url, channels, ticks(5))
    await read_until_idle(earlier)  # storage ran, then stopped
    await publish(redis_url, channels, ticks(30, start=5))
    await client.xtrim(channels.journal, maxlen=10, approximate=False)
    asked: list[Event] = []

    async def record(event: Event) -> None:
        asked.append(event)

    async def run(stores: int) -> None:
        storage = service(engine, client, channels, watch_every_seconds=0.02, publish=record)
        await storage.start()
        try:
            await eventually(lambda: storage.reader.handled == stores, message="what is left")
            looks = storage.journal_watches
            await eventually(lambda: storage.journal_watches >= looks + 2, message="a full look")
            assert storage.status().get("journal_dropped") == ("20" if counts else None)
        finally:
            await storage.stop()

    with capture_logs() as logs:
        await run(stores=10)
        assert len(asked) == counts
        await run(stores=0)  # the restart
    if not counts:
        assert asked == [] and not [line for line in logs if line["log_level"] == "error"]
        return
    lost = [line for line in logs if line["event"] == "journal_entries_lost"]
    assert [(line["log_level"], line["count"]) for line in lost] == [("error", 20)]
    [command] = asked
    assert isinstance(command, ControlCommand)
    assert (command.command, command.issued_by) == ("republish", "storage")
    assert "20 events" in command.reason
    assert row_counts(engine)["ticks"] == 15


async def test_republish_is_asked_only_once_storage_has_caught_up(
    engine: Engine, client: aioredis.Redis, channels: Channels, redis_url: str
) -> None:
    """Behind the gap (the database slow, here held), the loss is told at once but execution is
    asked to publish again only when storage has stored what is left: what it publishes again
    must not queue up behind a backlog the journal may drop as well."""
    if not await redis_keeps_stream_counts(client):  # the test above checks what it does there
        pytest.skip("Redis before 7.0 (the bundled server) keeps no stream counts to tell by")
    earlier = service(engine, client, channels)
    await publish(redis_url, channels, ticks(5))
    await read_until_idle(earlier)
    await publish(redis_url, channels, ticks(30, start=5))
    await client.xtrim(channels.journal, maxlen=10, approximate=False)
    asked: list[Event] = []

    async def record(event: Event) -> None:
        asked.append(event)

    storage = service(engine, client, channels, watch_every_seconds=0.02, publish=record)
    gate = asyncio.Event()
    store = storage.store

    async def held(entries: list[JournalEntry]) -> None:
        await gate.wait()
        await store(entries)

    storage.reader.handler = held
    with capture_logs() as logs:
        await storage.start()
        try:
            await eventually(
                lambda: any(line["event"] == "journal_entries_lost" for line in logs),
                message="the loss told",
            )
            looks = storage.journal_watches
            await eventually(lambda: storage.journal_watches >= looks + 2, message="a full look")
            assert asked == []
            gate.set()
            await eventually(lambda: len(asked) == 1, message="asked once caught up")
        finally:
            await storage.stop()


async def test_a_redis_user_without_xinfo_is_told_once_and_storage_goes_on(
    engine: Engine, client: aioredis.Redis, channels: Channels, redis_url: str
) -> None:
    """ACL rules from before the journal watch lack XINFO: one warning saying which rules to
    give, and storage stores as ever."""
    storage = service(engine, client, channels, watch_every_seconds=0.01)

    async def not_allowed() -> None:
        raise ResponseError("NOPERM this user has no permissions to run the 'xinfo|stream'")

    storage.reader.dropped_unread = not_allowed  # type: ignore[method-assign,assignment]
    with capture_logs() as logs:
        await storage.start()
        try:
            await publish(redis_url, channels, ticks(3))
            await eventually(lambda: storage.reader.handled == 3, message="stored")
            await eventually(lambda: storage.journal_watches >= 3, message="three looks")
        finally:
            await storage.stop()
    warned = [line for line in logs if line["event"] == "journal_watch_not_allowed"]
    assert len(warned) == 1 and "+xinfo|stream" in warned[0]["hint"]
