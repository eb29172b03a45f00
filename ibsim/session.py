"""One client connection: framing, handshake, startApi, and the client's subscriptions."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from ibsim.market import BarBuilder
from ibsim.messages import encode, encode_server_version
from ibsim.payloads import ib_timestamp
from ibsim.requests import MalformedRequest, UnknownRequest, parse_request
from ibsim.wire import MIN_CLIENT_VERSION, SERVER_VERSION, FrameReader, FramingError

if TYPE_CHECKING:
    from ibsim.server import Simulator

log = structlog.get_logger()

_session_numbers = itertools.count(1)


@dataclass(slots=True)
class LiveHistory:
    """A keepUpToDate historical-data request: the bar in progress and how to date it."""

    symbol: str
    seconds_per_bar: int
    format_date: int
    bar: BarBuilder


class ClientSession(asyncio.Protocol):
    """A TWS API client connection; the Simulator owns the state, the session its view of it."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.number = next(_session_numbers)
        self.client_id: int | None = None
        self.ready = False
        self.market_data_type = 1
        self.quotes: dict[int, str] = {}  # reqId -> symbol, from reqMktData
        self.realtime_bars: dict[int, str] = {}  # reqId -> symbol, from reqRealTimeBars
        self.live_histories: dict[int, LiveHistory] = {}  # reqId -> keepUpToDate request
        self.account_updates: str | None = None  # account of reqAccountUpdates, if subscribed
        self.account_multi: dict[int, str] = {}  # reqId -> account, reqAccountUpdatesMulti
        self.positions_subscribed = False
        self._reader = FrameReader()
        # When the latest bytes came off the socket (perf_counter_ns, CLOCK_MONOTONIC): a
        # request is "received" when the read that completed it arrived, not after the
        # simulator's own Python parsed it (~70 us for a placeOrder; TWS parses in Java).
        self.data_arrived_ns = 0
        self._transport: asyncio.Transport | None = None
        self._log = log.bind(session=self.number)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._log = self._log.bind(peer=transport.get_extra_info("peername"))
        self.simulator.session_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._log.info("client_disconnected", client_id=self.client_id, reason=str(exc or ""))
        self._transport = None
        self.ready = False
        self.simulator.session_closed(self)

    def data_received(self, data: bytes) -> None:
        self.data_arrived_ns = time.perf_counter_ns()
        self._reader.feed(data)
        try:
            if not self._reader.handshake_done:
                self._handshake()
            if self._reader.handshake_done:
                for fields in self._reader.read_frames():
                    self._handle_frame(fields)
        except FramingError as error:
            self._log.warning("client_framing_error", error=str(error))
            self.send_error(-1, 505, "Fatal Error: Unknown message id.")
            self.close()

    # sending

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, message: str, values: Mapping[str, object]) -> None:
        self.write(encode(message, values))

    def write(self, frames: bytes) -> None:
        if self.connected:
            assert self._transport is not None
            self._transport.write(frames)

    def send_error(self, req_id: int, code: int, message: str) -> None:
        self.send(
            "error",
            {"reqId": req_id, "code": code, "message": message, "advancedOrderRejectJson": ""},
        )

    def close(self) -> None:
        """Close after flushing what was written, as TWS does after error 326."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the socket at once, unsent data included: a crash or a cable pulled."""
        if self._transport is not None:
            self._transport.abort()

    # receiving

    def _handshake(self) -> None:
        versions = self._reader.read_handshake()
        if versions is None:
            return
        low, high = versions
        if not low <= SERVER_VERSION <= high or high < MIN_CLIENT_VERSION:
            raise FramingError(f"client versions {low}..{high} exclude {SERVER_VERSION}")
        self.write(encode_server_version(ib_timestamp(time.time())))

    def _handle_frame(self, fields: list[str]) -> None:
        try:
            request = parse_request(fields)
            if not self.ready and request.name != "start_api":
                raise MalformedRequest("request before startApi")
            self.simulator.handle(self, request)
        except UnknownRequest:
            self._log.warning("client_unknown_message", message_id=fields[:1])
            self.send_error(-1, 505, "Fatal Error: Unknown message id.")
        except MalformedRequest as error:
            self._log.warning("client_malformed_request", fields=fields[:3], error=str(error))
            self.send_error(-1, 320, "Error reading request: " + str(error))
        except Exception:
            # a simulator bug must not take the other clients down with it
            self._log.exception("request_failed", fields=fields[:3])
            self.send_error(-1, 320, "Error reading request")
