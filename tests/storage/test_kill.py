"""A storage process killed mid-stream and started again stores every event exactly once."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import Engine

from event_bus import Channels
from tests.helpers import eventually
from tests.storage.conftest import publish
from tests.storage.samples import by_id, row_counts, stored_events, ticks

ROOT = Path(__file__).resolve().parents[2]


async def start_ingest(redis_url: str, channels: Channels, database_url: str):
    """The ingest in a process of its own, once it says it is consuming."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.storage.ingest_process",
        redis_url,
        channels.prefix,
        database_url,
        "10",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    while b"ready" not in await asyncio.wait_for(process.stdout.readline(), 20):
        pass
    return process


async def test_killed_mid_stream_and_restarted_stores_each_event_once(
    redis_url: str,
    channels: Channels,
    client: aioredis.Redis,
    database_url: str,
    engine: Engine,
) -> None:
    """SIGKILL while batches are being written; the restarted process stores the rest, once."""
    first, second = ticks(1500), ticks(500, start=1500)
    process = await start_ingest(redis_url, channels, database_url)
    publishing = asyncio.create_task(publish(redis_url, channels, first))
    await eventually(lambda: row_counts(engine)["ticks"] >= 50, timeout=10, message="ingesting")
    process.send_signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL
    await publishing
    await publish(redis_url, channels, second)

    restarted = await start_ingest(redis_url, channels, database_url)
    await eventually(lambda: row_counts(engine)["ticks"] >= 2000, timeout=15, message="all in")
    restarted.send_signal(signal.SIGTERM)
    assert await restarted.wait() == 0
    assert stored_events(engine) == by_id(first + second)
    assert int((await client.xpending(channels.journal, "storage"))["pending"]) == 0
