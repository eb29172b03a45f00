"""The linear socket reader hands ib_async's decoder exactly what ib_async's own reader would."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given
from hypothesis import strategies as st
from ib_async import IB
from ib_async.client import Client

from broker.framing import read_messages, use_linear_reader

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
