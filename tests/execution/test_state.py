"""Execution's durable state in a real Redis: what it keeps per fill, and for how long."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from event_bus import Channels
from execution.state import FILL_COMPLETE, FILLS_TTL_SECONDS, RedisExecutionState

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str, clean_keys: None) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def test_each_fill_state_is_a_key_that_expires_on_its_own(
    client: aioredis.Redis, channels: Channels
) -> None:
    """A daemon that fills every day must not keep every execution of its life: each state has
    its own expiry (a hash of them all expired only after three days without a fill)."""
    state = RedisExecutionState(client, channels)
    try:
        await state.set_fill_state("0001f4e8.6748a3b1.01.01", FILL_COMPLETE)
        assert await state.fill_state("0001f4e8.6748a3b1.01.01") == FILL_COMPLETE
        assert await state.fill_state("0001f4e8.6748a3b1.02.01") is None
        key = channels.state_key("fill:0001f4e8.6748a3b1.01.01")
        assert FILLS_TTL_SECONDS - 60 < await client.ttl(key) <= FILLS_TTL_SECONDS
        assert await client.exists(channels.state_key("fills")) == 0
    finally:
        await state.close()


async def test_fills_published_by_the_hash_version_are_still_known(
    client: aioredis.Redis, channels: Channels
) -> None:
    """After an upgrade, executions the hash recorded are not published a second time."""
    await client.hset(channels.state_key("fills"), "0001f4e8.6748a3b1.03.01", FILL_COMPLETE)
    state = RedisExecutionState(client, channels)
    try:
        assert await state.fill_state("0001f4e8.6748a3b1.03.01") == FILL_COMPLETE
    finally:
        await state.close()
