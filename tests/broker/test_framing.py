"""The linear socket reader hands ib_async's decoder exactly what ib_async's own reader would."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ib_async import IB
from ib_async.client import Client

from broker import framing
from broker.framing import (
    CATCH_UP_BYTES,
    CATCH_UP_SECONDS,
    READ_BYTES,
    read_messages,
    read_stats,
    use_linear_reader,
)
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


class Backlog:
    """A transport whose socket holds `unread` bytes the kernel has not handed over yet."""

    def __init__(self) -> None:
        self.max_size = READ_BYTES
        self._ours, self._theirs = socket.socketpair()
        self._ours.setblocking(False)

    def get_extra_info(self, name: str) -> object:
        return self._ours if name == "socket" else None

    def set_unread(self, size: int) -> None:
        while True:  # take whatever waits, then leave `size` bytes waiting
            try:
                self._ours.recv(1 << 20)
            except BlockingIOError:
                break
        self._theirs.sendall(b"x" * size)

    def close(self) -> None:
        self._ours.close()
        self._theirs.close()


class Reports:
    """A switched client on a `Backlog`, counting ib_async's per-read ticker callbacks."""

    def __init__(self) -> None:
        self.ib = IB()
        use_linear_reader(self.ib)
        client = self.ib.client
        client._serverVersion = 176
        client._apiReady = True
        client.decoder.interpret = lambda fields: None  # type: ignore[method-assign]
        self.arrived = self.processed = 0
        client._tcpDataArrived = self._arrived
        client._tcpDataProcessed = self._processed
        self.transport = Backlog()
        client.conn.transport = self.transport
        self.now = 0.0  # the reader's clock

    def _arrived(self) -> None:
        self.arrived += 1

    def _processed(self) -> None:
        self.processed += 1

    def read(self, size: int = READ_BYTES) -> tuple[int, int]:
        """One read of `size` bytes of whole messages; (arrived, processed) after it."""
        read_messages(self.ib.client, frame(["1", "a" * (size - 7)]))  # size bytes
        return self.arrived, self.processed


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reports]:
    made = Reports()
    monkeypatch.setattr(framing, "_clock", lambda: made.now)
    yield made
    made.transport.close()


def test_behind_the_ticker_report_waits_for_the_end_of_the_catch_up_batch(
    reports: Reports,
) -> None:
    """While full reads leave more than CATCH_UP_BYTES unread, ib_async's per-read ticker
    report (one Tick per changed symbol) is made once, when the reader is no longer behind;
    tickers keep what changed since the batch began (no second tcpDataArrived)."""
    assert reports.read() == (1, 1)  # keeping up: one report per read
    reports.transport.set_unread(CATCH_UP_BYTES + 1)
    assert reports.read() == (2, 1)
    assert reports.read() == (2, 1)
    assert reports.read() == (2, 1)
    reports.transport.set_unread(CATCH_UP_BYTES)  # not more than the threshold: caught up
    assert reports.read() == (2, 2)
    assert reports.read() == (3, 3)
    stats = read_stats(reports.ib)
    assert (stats.reads, stats.catch_up_batches, stats.reads_conflated) == (6, 1, 3)


def test_a_read_that_did_not_fill_its_buffer_ends_the_batch(reports: Reports) -> None:
    """A short read took all there was when it was made: the reader has caught up."""
    reports.transport.set_unread(10 * CATCH_UP_BYTES)
    assert reports.read() == (1, 0)
    assert reports.read(READ_BYTES - 100) == (1, 1)


def test_a_batch_reports_at_least_every_catch_up_seconds(reports: Reports) -> None:
    """A backlog that lasts: strategies still get the latest prices every CATCH_UP_SECONDS."""
    reports.transport.set_unread(10 * CATCH_UP_BYTES)
    assert reports.read() == (1, 0)
    reports.now = CATCH_UP_SECONDS * 0.99
    assert reports.read() == (1, 0)
    reports.now = CATCH_UP_SECONDS
    assert reports.read() == (1, 1)  # reported; still behind
    reports.now = CATCH_UP_SECONDS * 1.5
    assert reports.read() == (2, 1)  # the next batch
    stats = read_stats(reports.ib)
    assert (stats.catch_up_batches, stats.reads_conflated) == (2, 3)


def test_a_reset_ends_the_batch(reports: Reports) -> None:
    """A connection reset mid-batch: the next socket's first read starts afresh."""
    reports.transport.set_unread(10 * CATCH_UP_BYTES)
    assert reports.read() == (1, 0)
    client = reports.ib.client
    client.decoder.interpret = lambda fields: client.reset()  # type: ignore[method-assign]
    reports.read()
    client.decoder.interpret = lambda fields: None  # type: ignore[method-assign]
    client._serverVersion, client._apiReady = 176, True
    client.conn.transport = reports.transport
    reports.transport.set_unread(0)
    assert reports.read() == (2, 1)  # a fresh start: tcpDataArrived again


def test_a_new_connection_ends_the_batch(reports: Reports) -> None:
    """A socket dropped mid-backlog: the next connection's first read starts afresh."""
    reports.transport.set_unread(10 * CATCH_UP_BYTES)
    assert reports.read() == (1, 0)
    reports.ib.client.conn.connection_made(reports.transport)
    assert reports.transport.max_size == READ_BYTES
    reports.transport.set_unread(0)
    assert reports.read() == (2, 1)


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
