"""A linear-time reader for ib_async's socket: split a read into messages without re-copying.

ib_async 2.1's `Client._onSocketHasData` removes each message from its receive buffer with
`self._data = self._data[msgEnd:]`, which copies the rest of the buffer once per message. A read
of n messages therefore costs O(n^2) bytes copied: asyncio reads up to 256 KiB at once when the
client lags, so each ~100-byte tick then costs a copy of up to 256 KiB and decoding slows down
exactly when it should catch up (BENCHMARKS.md: the daemon collapsed at 20,000 ticks/s with 89%
of its samples in that function). `use_linear_reader(ib)` swaps in `read_messages`, which walks
the buffer with an offset and keeps only the incomplete tail; what it does with each message is
what ib_async does, in the same order. It also caps each read of the socket (`READ_BYTES`), and
once the daemon has fallen behind it conflates the backlog (see `read_messages`).
"""

from __future__ import annotations

import array
import asyncio
import functools
import logging
import struct
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ib_async import IB
from ib_async.client import Client
from ib_async.decoder import Decoder

try:  # POSIX only: elsewhere the unread figure is unknown
    import fcntl
    import termios
except ImportError:
    fcntl = termios = None  # type: ignore[assignment]

_LENGTH = struct.Struct(">I")
# About 40 quotes. At 20,000 ticks/s, 4 KiB gave the lowest p99 tick to order of 2, 4, 8 and 16
# KiB (12-15 ms against 22-34 ms at 16 KiB; BENCHMARKS.md): a read is one uninterrupted callback.
READ_BYTES = 4 * 1024
# Behind: more than this waits unread in the kernel after a read that filled its buffer (keeping
# up at 20,000 ticks/s, 0.5-8 KB wait). Ticker updates then wait for the end of the catch-up
# batch, which ends when the reader is no longer behind or after CATCH_UP_SECONDS.
CATCH_UP_BYTES = 16 * 1024
CATCH_UP_SECONDS = 0.1  # strategies still see prices this often while the backlog lasts
_clock = time.monotonic


@dataclass
class ReadStats:
    """What one client's reader did since it was switched."""

    reads: int = 0
    catch_up_batches: int = 0  # batches of reads whose ticker updates were reported once
    reads_conflated: int = 0  # reads whose ticker updates were left to the batch's end


@dataclass
class _Reader:
    stats: ReadStats = field(default_factory=ReadStats)
    batch_since: float | None = None  # when the open catch-up batch began


_readers: weakref.WeakKeyDictionary[Client, _Reader] = weakref.WeakKeyDictionary()


def use_linear_reader(ib: IB) -> None:
    """Make `ib`'s client read its socket with `read_messages` (before it connects)."""
    client = ib.client
    if client in _readers:
        return
    client.conn.hasData -= client._onSocketHasData
    client.conn.hasData += lambda data: read_messages(client, data)
    reader = _Reader()
    client.conn.connection_made = functools.partial(_on_connected, reader)  # type: ignore[method-assign]
    _use_direct_tick_handlers(client.decoder)
    _readers[client] = reader


def read_stats(ib: IB) -> ReadStats:
    """The reader's figures for `ib` (zero for a client never switched)."""
    reader = _readers.get(ib.client)
    return reader.stats if reader is not None else ReadStats()


def unread_bytes(transport: asyncio.BaseTransport | None) -> int | None:
    """Bytes the kernel holds unread for `transport`'s socket (FIONREAD); None when there is no
    open socket or the platform cannot tell."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.fileno() < 0 or fcntl is None:
        return None
    unread = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, unread)
    except OSError:
        return None
    return unread[0]


# msgId -> (wrapper method, how its third field is parsed): the tick messages ib_async decodes
# with its generic `Decoder.wrap` handler, which looks the method up and walks a list of types
# for every message (a fifth of the daemon's time at 20,000 ticks/s).
_DIRECT_TICKS: dict[int, tuple[str, Callable[[str], Any]]] = {
    2: ("tickSize", lambda field: float(field or 0)),
    45: ("tickGeneric", lambda field: float(field or 0)),
    46: ("tickString", str),
}


def _use_direct_tick_handlers(decoder: Decoder) -> None:
    """Decode tickSize, tickGeneric and tickString as `Decoder.wrap` does (same parsing, same
    call, errors logged the same way), without its per-message lookups. A message of another
    shape goes to ib_async's own handler."""
    for message_id, (name, parse) in _DIRECT_TICKS.items():
        method = getattr(decoder.wrapper, name, None)
        if method is not None:
            generic = decoder.handlers[message_id]
            decoder.handlers[message_id] = _direct(decoder, generic, name, method, parse)


def _direct(
    decoder: Decoder,
    generic: Callable[[list[str]], None],
    name: str,
    method: Callable[..., None],
    parse: Callable[[str], Any],
) -> Callable[[list[str]], None]:
    def handler(fields: list[str]) -> None:
        if len(fields) != 5:
            generic(fields)
            return
        args: list[Any] = []
        try:
            args = [int(fields[2] or 0), int(fields[3] or 0), parse(fields[4])]
            method(*args)
        except Exception:
            decoder.logger.exception(f"Error for {name}({args}):")

    return handler


