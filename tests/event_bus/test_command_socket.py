"""The command socket: execution's claim, outside redis-py's per-command path."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import hiredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from event_bus import Channels
from event_bus.command_socket import CommandSocket
from event_bus.embedded import EmbeddedRedis
from event_bus.redis_bus import CONNECTION_ERRORS, connect_redis


@pytest.fixture
async def client(redis_url: str, clean_keys: None) -> AsyncIterator[aioredis.Redis]:
    redis = connect_redis(redis_url, timeout=5.0)
    yield redis
    await redis.aclose()


@pytest.mark.parametrize("urgent", [False, True], ids=["through the loop", "urgent"])
async def test_set_nx_answers_once_and_redis_py_reads_what_it_wrote(
    client: aioredis.Redis, channels: Channels, urgent: bool
) -> None:
    """An urgent call's reply from loopback Redis is read in place, without yielding."""
    socket = CommandSocket(client)
    key = channels.state_key("signal:s-1").encode()
    try:
        first = await socket.execute(b"SET", key, b"placing", b"NX", b"EX", b"60", urgent=urgent)
        second = await socket.execute(b"SET", key, b"again", b"NX", b"EX", b"60", urgent=urgent)
    finally:
        await socket.close()
    assert (first, second) == (b"OK", None)
    assert socket.urgent_replies_in_place == (2 if urgent else 0)
    assert await client.get(key) == b"placing"
    assert 0 < await client.ttl(key) <= 60


@pytest.mark.parametrize("urgent", [False, True], ids=["through the loop", "urgent"])
async def test_meanwhile_runs_while_the_command_is_on_its_way(
    client: aioredis.Redis, redis_url: str, channels: Channels, urgent: bool
) -> None:
    """Execution's risk checks overlap the claim's round trip: `meanwhile` runs after the
    command has left (another connection sees its effect while `meanwhile` still holds the
    loop), once, before the reply is read."""
    socket = CommandSocket(client)
    key = channels.state_key("signal:s-3").encode()
    seen: list[bytes | None] = []
    observer = redis.Redis.from_url(redis_url)

    def look_from_another_connection() -> None:
        deadline = time.monotonic() + 5.0
        while (value := observer.get(key)) is None and time.monotonic() < deadline:
            pass
        seen.append(value)

    try:
        reply = await socket.execute(
            b"SET", key, b"placing", b"NX", urgent=urgent, meanwhile=look_from_another_connection
        )
    finally:
        await socket.close()
        observer.close()
    assert (reply, seen) == (b"OK", [b"placing"])


async def test_what_meanwhile_raises_comes_after_the_reply_and_the_connection_goes_on(
    client: aioredis.Redis, channels: Channels
) -> None:
    socket = CommandSocket(client)
    key = channels.state_key("signal:s-4").encode()

    def fail() -> None:
        raise ValueError("a bug in the checks")

    try:
        with pytest.raises(ValueError, match="a bug in the checks"):
            await socket.execute(b"SET", key, b"placing", b"NX", urgent=True, meanwhile=fail)
        # the first reply was read, so the second call gets its own
        assert await socket.execute(b"SET", key, b"again", b"NX", urgent=True) is None
    finally:
        await socket.close()
    assert socket.urgent_replies_in_place == 2  # both read: the failure came after the reply
    assert await client.get(key) == b"placing"


async def test_meanwhile_is_not_run_when_the_command_cannot_be_sent() -> None:
    client = connect_redis("redis://127.0.0.1:1/0", timeout=2.0)  # nothing listens there
    socket = CommandSocket(client)
    ran: list[bool] = []
    try:
        with pytest.raises(CONNECTION_ERRORS):
            await socket.execute(b"SET", b"k", b"1", b"NX", meanwhile=lambda: ran.append(True))
    finally:
        await socket.close()
        await client.aclose()
    assert ran == []


async def test_an_error_reply_raises_and_the_connection_goes_on(
    client: aioredis.Redis, channels: Channels
) -> None:
    socket = CommandSocket(client)
    key = channels.state_key("signal:s-2").encode()
    try:
        with pytest.raises(ResponseError, match="syntax error"):
            await socket.execute(b"SET", key, b"v", b"NX", b"NONSENSE")
        assert await socket.execute(b"SET", key, b"v", b"NX") == b"OK"
    finally:
        await socket.close()


async def test_a_restarted_redis_fails_one_call_and_the_next_reconnects(
    embedded_redis: EmbeddedRedis,
) -> None:
    client = connect_redis(embedded_redis.url, timeout=5.0)
    socket = CommandSocket(client)
    try:
        assert await socket.execute(b"SET", b"k", b"1", b"NX") == b"OK"
        await embedded_redis.restart()
        with pytest.raises(CONNECTION_ERRORS):  # the decision is refused, never guessed
            await socket.execute(b"SET", b"k2", b"1", b"NX")
        assert await socket.execute(b"SET", b"k2", b"1", b"NX") == b"OK"
    finally:
        await socket.close()
        await client.aclose()


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_redis(serve: Serve, *, timeout: float) -> AsyncIterator[CommandSocket]:
    """A command socket on a server in this event loop that answers as `serve` does."""
    accepted: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await serve(reader, writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = connect_redis(f"redis://127.0.0.1:{port}/0", timeout=timeout)
    socket = CommandSocket(client)
    try:
        yield socket
        assert accepted  # it did connect
    finally:
        await socket.close()
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_server_times_out_within_the_clients_timeout() -> None:
    """A Redis that accepts and never answers: the call fails closed within socket_timeout."""

    async def swallow(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):
            pass

    async with fake_redis(swallow, timeout=0.3) as socket:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await socket.execute(b"SET", b"k", b"1", b"NX")
        assert time.monotonic() - started < 3.0


async def test_an_urgent_reply_later_than_the_wait_is_awaited_and_the_connection_goes_on() -> None:
    """A server in this event loop cannot answer while the caller holds the loop: the urgent
    call gives up waiting in place after URGENT_WAIT_SECONDS, awaits the reply, and the replies
    that follow still pair with their commands."""
    served: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(1 << 16):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                served.append(command[0])
                name = command[0].upper()
                if name == b"ECHO":
                    writer.write(b"$%d\r\n%s\r\n" % (len(command[1]), command[1]))
                else:  # what redis-py sends on connecting: CLIENT SETNAME/SETINFO, PING
                    writer.write(b"+PONG\r\n" if name == b"PING" else b"+OK\r\n")

    async with fake_redis(answer, timeout=2.0) as socket:
        started = time.perf_counter()
        assert await socket.execute(b"ECHO", b"a", urgent=True) == b"a"
        assert await socket.execute(b"ECHO", b"b", urgent=True) == b"b"
        assert await socket.execute(b"ECHO", b"c") == b"c"
        assert socket.urgent_replies_in_place == 0
        assert time.perf_counter() - started < 2.0
        assert served[-3:] == [b"ECHO", b"ECHO", b"ECHO"]
