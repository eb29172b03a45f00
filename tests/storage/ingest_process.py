"""The storage module alone in a process, for the kill test: `python -m tests.storage.ingest_process
REDIS_URL PREFIX DATABASE_URL BATCH_SIZE`; prints `ready` once consuming, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from pydantic import SecretStr

from config import StorageSettings
from event_bus import Channels, connect_redis
from storage import build_storage


async def main(redis_url: str, prefix: str, database_url: str, batch_size: int) -> None:
    settings = StorageSettings(
        database_url=SecretStr(database_url), storage_batch_size=batch_size, storage_block_ms=20
    )
    client = connect_redis(redis_url, timeout=5.0, name="storage-test")
    storage = build_storage(settings, client, Channels(prefix))
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await storage.start()
    print("ready", flush=True)
    await stopping.wait()
    await storage.stop()
    await client.aclose()


if __name__ == "__main__":
    redis_url, prefix, database_url, batch_size = sys.argv[1:5]
    asyncio.run(main(redis_url, prefix, database_url, int(batch_size)))
