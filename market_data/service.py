"""The market data module: IB ticks and 5-second bars in, `Tick` and `Bar` events out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Set

import structlog
from ib_async import IB, RealTimeBarList, Ticker

from broker.connection import IBConnection, Publisher
from config import IBSettings, MarketDataSettings
from event_bus import Event
from event_bus.tasks import cancel_and_wait
from market_data.convert import MARKET_DATA_TYPES, contract_for, slice_from_bar, tick_from_ticker
from market_data.instruments import Instrument, instruments_from_settings
from market_data.model import (
    InstrumentUnavailable,
    MarketDataResubscribed,
    MarketDataStale,
    Stream,
)
from market_data.staleness import overdue, stale_limits
from market_data.subscriptions import Feed, Subscriptions

log = structlog.get_logger()

CLIENT = "market_data"
# Unread bytes on the IB socket (~2,000 quotes) at which market data says it is falling behind,
# and says it caught up once below half of it.
FALLING_BEHIND_BYTES = 256 * 1024
NO_SECURITY_DEFINITION = 200  # the request's contract is unknown: give the instrument up
RESUBSCRIBE_CODES = frozenset({10182})  # that request's live updates stopped: request it again
# IB refuses the request for what the account has: asking again (the staleness watchdog would,
# forever) cannot help, so the instrument is given up, saying what would.
REFUSED_CODES = {
    101: "all of IB's market data lines are in use: stream fewer instruments or buy more lines",
    354: "the account has no market data subscription for it: subscribe, or MARKET_DATA_TYPE="
    "delayed",
    10089: "its market data needs a subscription for the API: subscribe, or MARKET_DATA_TYPE="
    "delayed",
}


class MarketDataService:
    """Keeps every configured instrument subscribed on IB and publishes what arrives.

    Publishes `Tick` on `trading:tick:{SYMBOL}`, `Bar` (of `BAR_SECONDS`) on
    `trading:bar:{SYMBOL}`, and `MarketDataResubscribed`, `MarketDataStale` and
    `InstrumentUnavailable` on `trading:system:market_data`; its connection publishes
    `ConnectivityChanged` on `trading:system:connectivity`.

    Subscriptions are requested after every (re)connection, again after 1101, 1102 and a 2104
    that follows a 2103, per request after 10182, and per stream by a watchdog when a feed has
    been silent for STALE_AFTER_FACTOR times its expected interval. An instrument IB does not
    know (200), or whose data the account may not have (`REFUSED_CODES`), is given up.
    """

    name = CLIENT

    def __init__(
        self, settings: MarketDataSettings, connection: IBConnection, bus: Publisher
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.bus = bus
        streams: list[Stream] = []
        if settings.market_data_ticks:
            streams.append("ticks")
        if settings.market_data_bars:
            streams.append("bars")
        self.subscriptions = Subscriptions(connection.ib, streams)
        self.pending: list[Instrument] = instruments_from_settings(settings)  # not yet qualified
        self.unavailable: set[str] = set()  # bus names IB does not know
        self._limits = stale_limits(
            settings.stale_after_factor,
            settings.expected_tick_interval_seconds,
            settings.expected_bar_interval_seconds,
        )
        self._outgoing: list[Event] = []  # events in the order they were made, to publish
        self._wakeup = asyncio.Event()
        # set once the first connection's requests are made (ib_async's tickers then exist)
        self.subscribed = asyncio.Event()
        # ib_async holds requests beyond 45/s in a queue: a stream whose request waits there is
        # not silent, so the watchdog pauses meanwhile and counts from when the queue drained
        self._throttled = False
        self.falling_behind_bytes = FALLING_BEHIND_BYTES
        self.falling_behind = False  # IB's data waits unread in the kernel beyond the above
        self._tasks: list[asyncio.Task[None]] = []
        self._retry_tasks: set[asyncio.Task[None]] = set()
        connection.add_connect_hook(self._on_connected)
        connection.add_restore_hook(self._on_restore)
        connection.add_error_listener(self._on_ib_error)

    # Lifecycle

    def vital_tasks(self) -> list[asyncio.Task[None]]:
        """Background tasks that must not end while this runs; the daemon watches them."""
        return [*self._tasks, *self.connection.vital_tasks()]

    def status(self) -> dict[str, str]:
        """What `main.py status` shows for market data (through the heartbeat)."""
        unread = self.connection.unread_bytes()
        return {
            "ib": "connected" if self.connection.connected else "down",
            "instruments": str(len(list(self.subscriptions))),
            "unavailable": ",".join(sorted(self.unavailable)) or "none",
            "ib_unread_bytes": "unknown" if unread is None else str(unread),
            # reads of a backlog whose quotes became one Tick per symbol at the batch's end
            "ib_reads_conflated": str(self.connection.read_stats().reads_conflated),
        }

    async def start(self) -> None:
        """Start connecting (forever, in the background) and publishing; returns at once."""
        if self._tasks:
            return
        ib = self.connection.ib
        ib.pendingTickersEvent += self._on_pending_tickers
        ib.barUpdateEvent += self._on_bar_update
        ib.client.throttleStart += self._on_throttle_start
        ib.client.throttleEnd += self._on_throttle_end
        self._tasks.append(asyncio.create_task(self._publish_forever(), name="md-publish"))
        self._tasks.append(asyncio.create_task(self._watch_forever(), name="md-watchdog"))
        await self.connection.start()
        log.info("market_data_started", instruments=[i.name for i in self.pending])

    async def stop(self) -> None:
        """Cancel every subscription, disconnect, then publish what is still queued."""
        if not self._tasks:
            return
        publisher, *others = self._tasks
        await cancel_and_wait(*others, *self._retry_tasks)
        self.subscriptions.cancel_all()
        await self.connection.stop()
        ib = self.connection.ib
        ib.pendingTickersEvent -= self._on_pending_tickers
        ib.barUpdateEvent -= self._on_bar_update
        ib.client.throttleStart -= self._on_throttle_start
        ib.client.throttleEnd -= self._on_throttle_end
        await self._publish_queued()
        await cancel_and_wait(publisher)
        self._tasks = []
        log.info("market_data_stopped")

    # Recovery: connection hooks and error listener

    async def _on_connected(self, ib: IB) -> None:
        """After every (re)connection: ib_async forgot every request, so request all again."""
        self.subscriptions.forget_requests()
        self._throttled = False  # a new connection starts with an empty queue
        ib.reqMarketDataType(MARKET_DATA_TYPES[self.settings.market_data_type])
        await self._qualify_pending(ib)
        self._resubscribe_all("connected")
        if self.pending and not self._retry_tasks:
            task = asyncio.create_task(self._qualify_until_done(ib), name="md-qualify")
            self._retry_tasks.add(task)
            task.add_done_callback(self._retry_tasks.discard)

    async def _qualify_until_done(self, ib: IB) -> None:
        """Qualification timed out with the socket up: try again, then subscribe the newcomers."""
        while self.pending:
            await asyncio.sleep(self.settings.market_data_request_timeout_seconds)
            if not self.connection.connected:
                return  # the next connection qualifies them
            known = set(self.subscriptions.feeds)
            await self._qualify_pending(ib)
            for feed in self.subscriptions:
                if feed.name not in known:
                    for stream in self.subscriptions.streams:
                        self.subscriptions.subscribe(feed, stream, time.monotonic())

    async def _on_restore(self, reason: str) -> None:
        if self.connection.connected:
            self._resubscribe_all(reason)

    def _on_ib_error(self, code: int, request_id: int, message: str) -> None:
        entry = self.subscriptions.requests.get(request_id)
        if entry is None:
            return
        feed, stream = entry
        if code == NO_SECURITY_DEFINITION:
            self.subscriptions.remove(feed)
            self._give_up(feed.instrument, code, message)
        elif code in REFUSED_CODES:
            self.subscriptions.remove(feed)
            self._give_up(feed.instrument, code, f"{REFUSED_CODES[code]} (IB: {message})")
        elif code in RESUBSCRIBE_CODES:
            log.warning("market_data_request_failed", symbol=feed.name, stream=stream, code=code)
            self.subscriptions.subscribe(feed, stream, time.monotonic())
            self._emit(MarketDataResubscribed(reason=f"error_{code}", symbols=(feed.name,)))

    def _resubscribe_all(self, reason: str) -> None:
        self.subscriptions.subscribe_all(time.monotonic())
        symbols = tuple(feed.name for feed in self.subscriptions)
        log.info("market_data_subscribed", reason=reason, instruments=len(symbols))
        self._emit(MarketDataResubscribed(reason=reason, symbols=symbols))
        self.subscribed.set()

    # Instruments

    async def _qualify_pending(self, ib: IB) -> None:
        """Qualify the instruments not qualified yet; unknown ones are given up, the rest go on."""
        if not self.pending:
            return
        contracts = [contract_for(instrument) for instrument in self.pending]
        try:
            qualified = await asyncio.wait_for(
                ib.qualifyContractsAsync(*contracts),
                self.settings.market_data_request_timeout_seconds,
            )
        except (TimeoutError, ConnectionError) as error:
            log.warning("market_data_qualify_failed", error=str(error) or type(error).__name__)
            return  # tried again on the next connection
        for instrument, contract in zip(self.pending, qualified, strict=True):
            if contract is None or isinstance(contract, list):
                self._give_up(instrument, None, "IB has no single contract for it")
            else:
                self.subscriptions.add(instrument, contract, self.settings.bar_seconds)
        self.pending = []

    def _give_up(self, instrument: Instrument, code: int | None, reason: str) -> None:
        self.unavailable.add(instrument.name)
        log.error("instrument_unavailable", symbol=instrument.name, code=code, reason=reason)
        self._emit(InstrumentUnavailable(symbol=instrument.name, code=code, reason=reason))

    # Data in: ib_async callbacks copy into frozen events at once

    def _on_pending_tickers(self, tickers: Set[Ticker]) -> None:
        """Once per batch of socket data: one Tick per instrument that changed."""
        now = time.monotonic()
        by_con_id = self.subscriptions.by_con_id
        outgoing = self._outgoing
        for ticker in tickers:
            feed = by_con_id.get(ticker.contract.conId) if ticker.contract else None
            if feed is None:
                continue
            feed.last_data["ticks"] = now
            tick = tick_from_ticker(feed.name, ticker)
            if tick is not None:
                outgoing.append(tick)
        if outgoing:
            self._wakeup.set()

    def _on_bar_update(self, bars: RealTimeBarList, has_new_bar: bool) -> None:
        entry = self.subscriptions.requests.get(bars.reqId)
        if entry is None or not has_new_bar or not isinstance(bars, RealTimeBarList):
            return
        feed = entry[0]
        feed.last_data["bars"] = time.monotonic()
        pieces = [slice_from_bar(bar) for bar in bars]
        bars.clear()  # ib_async would keep every bar for the life of the daemon
        for piece in pieces:
            if piece is None:
                log.warning("real_time_bar_unusable", symbol=feed.name)
                continue
            self._emit_all(feed.aggregator.add(piece))

    # Watchdog: silent streams, and data piling up unread

    async def _watch_forever(self) -> None:
        interval = min(self._limits.values()) / 4 if self._limits else 2.5
        while True:
            await asyncio.sleep(interval)
            self.watch(time.monotonic())

    def watch(self, now: float) -> None:
        """One look of the watchdog: IB's data piling up unread, then streams silent too long.

        While IB's data waits unread, a stream's silence is this process's, not IB's: no stream
        is called stale then (at 5,000 instruments a start-up backlog had thousands requested
        again, adding to the load), and once caught up, silence counts from then."""
        self.check_falling_behind(now)
        if (
            self._limits
            and self.connection.ready_to_trade
            and not self._throttled
            and not self.falling_behind
        ):
            self.check_staleness(now)

    def check_falling_behind(self, now: float) -> None:
        """Say when IB's data piles up unread (this process is short of CPU: strategies see
        old prices), and when it is read again in time."""
        unread = self.connection.unread_bytes()
        if unread is None:
            return
        if not self.falling_behind and unread >= self.falling_behind_bytes:
            self.falling_behind = True
            log.warning(
                "market_data_falling_behind",
                unread_bytes=unread,
                hint="IB's data arrives faster than this process reads it: it needs more CPU",
            )
        elif self.falling_behind and unread < self.falling_behind_bytes // 2:
            self.falling_behind = False
            self.subscriptions.restart_clocks(now)
            log.info("market_data_caught_up", unread_bytes=unread)

    def _on_throttle_start(self) -> None:
        self._throttled = True
        log.info("ib_requests_throttled", hint="over 45 requests/s: ib_async queues the rest")

    def _on_throttle_end(self) -> None:
        """Every queued request has left: silence counts from now, not from the request."""
        self._throttled = False
        self.subscriptions.restart_clocks(time.monotonic())

    def check_staleness(self, now: float) -> None:
        """Resubscribe each stream silent longer than its limit, and say so."""
        for feed, stream, silent in overdue(self.subscriptions.last_seen(), now, self._limits):
            self._report_stale(feed, stream, silent)
            self.subscriptions.subscribe(feed, stream, now)

    def _report_stale(self, feed: Feed, stream: Stream, silent: float) -> None:
        expected = self._limits[stream] / self.settings.stale_after_factor
        log.warning("market_data_stale", symbol=feed.name, stream=stream, silent_seconds=silent)
        self._emit(
            MarketDataStale(
                symbol=feed.name,
                stream=stream,
                silent_seconds=round(silent, 3),
                expected_interval_seconds=expected,
            )
        )

    # Data out

    def _emit(self, event: Event) -> None:
        self._outgoing.append(event)
        self._wakeup.set()

    def _emit_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self._emit(event)

    async def _publish_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._publish_queued()

    async def _publish_queued(self) -> None:
        while self._outgoing:
            batch, self._outgoing = self._outgoing, []
            for event in batch:
                try:
                    await self.bus.publish(event)
                except Exception:
                    log.exception("market_data_publish_failed", event_type=type(event).__name__)


def build_market_data(
    settings: MarketDataSettings, ib_settings: IBSettings, bus: Publisher
) -> MarketDataService:
    """The market data module as `main.py` wires it: its own IB connection as IB_CLIENT_ID."""
    connection = IBConnection(ib_settings, bus, client=CLIENT, client_id=ib_settings.client_id)
    return MarketDataService(settings, connection, bus)
