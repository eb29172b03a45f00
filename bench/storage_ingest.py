"""Storage ingest: rows/s from the journal into the database, beside a raw `executemany`.

`python -m bench.storage_ingest [--events N] [--batch B] [--preload P] [--symbols S]`. For SQLite
(a temporary file) and, when TEST_DATABASE_URL answers, PostgreSQL (a scratch schema): N ticks (of
S symbols, default 50) are published to the journal of a Redis (REDIS_URL, else an embedded one),
then timed from the journal to committed, acknowledged rows by `StorageService`'s reader draining
it (XREADGROUP and decoding of the next batch while the current one is written, insert ON CONFLICT
DO NOTHING, commit, XACK), and by `RowWriter` alone (decoded events to committed rows, no Redis; on
PostgreSQL through COPY and a staging table); the baseline inserts the same rows, ready-made, with
the driver's `executemany`, one commit per batch of the same size, into the same table and
database. Publishing is not timed; best of `--rounds`. What exists before the rounds (the ticks,
the rows, the engine) is frozen out of the garbage collector, as `main.py run` freezes what
start-up made.

`--preload P` first stores P ticks made the same way (earlier, so with lower event ids), as a
database that has run for a while holds: the figures of a table that has outgrown its cache,
where every insert that lands on a page of an index other than the last ones rewrites it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine, create_engine, delete, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from event_bus import Channels, JournalEntry, RedisEventBus
from event_bus.embedded import EmbeddedRedis
from main import freeze_start_up
from market_data.model import Tick
from storage import RowWriter, StorageService, make_engine, upgrade_database
from storage.rows import TICKS

POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
COLUMNS = ("event_id", "ts", "symbol", "bid", "ask", "last", "bid_size", "ask_size", "volume")


def make_ticks(count: int, symbols: int = 50) -> list[Tick]:
    start = datetime.now(UTC)
    return [
        Tick(
            ts=start + timedelta(microseconds=n),
            symbol=f"SYM{n % symbols}",
            bid=100 + n % 1000 / 100,
            ask=100.01 + n % 1000 / 100,
            last=100.005 + n % 1000 / 100,
            bid_size=100,
            ask_size=200,
            volume=1_000 + n,
        )
        for n in range(count)
    ]


def raw_rows(ticks: list[Tick], dialect: str) -> list[tuple[object, ...]]:
    """The rows as the driver takes them (SQLite: timestamps as SQLAlchemy stores them)."""

    def stamp(ts: datetime) -> object:
        return ts.replace(tzinfo=None).isoformat(" ") if dialect == "sqlite" else ts

    return [
        (t.id, stamp(t.ts), t.symbol, t.bid, t.ask, t.last, t.bid_size, t.ask_size, t.volume)
        for t in ticks
    ]


def raw_executemany(engine: Engine, rows: list[tuple[object, ...]], batch: int) -> float:
    """Seconds to insert `rows` with the driver's executemany, a commit per batch."""
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = f"INSERT INTO ticks ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        started = time.perf_counter()
        for offset in range(0, len(rows), batch):
            cursor.executemany(sql, rows[offset : offset + batch])
            connection.commit()
        return time.perf_counter() - started
    finally:
        connection.close()


async def journal_ingest(engine: Engine, redis_url: str, ticks: list[Tick], batch: int) -> float:
    """Seconds for `StorageService` to store `ticks` already waiting in the journal."""
    channels = Channels(f"bench-{uuid.uuid4().hex[:8]}")
    bus = RedisEventBus.from_url(redis_url, channels=channels)
    await bus.start()
    for tick in ticks:
        await bus.publish(tick)
    await bus.stop(timeout=60)
    client = aioredis.Redis.from_url(redis_url)
    storage = StorageService(engine, client, channels=channels, batch_size=batch, block_ms=10)
    try:
        started = time.perf_counter()
        await storage.reader.drain()
        seconds = time.perf_counter() - started
        if storage.reader.handled != len(ticks):
            raise RuntimeError(f"stored {storage.reader.handled} of {len(ticks)} ticks")
        return seconds
    finally:
        await client.delete(channels.journal, channels.dead_letter)
        await client.aclose()


def preload(engine: Engine, count: int, symbols: int, *, chunk: int = 50_000) -> None:
    """Stores `count` ticks with the driver's executemany, `chunk` rows per commit."""
    for offset in range(0, count, chunk):
        rows = raw_rows(make_ticks(min(chunk, count - offset), symbols), engine.dialect.name)
        raw_executemany(engine, rows, chunk)


