"""A linear-time reader for ib_async's socket: split a read into messages without re-copying.

ib_async 2.1's `Client._onSocketHasData` removes each message from its receive buffer with
`self._data = self._data[msgEnd:]`, which copies the rest of the buffer once per message. A read
of n messages therefore costs O(n^2) bytes copied: asyncio reads up to 256 KiB at once when the
client lags, so each ~100-byte tick then costs a copy of up to 256 KiB and decoding slows down
exactly when it should catch up (BENCHMARKS.md: the daemon collapsed at 20,000 ticks/s with 89%
of its samples in that function). `use_linear_reader(ib)` swaps in `read_messages`, which walks
the buffer with an offset and keeps only the incomplete tail; what it does with each message is
what ib_async does, in the same order.
"""

from __future__ import annotations

import logging
import struct
import weakref

from ib_async import IB
from ib_async.client import Client

_LENGTH = struct.Struct(">I")
_linear: weakref.WeakSet[Client] = weakref.WeakSet()  # clients already switched


def use_linear_reader(ib: IB) -> None:
    """Make `ib`'s client read its socket with `read_messages` (before it connects)."""
    client = ib.client
    if client in _linear:
        return
    client.conn.hasData -= client._onSocketHasData
    client.conn.hasData += lambda data: read_messages(client, data)
    _linear.add(client)


def read_messages(client: Client, data: bytes) -> None:
    """ib_async's `Client._onSocketHasData`, with one copy of the unread tail per read."""
    debug = client._logger.isEnabledFor(logging.DEBUG)
    if client._tcpDataArrived:
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
        if not _handle(client, fields):
            return
        if client._data is not buffer:
            return  # the connection was reset by a handler: the rest is the old socket's
    client._data = buffer[position:]
    if client._tcpDataProcessed:
        client._tcpDataProcessed()


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
