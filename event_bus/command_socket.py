"""A dedicated Redis connection for the one command on the order path."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from event_bus.redis_bus import pack_command
from event_bus.subscriber_socket import streams_of

# When the client has no socket_timeout of its own.
DEFAULT_TIMEOUT_SECONDS = 5.0


class CommandSocket:
    """One connection that runs one command at a time, in the calling task.

    redis-py opens and authenticates it (TLS, ACL users, unix sockets, client name), as for the
    subscriber socket. A call then writes the packed command to the socket and parses the reply
    with hiredis. redis-py's own path for a command (a pool checkout, a check that the idle
    socket holds no stray data, a task per write to apply socket_timeout) cost the order path
    ~90 us of event loop and one extra loop iteration before the command left (BENCHMARKS.md).

    A call that fails, times out or is cancelled drops the connection: a reply still to come
    would otherwise answer the next call. The next call opens a new one.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        # as long as the client itself waits for a reply
        configured = redis.connection_pool.connection_kwargs.get("socket_timeout")
        self.timeout = configured or DEFAULT_TIMEOUT_SECONDS
        self._connection: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader(replyError=ResponseError)  # a fresh one per connection
        self._lock = asyncio.Lock()

    async def execute(self, *arguments: bytes) -> Any:
        """Run one command and return its reply; a Redis error reply raises ResponseError,
        a lost connection ConnectionError, no reply within the timeout TimeoutError."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._writer is None:
                        await self._connect()
                    assert self._writer is not None
                    self._writer.write(pack_command(list(arguments)))
                    reply = await self._reply()
            except BaseException:
                await self._drop()
                raise
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _connect(self) -> None:
        connection = self._redis.connection_pool.make_connection()
        self._connection = connection
        await connection.connect()
        self._reader, self._writer = streams_of(connection)
        self._parser = hiredis.Reader(replyError=ResponseError)

    async def _reply(self) -> Any:
        assert self._reader is not None
        while (reply := self._parser.gets()) is False:
            data = await self._reader.read(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._parser.feed(data)
        return reply

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._reader = self._writer = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
