"""The live market data requests of each instrument on one ib_async IB, never two at once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import structlog
from ib_async import IB, Contract, RealTimeBarList, Ticker

from market_data.bars import SLICE_SECONDS, BarAggregator
from market_data.instruments import Instrument
from market_data.model import Stream

log = structlog.get_logger()


@dataclass(slots=True, eq=False)
class Feed:
    """One qualified instrument: its contract, its live requests, and when data last came."""

    instrument: Instrument
    contract: Contract
    aggregator: BarAggregator
    ticker: Ticker | None = None
    bars: RealTimeBarList | None = None
    request_ids: dict[Stream, int] = field(default_factory=dict)  # stream -> live reqId
    last_data: dict[Stream, float] = field(default_factory=dict)  # stream -> monotonic seconds

    @property
    def name(self) -> str:
        return self.instrument.name


class Subscriptions:
    """Requests `streams` for every feed; always cancels a stream before requesting it again.

    Recovery therefore never leaves two live requests for one feed and stream, whatever
    triggered it (reconnect, 1101/1102, farm back, 10182, the staleness watchdog).
    """

    def __init__(self, ib: IB, streams: Iterable[Stream]) -> None:
        self.ib = ib
        self.streams: tuple[Stream, ...] = tuple(streams)
        self.feeds: dict[str, Feed] = {}  # bus name -> Feed
        self.by_con_id: dict[int, Feed] = {}  # conId -> Feed, to route tickers
        self.requests: dict[int, tuple[Feed, Stream]] = {}  # live reqId -> (feed, stream)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds.values())

    def add(self, instrument: Instrument, contract: Contract, bar_seconds: int) -> Feed:
        feed = Feed(instrument, contract, BarAggregator(instrument.name, bar_seconds))
        self.feeds[feed.name] = feed
        self.by_con_id[contract.conId] = feed
        return feed

    def remove(self, feed: Feed) -> None:
        self.cancel(feed)
        self.feeds.pop(feed.name, None)
        self.by_con_id.pop(feed.contract.conId, None)

    def subscribe_all(self, now: float) -> None:
        for feed in self:
            for stream in self.streams:
                self.subscribe(feed, stream, now)

    def subscribe(self, feed: Feed, stream: Stream, now: float) -> None:
        """(Re)request one stream of one feed; staleness counts from `now`."""
        self._cancel_stream(feed, stream)
        request_id = REQUESTS[stream](self.ib, feed)
        feed.request_ids[stream] = request_id
        self.requests[request_id] = (feed, stream)
        feed.last_data[stream] = now
        log.debug("market_data_requested", symbol=feed.name, stream=stream, req_id=request_id)

    def cancel(self, feed: Feed) -> None:
        for stream in list(feed.request_ids):
            self._cancel_stream(feed, stream)

    def cancel_all(self) -> None:
        for feed in self:
            self.cancel(feed)

    def forget_requests(self) -> None:
        """After the socket closed: ib_async and TWS have dropped every request already."""
        self.requests.clear()
        for feed in self:
            feed.request_ids.clear()
            feed.ticker = feed.bars = None

    def restart_clocks(self, now: float) -> None:
        """Staleness of every live stream counts from `now` at the earliest."""
        for feed in self:
            for stream in feed.request_ids:
                feed.last_data[stream] = max(feed.last_data[stream], now)

    def last_seen(self) -> list[tuple[Feed, Stream, float]]:
        """(feed, stream, last data time) of every live stream, for the staleness watchdog."""
        return [
            (feed, stream, feed.last_data[stream]) for feed in self for stream in feed.request_ids
        ]

    def _cancel_stream(self, feed: Feed, stream: Stream) -> None:
        request_id = feed.request_ids.pop(stream, None)
        if request_id is None:
            return
        self.requests.pop(request_id, None)
        if self.ib.isConnected():
            CANCELS[stream](self.ib, feed)
        log.debug("market_data_cancelled", symbol=feed.name, stream=stream, req_id=request_id)


def _request_ticks(ib: IB, feed: Feed) -> int:
    feed.ticker = ib.reqMktData(feed.contract)
    return ib.wrapper.ticker2ReqId["mktData"][feed.ticker]


def _cancel_ticks(ib: IB, feed: Feed) -> None:
    if feed.ticker is not None:
        ib.cancelMktData(feed.contract)
        feed.ticker = None


def _request_bars(ib: IB, feed: Feed) -> int:
    feed.bars = ib.reqRealTimeBars(feed.contract, SLICE_SECONDS, feed.instrument.bar_source, False)
    return feed.bars.reqId


def _cancel_bars(ib: IB, feed: Feed) -> None:
    if feed.bars is not None:
        ib.cancelRealTimeBars(feed.bars)
        feed.bars = None


REQUESTS = {"ticks": _request_ticks, "bars": _request_bars}  # stream -> request, returns reqId
CANCELS = {"ticks": _cancel_ticks, "bars": _cancel_bars}