def _on_connected(reader: _Reader, transport: asyncio.BaseTransport) -> None:
    """Read the IB socket READ_BYTES at a time: one read's messages are all handled before
    the event loop does anything else, so asyncio's 256 KiB reads (taken whenever the daemon
    lags) would hold up the Redis replies and order decisions behind ~2,500 ticks. A batch
    left open by the socket before (dropped mid-backlog) ends with it."""
    transport.max_size = READ_BYTES  # type: ignore[attr-defined]
    reader.batch_since = None


def read_messages(client: Client, data: bytes) -> None:
    """ib_async's `Client._onSocketHasData`, with one copy of the unread tail per read.

    ib_async applies each message of a read to its tickers, then reports every ticker that
    changed once (`pendingTickersEvent`), and market data makes one Tick of each. While the
    reader is behind (`CATCH_UP_BYTES`), that report waits for the end of the catch-up batch:
    the backlog is conflated, latest quote per symbol, as the ticker holds it. Reads stay
    READ_BYTES long, so orders, fills and Redis replies still get the loop between them; only
    the Ticks, the work that grows with every quote, are made once per batch."""
    reader = _readers.get(client)
    debug = client._logger.isEnabledFor(logging.DEBUG)
    if reader is not None and reader.batch_since is not None:
        wrapper = client.wrapper  # the batch goes on: keep its changed tickers, new time
        wrapper.lastTime = datetime.now(wrapper.defaultTimezone)
        wrapper.time = time.time()
    elif client._tcpDataArrived:
        client._tcpDataArrived()
    buffer = client._data + data if client._data else data
    client._data = buffer  # a reset() while a message is handled replaces it: we then stop
    client._numBytesRecv += len(data)
    position, size = 0, len(buffer)
    while size - position > 4:
        end = position + 4 + _LENGTH.unpack_from(buffer, position)[0]
        if end > size:
            break  # the rest of this message comes with a later read
        message = buffer[position + 4 : end].decode(errors="backslashreplace")
        position = end
        fields = message.split("\0")
        fields.pop()  # the empty field after the last separator
        client._numMsgRecv += 1
        if debug:
            client._logger.debug("<<< %s", ",".join(fields))
        if not _handle(client, fields) or client._data is not buffer:
            # the connection is being dropped, or was reset by a handler: the rest is the
            # old socket's, and so is any batch
            if reader is not None:
                reader.batch_since = None
            return
    client._data = buffer[position:]
    if reader is not None:
        reader.stats.reads += 1
        if _conflating(reader, client.conn.transport, len(data)):
            reader.stats.reads_conflated += 1
            return
    if client._tcpDataProcessed:
        client._tcpDataProcessed()


def _conflating(reader: _Reader, transport: Any, taken: int) -> bool:
    """Whether this read's ticker updates wait for the end of a catch-up batch. Only a read
    that filled its buffer asks the kernel how much more waits."""
    now = _clock()
    if reader.batch_since is not None and now - reader.batch_since >= CATCH_UP_SECONDS:
        reader.batch_since = None  # long enough: report now; a new batch may start next read
        return False
    behind = (
        transport is not None
        and taken >= transport.max_size
        and (unread_bytes(transport) or 0) > CATCH_UP_BYTES
    )
    if not behind:
        reader.batch_since = None
        return False
    if reader.batch_since is None:
        reader.batch_since = now
        reader.stats.catch_up_batches += 1
    return True


def _handle(client: Client, fields: list[str]) -> bool:
    """One message, as ib_async handles it; False if the connection is being dropped."""
    if not client._serverVersion and len(fields) == 2:
        version, _connection_time = fields  # the handshake's answer
        client._serverVersion = int(version)
        if client._serverVersion < client.MinClientVersion:
            client._onSocketDisconnected("TWS/gateway version must be >= 972")
            return False
        client.decoder.serverVersion = client._serverVersion
        client.connState = Client.CONNECTED
        client.startApi()
        client.wrapper.connectAck()
        client._logger.info(f"Logged on to server version {client._serverVersion}")
        return True
    if not client._apiReady:
        _snoop_until_ready(client, fields)
    client.decoder.interpret(fields)
    return True


def _snoop_until_ready(client: Client, fields: list[str]) -> None:
    """nextValidId and managedAccounts: when both have come, the API is ready (as in ib_async)."""
    message_id = int(fields[0])
    if message_id == 9:
        _, _, valid_id = fields
        client.updateReqId(int(valid_id))
        client._hasReqId = True
    elif message_id == 15:
        _, _, accounts = fields
        client._accounts = [a for a in accounts.split(",") if a]
    if client._hasReqId and client._accounts:
        client._apiReady = True
        client.apiStart.emit()
