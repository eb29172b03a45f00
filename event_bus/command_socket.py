"""A dedicated Redis connection for the one command on the order path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from event_bus.redis_bus import pack_command
from event_bus.subscriber_socket import streams_of

# When the client has no socket_timeout of its own.
DEFAULT_TIMEOUT_SECONDS = 5.0

# How long an urgent command's caller holds the event loop waiting for the reply (poll counts whole
# milliseconds, so up to ~2 ms when a reply comes in pieces). Loopback Redis answers in ~50-100 us;
# a reply that takes longer is awaited like any other.
URGENT_WAIT_SECONDS = 0.001
CAN_POLL = hasattr(select, "poll")  # not on Windows: urgent calls are awaited as others there


class CommandSocket:
    """One connection that runs one command at a time, in the calling task.

    redis-py opens and authenticates it (TLS, ACL users, unix sockets, client name), as for the
    subscriber socket. A call then writes the packed command to the socket and parses the reply
    with hiredis. redis-py's own path for a command (a pool checkout, a check that the idle
    socket holds no stray data, a task per write to apply socket_timeout) cost the order path
    ~90 us of event loop and one extra loop iteration before the command left (BENCHMARKS.md).

    A call that fails, times out or is cancelled drops the connection: a reply still to come
    would otherwise answer the next call. The next call opens a new one.

    An `urgent` call (execution's claim) waits up to `URGENT_WAIT_SECONDS` for its reply without
    yielding: a reply read back through the event loop waits behind every callback queued
    meanwhile, ~1.5 ms at 20,000 ticks/s against ~0.1 ms for the round trip itself
    (BENCHMARKS.md). Only on a plain socket (not TLS), and only when the command went out whole;
    past the wait, the reply is awaited as usual.
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
        self.urgent_replies_in_place = 0  # urgent calls answered without yielding

    async def execute(
        self,
        *arguments: bytes,
        urgent: bool = False,
        meanwhile: Callable[[], object] | None = None,
    ) -> Any:
        """Run one command and return its reply; a Redis error reply raises ResponseError,
        a lost connection ConnectionError, no reply within the timeout TimeoutError.

        `meanwhile` is called once the command is written and before its reply is read, so
        its work overlaps the round trip; what it raises is raised after the reply has been
        read (the connection stays in step), and it is not called if the command never left."""
        failure: BaseException | None = None
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._writer is None:
                        await self._connect()
                    assert self._writer is not None
                    self._writer.write(pack_command(list(arguments)))
                    if meanwhile is not None:
                        try:
                            meanwhile()
                        except Exception as error:
                            failure = error
                    reply = self._reply_in_place() if urgent and CAN_POLL else False
                    if reply is False:
                        reply = await self._reply()
                    else:
                        self.urgent_replies_in_place += 1
            except BaseException:
                await self._drop()
                raise
        if failure is not None:
            raise failure
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

    def _reply_in_place(self) -> Any:
        """The reply, read from the socket directly if it comes within `URGENT_WAIT_SECONDS`;
        else False (the transport reads what comes later, for `_reply`)."""
        writer = self._writer
        assert writer is not None
        if writer.transport.get_write_buffer_size() or writer.get_extra_info("sslcontext"):
            return False  # the command is still queued, or the bytes on the socket are TLS
        descriptor = writer.get_extra_info("socket").fileno()
        readable = select.poll()
        readable.register(descriptor, select.POLLIN)
        deadline = time.perf_counter() + URGENT_WAIT_SECONDS
        while (reply := self._parser.gets()) is False:
            remaining_ms = (deadline - time.perf_counter()) * 1000
            if remaining_ms <= 0 or not readable.poll(remaining_ms):
                return False
            try:
                data = os.read(descriptor, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._parser.feed(data)
        return reply

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
