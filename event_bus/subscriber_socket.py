"""The pub/sub socket, read in large chunks and parsed by hiredis: the bus's hot path."""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.asyncio as aioredis


def streams_of(connection: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The streams of a connected redis-py connection, for a socket that reads and writes them
    itself (they are private to redis-py: an upgrade that renames them fails here, loudly)."""
    reader, writer = getattr(connection, "_reader", None), getattr(connection, "_writer", None)
    if not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter):
        raise RuntimeError("this redis-py version hides its streams; pin the tested version")
    return reader, writer


class SubscriberSocket:
    """A dedicated connection in subscribe mode.

    redis-py opens and authenticates it (TLS, ACL users, unix sockets, client name); reading
    then bypasses redis-py's one-message-at-a-time parsing: each read takes whatever has
    arrived and hiredis splits it into messages, so a burst costs one await, not one per message.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._connection = redis.connection_pool.make_connection()
        self._parser = hiredis.Reader()
        self._stream: asyncio.StreamReader | None = None

    async def connect(self) -> None:
        await self._connection.connect()
        self._stream, _ = streams_of(self._connection)

    async def send(self, *command: str | bytes) -> None:
        await self._connection.send_command(*command)

    async def read(self, timeout: float) -> list[Any]:
        """Every complete message received so far, waiting up to `timeout` for the first."""
        messages = self._parsed()
        if messages:
            return messages
        assert self._stream is not None, "connect() first"
        async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
            data = await self._stream.read(1 << 16)
        if not data:
            raise ConnectionError("Redis closed the subscriber connection")
        self._parser.feed(data)
        return self._parsed()

    def _parsed(self) -> list[Any]:
        messages = []
        while (message := self._parser.gets()) is not False:
            messages.append(message)
        return messages

    async def close(self) -> None:
        await self._connection.disconnect()
