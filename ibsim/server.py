"""The Simulator: listening socket, client sessions, the market clock, orders and faults."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import structlog

from ibsim import payloads
from ibsim.config import SimConfig
from ibsim.faults import RESTORED_CODES, FaultState, message_for
from ibsim.handlers import HANDLERS
from ibsim.history import bucket_start, format_bar_date
from ibsim.market import BarBuilder, Instrument, build_universe
from ibsim.orders import SUPPORTED_ORDER_TYPES, Broker, Execution, OrderReceived, SimOrder
from ibsim.requests import Request
from ibsim.session import ClientSession, LiveHistory

log = structlog.get_logger()

TickListener = Callable[[str, float, int], None]


class Simulator:
    """An IB Gateway stand-in that real TWS API clients (ib_async) connect to.

    Start with `await sim.start()` or `async with Simulator(config) as sim:`; `sim.port`
    is the bound port. Orders, executions and positions live as long as the Simulator.
    Fault methods are synchronous: they act at once and schedule any restoration.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.instruments = build_universe(self.config)  # symbol -> Instrument
        self._by_con_id = {i.con_id: i for i in self.instruments.values()}  # conId -> Instrument
        self.broker = Broker(self.config)
        self.faults = FaultState()
        self.orders_received: list[OrderReceived] = []
        self.ticks_sent = 0
        self.tick_listener: TickListener | None = None  # (symbol, last, perf_counter_ns)
        self.port = self.config.port
        self.sessions: set[ClientSession] = set()
        self._clients: dict[int, ClientSession] = {}  # clientId -> its ready session
        self._bars: dict[str, BarBuilder] = {}  # symbol -> 5-second bar in progress
        self._step = 0
        self._epoch0 = float(bucket_start(time.time(), int(self.config.bar_interval)))
        self._steps_per_bar = round(self.config.bar_interval / self.config.tick_interval)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    # lifecycle

    async def start(self) -> None:
        await self._listen()
        self._spawn(self._run_market())
        log.info("simulator_started", host=self.config.host, port=self.port)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_listener()
        self._abort_sessions()
        log.info("simulator_stopped", port=self.port)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientSession(self), self.config.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later(self, seconds: float, callback: Callable[[], None]) -> None:
        timer = asyncio.get_running_loop().call_later(seconds, callback)
        self._timers.add(timer)

    # sessions

    def session_opened(self, session: ClientSession) -> None:
        self.sessions.add(session)

    def session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)
        if session.client_id is not None and self._clients.get(session.client_id) is session:
            del self._clients[session.client_id]

    def claim_client_id(self, session: ClientSession, client_id: int) -> bool:
        """Bind `client_id` to `session` unless another live session holds it."""
        holder = self._clients.get(client_id)
        if holder is not None and holder.connected:
            return False
        self._clients[client_id] = session
        session.client_id = client_id
        session.ready = True
        log.info("client_connected", client_id=client_id, session=session.number)
        return True

    def handle(self, session: ClientSession, request: Request) -> None:
        HANDLERS[request.name](self, session, request)

    def _ready_sessions(self) -> list[ClientSession]:
        return [session for session in self.sessions if session.ready and session.connected]

    def _owner(self, order: SimOrder) -> ClientSession | None:
        session = self._clients.get(order.client_id)
        return session if session is not None and session.connected else None

    def market_data_line_free(self) -> bool:
        """Whether one more streaming quote fits in the account's market data lines (IB counts
        them across every client of the account; `market_data_lines` 0: no limit)."""
        lines = self.config.market_data_lines
        return not lines or sum(len(session.quotes) for session in self.sessions) < lines

    # instruments and time

    def lookup(self, con_id: int, symbol: str, sec_type: str = "") -> Instrument | None:
        """The stock with `con_id`, else with `symbol`; None if unknown or not a stock."""
        if sec_type not in ("", "STK"):
            return None
        if con_id:
            return self._by_con_id.get(con_id)
        return self.instruments.get(symbol.upper())

    def epoch(self) -> float:
        """Simulated time of the current step as a Unix epoch."""
        return self._epoch0 + self._step * self.config.tick_interval

    def catch_up(self, instrument: Instrument) -> None:
        instrument.advance_to(self._step)

    def set_price(self, symbol: str, price: float) -> None:
        """Move `symbol`'s last price to `price` now; resting orders are checked at once."""
        instrument = self.instruments[symbol.upper()]
        self.catch_up(instrument)
        instrument.last = round(price, 2)
        self._match_orders(instrument.symbol)

    # the market clock

    async def _run_market(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.tick_interval / self.config.speed  # wall-clock seconds
        deadline = loop.time()
        while True:
            deadline += interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if self.config.paced_quotes:
                await self._paced_step(deadline, interval)
            else:
                self.advance()

    def advance(self) -> None:
        """One market step: move watched prices, publish ticks and bars, match orders."""
        self._step += 1
        epoch = self.epoch()
        traded = {order.symbol for order in self.broker.active_orders()}
        for symbol in self._watched_symbols() | traded:
            self._move(self.instruments[symbol], epoch)
        if not self.faults.market_data_paused:
            self._publish_quotes(self._quote_requests(), epoch)
        for symbol in traded:
            self._match_orders(symbol)
        if self._step % self._steps_per_bar == 0:
            self._publish_bars(epoch)

    async def _paced_step(self, start: float, interval: float) -> None:
        """`advance` with the step's quotes spread from `start` over `interval`, each symbol
        moving when its quote is written.

        Moving a symbol costs ~3 us of Python: moving a thousand at the start of the step held
        the loop for 3-12 ms every step, and an order arriving then waited for it, which the
        tick-to-order benchmark counted as the daemon's latency.
        """
        self._step += 1
        epoch = self.epoch()
        traded = {order.symbol for order in self.broker.active_orders()}
        for symbol in traded:
            self._move(self.instruments[symbol], epoch)
            self._match_orders(symbol)
        await self._pace_quotes(start, interval, epoch)
        for symbol in self._watched_symbols():  # streamed for bars only, or quotes cut short
            self._move(self.instruments[symbol], epoch)
        if self._step % self._steps_per_bar == 0:
            self._publish_bars(epoch)

    def _move(self, instrument: Instrument, epoch: float) -> None:
        """`instrument`'s trade of the current step, once."""
        if instrument.step < self._step:
            instrument.advance_to(self._step)
            self._record_trade(instrument, epoch)

    def _watched_symbols(self) -> set[str]:
        """Symbols some client streams quotes or bars of."""
        watched: set[str] = set()
        for session in self.sessions:
            watched.update(session.quotes.values(), session.realtime_bars.values())
            watched.update(history.symbol for history in session.live_histories.values())
        return watched

    def _record_trade(self, instrument: Instrument, epoch: float) -> None:
        price, size = instrument.last, instrument.last_size
        bar = self._bars.get(instrument.symbol)
        if bar is None:
            bar = self._bars[instrument.symbol] = BarBuilder.starting(0, price)
        bar.add_trade(price, size)
        for session in self.sessions:
            for history in session.live_histories.values():
                if history.symbol == instrument.symbol:
                    start = bucket_start(epoch, history.seconds_per_bar)
                    if start > history.bar.start:
                        history.bar = BarBuilder.starting(start, price)
                    history.bar.add_trade(price, size)

    def _quote_requests(self) -> list[tuple[ClientSession, int, str]]:
        """(session, reqId, symbol) of every quote stream of every ready session."""
        return [
            (session, req_id, symbol)
            for session in self._ready_sessions()
            for req_id, symbol in session.quotes.items()
        ]

    def _publish_quotes(self, requests: list[tuple[ClientSession, int, str]], epoch: float) -> None:
        listener = self.tick_listener
        for session, req_id, symbol in requests:
            if not session.connected or session.quotes.get(req_id) != symbol:
                continue  # gone or cancelled since the step began
            instrument = self.instruments[symbol]
            self._move(instrument, epoch)
            delayed = session.market_data_type in (3, 4)
            quote = payloads.encode_quote(req_id, instrument, epoch, delayed)
            if listener is not None:  # stamped before the write: the reader may be faster
                listener(symbol, instrument.last, time.perf_counter_ns())
            session.write(quote)
            self.ticks_sent += 1

    async def _pace_quotes(self, start: float, interval: float, epoch: float) -> None:
        """Write this step's quotes in slices spread evenly from `start` over `interval`.

        A slice at most every millisecond (the event loop's timer resolution), so at 1,000
        quotes/s each quote goes alone and at 20,000/s about 20 go together.
        """
        loop = asyncio.get_running_loop()
        requests = self._quote_requests()
        slices = max(1, min(len(requests), int(interval / 0.001)))
        for index in range(slices):
            await asyncio.sleep(max(0.0, start + index * interval / slices - loop.time()))
            if self.faults.market_data_paused:
                continue
            first = index * len(requests) // slices
            last = (index + 1) * len(requests) // slices
            self._publish_quotes(requests[first:last], epoch)

    def _publish_bars(self, epoch: float) -> None:
        bars, self._bars = self._bars, {}
        if self.faults.market_data_paused:
            return
        start = int(epoch - self.config.bar_interval)
        for session in self._ready_sessions():
            for req_id, symbol in session.realtime_bars.items():
                if symbol in bars:
                    session.send("realtime_bar", _realtime_bar_fields(req_id, start, bars[symbol]))
            for req_id, history in session.live_histories.items():
                session.send("historical_data_update", _history_update_fields(req_id, history))

    # orders

    def place_order(self, session: ClientSession, request: Request) -> None:
        """placeOrder: a new order, a modification of a live one, or a rejection."""
        received = _received(request, session.client_id or 0, session.data_arrived_ns)
        self.orders_received.append(received)
        log.info("order_received", order_id=received.order_id, client_id=received.client_id)
        if self.faults.take_lost_order():
            log.warning("fault_order_lost", order_id=received.order_id)
            session.abort()
            return
        existing = self.broker.orders.get((received.client_id, received.order_id))
        if existing is not None and not existing.is_active:
            session.send_error(received.order_id, 103, "Duplicate order id")
            return
        rejection = self._rejection(request, received)
        if rejection:
            session.send_error(received.order_id, 201, f"Order rejected - reason:{rejection}")
            return
        order = self._modify(existing, received) if existing else self._new_order(request, received)
        if self.faults.take_drop_on_order():
            log.warning("fault_drop_socket_on_order", order_id=order.order_id)
            session.abort()
        owner = self._owner(order)
        if owner is not None:
            self.send_order_state(owner, order)
        self._match_orders(order.symbol)

    def _rejection(self, request: Request, received: OrderReceived) -> str:
        """Why TWS would refuse this order, or an empty string."""
        account = request.text("account")
        if account and account not in self.broker.accounts:
            return f"unknown account {account}"
        if self.lookup(request.integer("conId"), received.symbol, request.text("secType")) is None:
            return "no security definition has been found"
        if received.order_type not in SUPPORTED_ORDER_TYPES:
            return f"unsupported order type {received.order_type}"
        if received.quantity <= 0:
            return "the order size must be positive"
        if received.order_type in ("LMT", "STP LMT") and received.limit_price is None:
            return "a limit price is required"
        if received.order_type.startswith("STP") and received.aux_price is None:
            return "a stop price is required"
        return ""

    def _new_order(self, request: Request, received: OrderReceived) -> SimOrder:
        instrument = self.lookup(request.integer("conId"), received.symbol)
        assert instrument is not None
        self.catch_up(instrument)
        order = SimOrder(
            order_id=received.order_id,
            client_id=received.client_id,
            perm_id=self.broker.new_perm_id(),
            account=request.text("account") or self.config.account,
            symbol=instrument.symbol,
            action=received.action,
            total_quantity=received.quantity,
            order_type=received.order_type,
            limit_price=received.limit_price,
            aux_price=received.aux_price,
            tif=request.text("tif") or "DAY",
            order_ref=received.order_ref,
            status="PreSubmitted" if received.order_type.startswith("STP") else "Submitted",
        )
        self.broker.add(order)
        return order

    def _modify(self, order: SimOrder, received: OrderReceived) -> SimOrder:
        order.total_quantity = max(received.quantity, order.filled)
        order.order_type = received.order_type
        order.limit_price = received.limit_price
        order.aux_price = received.aux_price
        order.order_ref = received.order_ref
        log.info("order_modified", order_id=order.order_id, client_id=order.client_id)
        return order

    def cancel_order(self, session: ClientSession, order_id: int) -> None:
        order = self.broker.orders.get((session.client_id or 0, order_id))
        if order is None:
            message = f"OrderId {order_id} that needs to be cancelled is not found."
            session.send_error(order_id, 10147, message)
        elif not order.is_active:
            message = f"Cancel attempted when order is not in a cancellable state: {order.status}"
            session.send_error(order_id, 161, message)
        else:
            self.broker.cancel(order)
            order.completed_time = payloads.ib_timestamp(self.epoch())
            log.info("order_cancelled", order_id=order_id, client_id=order.client_id)
            session.send("order_status", payloads.order_status_fields(order))
            session.send_error(order_id, 202, "Order Canceled - reason:")

    def _match_orders(self, symbol: str) -> None:
        instrument = self.instruments[symbol]
        for order in self.broker.active_orders(symbol):
            price = self.broker.fill_price(order, instrument)
            if price is not None:
                self._fill(order, price)

    def _fill(self, order: SimOrder, price: float) -> None:
        execution = self.broker.execute(order, price, self.epoch())
        if not order.is_active:
            order.completed_time = payloads.ib_timestamp(execution.epoch)
        log.info("order_filled", order_id=order.order_id, shares=execution.shares, price=price)
        owner = self._owner(order)
        if owner is not None:
            self._send_fill(owner, order, execution)
        self._publish_account_change(order.account, order.symbol)

    def _send_fill(self, session: ClientSession, order: SimOrder, execution: Execution) -> None:
        """execDetails, [openOrder when filled], orderStatus, commissionReport: TWS's order."""
        instrument = self.instruments[order.symbol]
        session.send("exec_details", payloads.execution_fields(-1, execution, instrument))
        if order.status == "Filled":
            session.send("open_order", payloads.order_fields(order, instrument))
        session.send("order_status", payloads.order_status_fields(order))
        session.send("commission_report", payloads.commission_fields(execution))

    def send_order_state(self, session: ClientSession, order: SimOrder) -> None:
        session.send("open_order", payloads.order_fields(order, self.instruments[order.symbol]))
        session.send("order_status", payloads.order_status_fields(order))

    def send_execution(self, session: ClientSession, req_id: int, execution: Execution) -> None:
        instrument = self.instruments[execution.symbol]
        session.send("exec_details", payloads.execution_fields(req_id, execution, instrument))
        session.send("commission_report", payloads.commission_fields(execution))

    @property
    def executions(self) -> list[Execution]:
        """Every execution since start, oldest first."""
        return self.broker.executions

    def positions(self, account: str | None = None) -> dict[str, float]:
        """symbol -> signed quantity of the non-flat positions of `account` (default: first)."""
        holdings = self.broker.accounts[account or self.config.account].positions
        return {symbol: p.quantity for symbol, p in holdings.items() if p.quantity}

    # account updates

    def send_account_updates(self, session: ClientSession, account: str) -> None:
        """Account values, every portfolio line and the account time (reqAccountUpdates)."""
        holdings = self.broker.accounts[account]
        for key, value, currency in payloads.account_value_rows(
            account, holdings, self.instruments
        ):
            session.send(
                "account_value",
                {"key": key, "value": value, "currency": currency, "account": account},
            )
        for symbol, position in holdings.positions.items():
            fields = payloads.portfolio_fields(account, self.instruments[symbol], position)
            session.send("portfolio_value", fields)
        session.send("account_time", {"time": time.strftime("%H:%M", time.gmtime(self.epoch()))})

    def send_account_multi(self, session: ClientSession, req_id: int, account: str) -> None:
        holdings = self.broker.accounts[account]
        for key, value, currency in payloads.account_value_rows(
            account, holdings, self.instruments
        ):
            values = {"reqId": req_id, "account": account, "modelCode": "", "key": key}
            session.send("account_update_multi", {**values, "value": value, "currency": currency})

    def _publish_account_change(self, account: str, symbol: str) -> None:
        instrument = self.instruments[symbol]
        position = self.broker.accounts[account].positions[symbol]
        for session in self._ready_sessions():
            if session.positions_subscribed:
                session.send("position", payloads.position_fields(account, instrument, position))
            if session.account_updates == account:
                self.send_account_updates(session, account)
            for req_id, multi_account in session.account_multi.items():
                if multi_account == account:
                    self.send_account_multi(session, req_id, account)

    # faults

    def drop_all_clients(self) -> None:
        """Abort every client socket at once, as when the Gateway process dies."""
        log.warning("fault_drop_all_clients", clients=len(self.sessions))
        self._abort_sessions()

    def _abort_sessions(self) -> None:
        for session in list(self.sessions):
            session.abort()

    def refuse_connections(self, seconds: float) -> None:
        """A Gateway restart: drop every client and refuse connections for `seconds`."""
        log.warning("fault_refuse_connections", seconds=seconds)
        if self._server is not None:
            self._server.close()
            self._server = None
        self._abort_sessions()
        self._later(seconds, lambda: self._spawn(self._reopen()))

    async def _reopen(self) -> None:
        await self._listen()
        log.info("fault_connections_accepted_again", port=self.port)

    def connectivity_lost(self, restored_code: int = 1101, after: float = 1.0) -> None:
        """Send 1100 and pause market data; after `after` seconds send 1101 (subscriptions
        lost) or 1102 (kept) and resume."""
        if restored_code not in RESTORED_CODES:
            raise ValueError(f"restored_code must be one of {sorted(RESTORED_CODES)}")
        self._begin_outage(1100)
        self._later(after, lambda: self._end_outage(restored_code))

    def farm_blip(self, pause_seconds: float = 1.0) -> None:
        """Send 2103, pause market data for `pause_seconds`, then send 2104."""
        self._begin_outage(2103)
        self._later(pause_seconds, lambda: self._end_outage(2104))

    def _begin_outage(self, code: int) -> None:
        log.warning("fault_market_data_outage", code=code)
        self.faults.market_data_outages += 1
        self.send_error(code)

    def _end_outage(self, code: int) -> None:
        self.faults.market_data_outages = max(0, self.faults.market_data_outages - 1)
        if code == 1101:
            for session in self.sessions:
                session.quotes.clear()
                session.realtime_bars.clear()
                session.live_histories.clear()
        log.info("fault_market_data_restored", code=code)
        self.send_error(code)

    def lose_next_order(self) -> None:
        """Drop the socket of the next placeOrder before the order reaches the broker: the
        client sent it, and the broker never knows it."""
        self.faults.lose_next_order = True

    def new_trading_day(self) -> None:
        """What IB reports after its daily restart: executions and finished orders of the day
        before are no longer reported (reqExecutions and reqCompletedOrders cover the current
        day); working orders, positions and cash stay, and so do `executions` and
        `broker.orders`, the simulator's history. Clients connected now keep what they were
        told."""
        log.warning("fault_new_trading_day")
        self.broker.start_day()

    def drop_socket_on_next_order(self) -> None:
        """Accept the next placeOrder, then abort its socket before acknowledging it."""
        self.faults.drop_socket_on_next_order = True

    def pacing_violations(self, count: int) -> None:
        """Answer the next `count` historical-data requests with error 162."""
        self.faults.pacing_violations_left = count

    def send_error(self, code: int, message: str = "") -> None:
        """Send error `code` to every client (reqId -1). 10182 goes to each keepUpToDate
        request instead, with its reqId, and ends its live updates, as TWS does."""
        text = message or message_for(code)
        log.warning("fault_error_sent", code=code)
        for session in self._ready_sessions():
            if code == 10182:
                for req_id in list(session.live_histories):
                    session.send_error(req_id, code, text)
                session.live_histories.clear()
            else:
                session.send_error(-1, code, text)


def _received(request: Request, client_id: int, arrived_perf_ns: int) -> OrderReceived:
    return OrderReceived(
        order_id=request.integer("orderId"),
        client_id=client_id,
        order_ref=request.text("orderRef"),
        symbol=request.text("symbol").upper(),
        action=request.text("action").upper(),
        quantity=request.number("totalQuantity"),
        order_type=request.text("orderType").upper(),
        limit_price=_optional_price(request, "lmtPrice"),
        aux_price=_optional_price(request, "auxPrice"),
        received_perf_ns=arrived_perf_ns,
        received_time_ns=time.time_ns() - (time.perf_counter_ns() - arrived_perf_ns),
    )


def _optional_price(request: Request, name: str) -> float | None:
    text = request.text(name)
    return None if text == "" else request.number(name)


def _realtime_bar_fields(req_id: int, start: int, bar: BarBuilder) -> dict[str, object]:
    return {
        "reqId": req_id,
        "time": start,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "wap": bar.wap,
        "count": bar.count,
    }


def _history_update_fields(req_id: int, history: LiveHistory) -> dict[str, object]:
    bar = history.bar
    return {
        "reqId": req_id,
        "barCount": bar.count,
        "date": format_bar_date(bar.start, history.seconds_per_bar, history.format_date),
        "open": bar.open,
        "close": bar.close,
        "high": bar.high,
        "low": bar.low,
        "wap": bar.wap,
        "volume": bar.volume,
    }
