"""Tick retention: old ticks deleted in chunks, everything else kept; the service's hourly pass."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from sqlalchemy import Engine, select

from event_bus import Channels, JournalEntry
from market_data.model import Tick
from storage import StorageService
from storage.retention import prune_ticks
from storage.rows import TICKS
from storage.writer import RowWriter
from tests.helpers import eventually
from tests.storage.samples import T0, every_kind, row_counts


def write(engine: Engine, events: list) -> None:
    RowWriter(engine).write([JournalEntry(f"{n}-0", "test", e) for n, e in enumerate(events)])


def ticks_at(start: datetime, count: int, symbols: int = 3) -> list[Tick]:
    return [
        Tick(ts=start + timedelta(seconds=n), symbol=f"S{n % symbols}", last=100.0 + n)
        for n in range(count)
    ]


def stored_tick_ids(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(TICKS.c.event_id)).scalars())


def test_ticks_before_the_cutoff_go_in_chunks_and_nothing_else_does(engine: Engine) -> None:
    old, recent = ticks_at(T0, 23), ticks_at(T0 + timedelta(days=2), 5)
    others = [event for event in every_kind() if not isinstance(event, Tick)]
    write(engine, old + recent + others)
    before = row_counts(engine)

    assert prune_ticks(engine, T0 + timedelta(days=1), chunk=4) == 23

    assert stored_tick_ids(engine) == {tick.id for tick in recent}
    assert row_counts(engine) == before | {"ticks": 5}
    assert prune_ticks(engine, T0 + timedelta(days=1), chunk=4) == 0


def test_the_cutoff_itself_is_kept(engine: Engine) -> None:
    """Strictly older than the cut-off: a tick stamped at it stays."""
    write(engine, ticks_at(T0, 3))
    assert prune_ticks(engine, T0 + timedelta(seconds=1)) == 1
    assert len(stored_tick_ids(engine)) == 2


def test_a_pass_told_to_stop_ends_after_its_chunk(engine: Engine) -> None:
    write(engine, ticks_at(T0, 12, symbols=1))
    stopping = threading.Event()
    stopping.set()
    assert prune_ticks(engine, T0 + timedelta(days=1), chunk=4, stopping=stopping) == 0
    assert len(stored_tick_ids(engine)) == 12


async def test_the_service_prunes_at_start_and_then_on_its_interval(
    engine: Engine, client: aioredis.Redis, channels: Channels
) -> None:
    """With TICK_RETENTION_DAYS=1: ticks older than a day go at start, older ones written later
    go at the next pass; recent ticks stay; status counts what went."""
    now = datetime.now(UTC)
    stale, fresh = ticks_at(now - timedelta(days=3), 6), ticks_at(now - timedelta(hours=1), 4)
    write(engine, stale + fresh)
    storage = StorageService(
        engine,
        client,
        channels=channels,
        block_ms=20,
        tick_retention_days=1,
        prune_every_seconds=0.05,
    )
    await storage.start()
    try:
        await eventually(lambda: storage.ticks_pruned == 6, message="the pass at start")
        assert stored_tick_ids(engine) == {tick.id for tick in fresh}
        later = ticks_at(now - timedelta(days=2), 3)
        write(engine, later)
        await eventually(lambda: storage.ticks_pruned == 9, message="the next pass")
        assert stored_tick_ids(engine) == {tick.id for tick in fresh}
        assert storage.status()["ticks_pruned"] == "9"
    finally:
        await storage.stop()


async def test_without_retention_the_service_keeps_every_tick(
    engine: Engine, client: aioredis.Redis, channels: Channels
) -> None:
    write(engine, ticks_at(datetime.now(UTC) - timedelta(days=400), 5))
    storage = StorageService(engine, client, channels=channels, block_ms=20)
    await storage.start()
    try:
        await storage.reader.drain()
        assert "ticks_pruned" not in storage.status()
    finally:
        await storage.stop()
    assert len(stored_tick_ids(engine)) == 5