def clear(engine: Engine, ticks: list[Tick], preloaded: int) -> None:
    """Deletes the rows of `ticks`, leaving the `preloaded` ones."""
    ids = [t.id for t in ticks]
    with engine.begin() as connection:
        for offset in range(0, len(ids), 5_000):
            connection.execute(
                delete(TICKS).where(TICKS.c.event_id.in_(ids[offset : offset + 5_000]))
            )
        left = connection.execute(select(func.count()).select_from(TICKS)).scalar_one()
    if left != preloaded:
        raise RuntimeError(f"{left} rows left in ticks, {preloaded} preloaded")


def writer_only(engine: Engine, ticks: list[Tick], batch: int) -> float:
    """Seconds for `RowWriter` alone (the handler storage gives the journal reader)."""
    writer = RowWriter(engine)
    entries = [JournalEntry(f"{n}-0", "bench", tick) for n, tick in enumerate(ticks)]
    started = time.perf_counter()
    for offset in range(0, len(entries), batch):
        writer.write(entries[offset : offset + batch])
    return time.perf_counter() - started


async def measure(
    url: str, redis_url: str, count: int, batch: int, rounds: int, preloaded: int, symbols: int
) -> Figures:
    """Best rows/s of `rounds` runs of each way, on the database at `url` holding `preloaded`
    ticks, the ticks spread over `symbols` symbols."""
    engine = make_engine(url)
    upgrade_database(engine)
    preload(engine, preloaded, symbols)
    ticks = make_ticks(count, symbols)
    rows = raw_rows(ticks, engine.dialect.name)
    best = {"journal": 0.0, "writer": 0.0, "raw": 0.0}
    # Every full collection walked the 20,000 ticks and rows held here, which the daemon does
    # not hold: 3.5 of the 5.6 us per entry of decoding the journal (BENCHMARKS.md).
    freeze_start_up()
    for _ in range(rounds):
        for way in best:
            clear(engine, ticks, preloaded)
            if way == "journal":
                seconds = await journal_ingest(engine, redis_url, ticks, batch)
            else:
                seconds = (
                    writer_only(engine, ticks, batch)
                    if way == "writer"
                    else (raw_executemany(engine, rows, batch))
                )
            best[way] = max(best[way], count / seconds)
    gc.unfreeze()
    engine.dispose()
    return Figures(best["journal"], best["writer"], best["raw"])


@dataclass(frozen=True)
class Figures:
    journal: float  # rows/s from the journal to committed, acknowledged rows
    writer: float  # rows/s from decoded events to committed rows
    raw: float  # rows/s of the driver's executemany of ready-made tuples


@contextmanager
def databases(directory: Path) -> Iterator[list[tuple[str, str]]]:
    """(name, URL) of each database to measure; PostgreSQL in a scratch schema when it answers."""
    found = [("sqlite (WAL, file)", f"sqlite:///{directory / 'bench.db'}")]
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except SQLAlchemyError:
        admin.dispose()
        yield found
        return
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    found.append(("postgresql", url.render_as_string(hide_password=False)))
    try:
        yield found
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        yield url
        return
    except (OSError, redis.RedisError):
        pass
    server = EmbeddedRedis()
    asyncio.run(server.start())
    try:
        yield server.url
    finally:
        asyncio.run(server.stop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    parser.add_argument("--preload", type=int, default=0, help="ticks stored before the runs")
    parser.add_argument("--symbols", type=int, default=50, help="symbols the ticks are spread over")
    options = parser.parse_args()
    into = f", into {options.preload:,} ticks stored before" if options.preload else ""
    print(
        f"storage ingest of {options.events:,} ticks of {options.symbols:,} symbols in batches of "
        f"{options.batch:,}{into} (rows/s)"
    )
    print(
        f"  {'database':<19}{'journal->rows':>14}{'writer':>10}{'raw':>10}{'j/raw':>7}{'w/raw':>7}"
    )
    with (
        tempfile.TemporaryDirectory() as directory,
        redis_server() as redis_url,
        databases(Path(directory)) as targets,
    ):
        for name, url in targets:
            figures = asyncio.run(
                measure(
                    url,
                    redis_url,
                    options.events,
                    options.batch,
                    options.rounds,
                    options.preload,
                    options.symbols,
                )
            )
            journal, writer, raw = figures.journal, figures.writer, figures.raw
            print(
                f"  {name:<19}{journal:>14,.0f}{writer:>10,.0f}{raw:>10,.0f}"
                f"{journal / raw:>7.0%}{writer / raw:>7.0%}"
            )


if __name__ == "__main__":
    main()
