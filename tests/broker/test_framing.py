"""The linear socket reader hands ib_async's decoder exactly what ib_async's own reader would."""

from __future__ import annotations

import asyncio
import itertools
import struct

from hypothesis import given
from hypothesis import strategies as st
from ib_async import IB
from ib_async.client import Client

from broker.framing import READ_BYTES, read_messages, use_linear_reader
from ibsim import Simulator

# fields as raw bytes (no NUL), so invalid UTF-8 is covered too
fields_lists = st.lists(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"")), max_size=6),
    max_size=30,
)


def frame(fields: list[str] | list[bytes]) -> bytes:
    body = b"".join((f.encode() if isinstance(f, str) else f) + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


def api_ready_client() -> tuple[Client, list[list[str]]]:
    """A client past the handshake whose decoder only records what it is given."""
    client = IB().client
    client._serverVersion = 176
    client._apiReady = True
    seen: list[list[str]] = []
    client.decoder.interpret = seen.append  # type: ignore[method-assign]
    return client, seen


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(messages=fields_lists, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_same_messages_as_ib_async_whatever_the_reads(
    messages: list[list[bytes]], cuts: list[int]
) -> None:
    """Messages split across reads at any byte are decoded as ib_async decodes them."""
    stream = b"".join(frame([b"1", *fields]) for fields in messages)
    ours, ours_seen = api_ready_client()
    theirs, theirs_seen = api_ready_client()
    for chunk in chunks(stream, cuts):
        read_messages(ours, chunk)
        theirs._onSocketHasData(chunk)
    assert ours_seen == theirs_seen
    assert len(ours_seen) == len(messages)
    assert ours._data == theirs._data
    assert ours._numMsgRecv == theirs._numMsgRecv == len(messages)
    assert ours._numBytesRecv == theirs._numBytesRecv == len(stream)


def test_one_large_read_keeps_only_the_incomplete_tail() -> None:
    """20,000 messages in one read are all handled; a partial message waits for the rest."""
    client, seen = api_ready_client()
    messages = [["1", "2", str(n), "100.25"] for n in range(20_000)]
    last = frame(["1", "2", "last", "1.0"])
    read_messages(client, b"".join(map(frame, messages)) + last[:7])
    assert seen == messages
    assert client._data == last[:7]
    read_messages(client, last[7:])
    assert seen[-1] == ["1", "2", "last", "1.0"]
    assert client._data == b""


def test_a_reset_while_handling_drops_the_rest_of_the_read() -> None:
    """A handler that resets the client (a disconnect) ends the read: nothing after it is
    handed on and the old socket's bytes are not kept."""
    client, seen = api_ready_client()

    def interpret(fields: list[str]) -> None:
        seen.append(fields)
        if fields == ["1", "disconnect"]:
            client.reset()

    client.decoder.interpret = interpret  # type: ignore[method-assign]
    client._serverVersion = 176
    read_messages(client, frame(["1", "a"]) + frame(["1", "disconnect"]) + frame(["1", "b"]))
    assert seen == [["1", "a"], ["1", "disconnect"]]
    assert client._data == b""


def test_handshake_and_api_start_as_in_ib_async() -> None:
    """The server version ends the handshake; nextValidId and managedAccounts start the API."""
    ib = IB()
    use_linear_reader(ib)
    use_linear_reader(ib)  # idempotent
    client = ib.client
    started: list[bool] = []
    client.apiStart += lambda: started.append(True)
    client.startApi = lambda: None  # type: ignore[method-assign]
    client.decoder.interpret = lambda fields: None  # type: ignore[method-assign]
    client.conn.hasData.emit(frame(["176", "20261124 05:00:00 UTC"]))
    assert client._serverVersion == 176 and client.connState == Client.CONNECTED
    client.conn.hasData.emit(frame(["9", "1", "42"]) + frame(["15", "1", "DU0000001,"]))
    assert started == [True]
    assert client._accounts == ["DU0000001"]


async def test_a_connected_client_reads_its_socket_in_capped_chunks(sim: Simulator) -> None:
    """Against the simulator: reads are capped at READ_BYTES and the API works as usual."""
    ib = IB()
    use_linear_reader(ib)
    await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=4)
    try:
        assert ib.client.conn.transport.max_size == READ_BYTES
        assert ib.managedAccounts() == ["DU0000001"]
        assert await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5) is not None
    finally:
        ib.disconnect()


class Recording:
    """A wrapper that records the tick calls it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def tickSize(self, *args: object) -> None:
        self.calls.append(("tickSize", args))

    def tickGeneric(self, *args: object) -> None:
        self.calls.append(("tickGeneric", args))

    def tickString(self, *args: object) -> None:
        self.calls.append(("tickString", args))


tick_fields = st.lists(
    st.sampled_from(["", "0", "7", "-3", "1.5", "x", "1712345678", "nan"]), min_size=0, max_size=6
)


@given(message_id=st.sampled_from([2, 45, 46]), rest=tick_fields)
def test_direct_tick_handlers_call_the_wrapper_as_ib_async_does(
    message_id: int, rest: list[str]
) -> None:
    """tickSize, tickGeneric and tickString: the same calls, with the same values, as ib_async's
    generic handler makes, for well-formed and malformed messages alike."""
    from ib_async.decoder import Decoder

    ours, theirs = Recording(), Recording()
    ib = IB()
    ib.client.decoder = Decoder(ours, 176)
    use_linear_reader(ib)
    reference = Decoder(theirs, 176)
    fields = [str(message_id), "6", *rest]
    ib.client.decoder.interpret(fields)
    reference.interpret(fields)
    assert repr(ours.calls) == repr(theirs.calls)  # repr: nan == nan
