"""Session tests over loopback with the real ib_async.IB: handshake, start-up, client ids."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
from ib_async import IB

from ibsim import SimConfig, Simulator
from tests.fixtures.ibsim import ConnectIB
from tests.helpers import eventually


async def test_connect_reports_the_configured_account(ib: IB) -> None:
    """connectAsync completes its whole start-up sync and sees the managed account."""
    assert ib.isConnected()
    assert ib.managedAccounts() == ["DU0000001"]
    assert ib.client.serverVersion() == 178


@pytest.mark.parametrize("account", ["DU7654321"])
async def test_account_is_configurable(account: str, decoder_errors: object) -> None:
    """SimConfig(account=...) is the account managedAccounts reports."""
    async with Simulator(SimConfig(port=0, account=account)) as sim:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=3, timeout=4)
        try:
            assert ib.managedAccounts() == [account]
        finally:
            ib.disconnect()


async def test_farm_notices_follow_start_api(sim: Simulator) -> None:
    """2104, 2106 and 2158 arrive as reqId -1 notices, like real TWS sends them."""
    ib = IB()
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, message, contract: codes.append(code)
    await ib.connectAsync("127.0.0.1", sim.port, clientId=6, timeout=4)
    try:
        assert codes[:3] == [2104, 2106, 2158]
    finally:
        ib.disconnect()


async def test_current_time_answers_the_wall_clock(ib: IB) -> None:
    """reqCurrentTime answers the wall clock, not the (faster) simulated one."""
    server_time = await ib.reqCurrentTimeAsync()
    assert abs(server_time.timestamp() - time.time()) < 5


async def test_req_ids_answers_next_valid_id(sim: Simulator) -> None:
    """reqIds is answered with nextValidId carrying the simulator's next order id."""
    reader, writer = await _raw_session(sim.port)
    writer.write(_frame(b"8\x001\x001\x00"))
    assert await _read_frame(reader) == ["9", "1", str(sim.broker.next_order_id)]
    writer.close()


async def test_several_clients_at_once(connect_ib: ConnectIB, sim: Simulator) -> None:
    """Distinct client ids connect side by side."""
    clients = [await connect_ib(client_id) for client_id in (1, 2, 3)]
    assert all(ib.isConnected() for ib in clients)
    assert sorted(s.client_id for s in sim.sessions) == [1, 2, 3]


async def test_client_id_in_use_gets_326_and_is_closed(
    connect_ib: ConnectIB, sim: Simulator
) -> None:
    """A second connection with a clientId in use gets error 326 and a closed socket."""
    await connect_ib(7)
    intruder = IB()
    codes: list[int] = []
    intruder.errorEvent += lambda req_id, code, message, contract: codes.append(code)
    with pytest.raises((TimeoutError, ConnectionError)):
        await intruder.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=1)
    assert codes == [326]
    assert not intruder.isConnected()


async def test_client_id_is_free_again_after_disconnect(
    connect_ib: ConnectIB, sim: Simulator
) -> None:
    """Once a client disconnects, its clientId can connect again."""
    first = await connect_ib(8)
    first.disconnect()
    await eventually(lambda: all(s.client_id != 8 for s in sim.sessions))
    second = await connect_ib(8)
    assert second.isConnected()


async def _raw_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"API\0" + _frame(b"v157..178"))
    await _read_frame(reader)  # server version and connection time
    writer.write(_frame(b"71\x002\x009\x00\x00"))  # startApi, clientId 9
    for _ in range(5):  # managedAccounts, nextValidId, three farm notices
        await _read_frame(reader)
    return reader, writer


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> list[str]:
    (length,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))
    payload = await asyncio.wait_for(reader.readexactly(length), 5)
    return payload.decode().split("\0")[:-1]


async def test_unknown_message_id_gets_505_and_session_lives(sim: Simulator) -> None:
    """An unknown message id is answered with error 505; the next request still works."""
    reader, writer = await _raw_session(sim.port)
    writer.write(_frame(b"9999\x001\x00"))
    assert (await _read_frame(reader))[:4] == ["4", "2", "-1", "505"]
    writer.write(_frame(b"49\x001\x00"))  # reqCurrentTime
    assert (await _read_frame(reader))[0] == "49"
    writer.close()


async def test_malformed_fields_get_320(sim: Simulator) -> None:
    """A known request with unreadable fields is answered with error 320, not a crash."""
    reader, writer = await _raw_session(sim.port)
    writer.write(_frame(b"2\x002\x00abc\x00"))  # cancelMktData with a non-numeric reqId
    writer.write(_frame(b"2\x00"))  # cancelMktData without its fields
    for _ in range(2):
        assert (await _read_frame(reader))[:4] == ["4", "2", "-1", "320"]
    writer.write(_frame(b"49\x001\x00"))
    assert (await _read_frame(reader))[0] == "49"
    writer.close()


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\n\r\n", b"API\0" + struct.pack(">I", 2**30) + b"xx"],
    ids=["not-api", "huge-length"],
)
async def test_framing_garbage_closes_only_that_socket(
    garbage: bytes, sim: Simulator, ib: IB
) -> None:
    """Framing garbage gets error 505 and a closed socket; other clients carry on."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(garbage)
    fields = await _read_frame(reader)
    assert fields[:4] == ["4", "2", "-1", "505"]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert (await ib.reqCurrentTimeAsync()).year >= 2024
