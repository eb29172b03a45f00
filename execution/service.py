"""The execution service: signals in, IB orders out, behind the guard, the kill switch and risk."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import structlog
from ib_async import IB, Trade
from ib_async import Fill as IBFill
from ib_async import OrderStatus as IBOrderStatus
from ib_async import Position as IBPosition

from broker.connection import IBConnection
from config import ExecutionSettings, IBSettings
from event_bus import CONNECTION_ERRORS, Channels, Codec, Event, EventRejected, utc_now
from event_bus.system import ControlCommand
from event_bus.tasks import cancel_and_wait
from execution.decisions import Decisions
from execution.fills import FillDesk
from execution.guard import GuardRefused, port_warning, trading_account
from execution.mapping import (
    TradeFacts,
    contract_for,
    ib_order,
    order_status,
    order_update,
    trade_facts,
)
from execution.model import (
    Fill,
    OrderStatus,
    OrderUpdate,
    PositionSnapshot,
    RiskRejection,
    TradingHalted,
)
from execution.risk import (
    Book,
    OrderRate,
    RealizedPnl,
    RiskLimits,
    Verdict,
    check_risk,
    check_signal,
    loss_limit_hit,
    unrealized_pnl,
)
from execution.state import ExecutionState
from market_data.model import Tick
from strategy.model import TradeSignal

log = structlog.get_logger()

# The order states after which more can happen at the broker (fills, a cancel)
STILL_WORKING: frozenset[OrderStatus] = frozenset({"submitted", "partially_filled"})


class Published(NamedTuple):
    """The last state published of an order."""

    status: OrderStatus
    filled: float
    symbol: str
    order_id: int


class Bus(Protocol):
    channels: Channels
    codec: Codec

    async def publish(self, event: Event) -> None: ...

    async def append_to_journal(self, event: Event) -> None: ...

    async def subscribe(self, pattern: str, handler: Any, *, name: str | None = None) -> Any: ...


class ExecutionService:
    """Turns `TradeSignal`s into IB orders and reports what happens to them.

    Subscribes to `trading:signal:*`, `trading:tick:*` (marks for risk and P&L) and
    `trading:control` (halt / resume). Publishes `OrderUpdate` on `trading:order:{SYMBOL}`,
    `Fill` on `trading:fill:{SYMBOL}`, `RiskRejection` on `trading:system:risk`,
    `TradingHalted` on `trading:system:halt` and `PositionSnapshot` on
    `trading:system:positions`; IB connectivity goes out on `trading:system:connectivity`.

    One signal id, one decision: the id is the order's `orderRef`; before an order is sent the
    id is claimed in `ExecutionState` (Redis SET NX) and the broker's orders and executions
    are searched for it, so no copy of a signal ever makes a second order.
    """

    name = "execution"

    def __init__(
        self,
        settings: ExecutionSettings,
        ib_settings: IBSettings,
        bus: Bus,
        state: ExecutionState,
        *,
        redis_client: Any = None,
        backoff_cap_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.limits = RiskLimits.from_settings(settings)
        self.bus = bus
        self.state = state
        self._redis = redis_client
        self.connection = IBConnection(
            ib_settings,
            bus,
            client="execution",
            client_id=ib_settings.client_id + 1,
            backoff_cap_seconds=backoff_cap_seconds,
        )
        self.ib: IB = self.connection.ib
        self.fills = FillDesk(
            self._emit,
            state,
            commission_wait=settings.commission_wait_seconds,
            on_fill=self._on_fill_published,
        )
        self._lock = asyncio.Lock()  # one signal decided at a time, so risk sees every order
        self._decided = Decisions(self.limits.signal_max_age)  # signal id -> our decision
        self._at_broker: dict[str, str] = {}  # orderRef -> the broker's order or execution
        # id -> every order not done yet, ours or not: ib.openTrades() walks every trade of the
        # session (hundreds of thousands after a busy day) on each signal
        self._working: dict[int, Trade] = {}
        self._our_refs: set[str] = set()  # orderRefs of orders this daemon placed (any process)
        # signal id -> (IB order id, symbol) of each order sent that the broker has not answered
        self._placed: dict[str, tuple[int, str]] = {}
        self._published: dict[str, Published] = {}  # order key -> its last state published
        self._republish_due = False  # asked to publish everything again, not yet done
        self._acknowledged: set[str] = set()  # order keys IB has acknowledged
        self._marks: dict[str, float] = {}  # symbol -> last price (ticks, else fills)
        # symbols with a position (None: not known yet): only their ticks move today's P&L
        self._held: set[str] | None = None
        self._realized = RealizedPnl()
        self._rate = OrderRate()
        self._halt: ControlCommand | None = None
        self._account: str | None = None
        self.refusal: GuardRefused | None = None
        self._synced = False  # reconciled since the last connect
        self._caught_up = False
        self._stopping = False
        self._first_check = asyncio.Event()  # set after the first connection's guard check
        self._refused = asyncio.Event()
        self._outgoing: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._publisher: asyncio.Task[None] | None = None
        self._wire_ib()
        add_listener = getattr(bus, "add_data_loss_listener", None)
        if add_listener is not None:  # the in-memory bus of unit tests loses nothing
            add_listener(self._on_redis_data_lost)

    # Lifecycle

    async def start(self) -> None:
        """Load the kill switch, subscribe, connect; raises `GuardRefused` if IB's accounts
        contradict the trading mode (exit code 3)."""
        self._publisher = asyncio.create_task(self._publish_forever(), name="execution:publish")
        self.fills.start()
        await self._load_halt()
        await self._subscribe()
        warning = port_warning(self.settings.trading_mode, self.connection.settings.port)
        if warning:
            log.warning("trading_mode_port_mismatch", detail=warning)
        self.connection.add_connect_hook(self._on_connect)
        await self.connection.start()
        await self._await_guard()

    async def _await_guard(self) -> None:
        try:
            await asyncio.wait_for(self._first_check.wait(), self.settings.guard_timeout_seconds)
        except TimeoutError:
            log.warning(
                "execution_started_without_broker",
                waited_seconds=self.settings.guard_timeout_seconds,
                detail="orders are refused until IB connects and passes the guard",
            )
            return
        if self.refusal is not None:
            refusal = self.refusal
            await self.stop()
            raise refusal

    async def stop(self) -> None:
        """No new orders; finish the signal in hand and the fills held; disconnect cleanly."""
        self._stopping = True
        timeout = self.settings.broker_sync_timeout_seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async with self._lock:
                    pass
        await self.fills.stop(timeout)
        await self.connection.stop()
        await cancel_and_wait(*self._tasks)
        try:
            await asyncio.wait_for(self._outgoing.join(), timeout)
        except TimeoutError:
            log.error("execution_events_not_published", queued=self._outgoing.qsize())
        if self._publisher is not None:
            await cancel_and_wait(self._publisher)
            self._publisher = None
        await self.state.close()
        log.info("execution_stopped")

    async def wait_refused(self) -> GuardRefused:
        """Returns when a connection made after `start` fails the guard (the process should then
        exit 3); until then waits forever."""
        await self._refused.wait()
        assert self.refusal is not None
        return self.refusal

    def daily_marks(self) -> dict[str, float]:
        """symbol -> the last price seen (ticks, else own fills)."""
        return dict(self._marks)

    @property
    def halted(self) -> bool:
        return self._halt is not None

    def vital_tasks(self) -> list[asyncio.Task[Any]]:
        """Background tasks that must not end while this runs; the daemon watches them."""
        tasks = [self._publisher, self.fills.worker, *self.connection.vital_tasks()]
        return [task for task in tasks if task is not None]

    def status(self) -> dict[str, str]:
        """What `main.py status` shows for execution (through the heartbeat)."""
        positions = " ".join(f"{p.contract.symbol}={p.position:g}" for p in self._positions())
        return {
            "ib": "ready" if self.ready else "connected" if self.connection.connected else "down",
            "halted": "yes" if self.halted else "no",
            "positions": positions or "flat",
            "open_orders": str(len(self.ib.openTrades())),
            "daily_pnl": f"{self.daily_pnl():.2f}",
        }

    @property
    def ready(self) -> bool:
        """Connected, IB's link up, guard passed and broker state reconciled."""
        return self.connection.ready_to_trade and self._synced and self.refusal is None

    # Publishing (one queue, so events leave in the order they were made)

    def _emit(self, event: Event) -> None:
        self._outgoing.put_nowait(event)

    async def _publish_forever(self) -> None:
        while True:
            event = await self._outgoing.get()
            try:
                await self.bus.publish(event)
            except Exception:
                log.exception("execution_publish_failed", event_type=type(event).__name__)
            finally:
                self._outgoing.task_done()

    async def wait_idle(self) -> None:
        """Every queued fill handled and every event handed to the bus (for tests)."""
        await self.fills.wait_idle()
        await self._outgoing.join()

    async def _on_redis_data_lost(self) -> None:
        """Redis came back empty: restate the kill switch, and publish every fill and order
        state again (what storage had not read of the journal went with it)."""
        log.warning("execution_restating_after_redis_data_loss")
        if self._halt is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self.state.set_halt(self.bus.codec.encode(self._halt))
        await self._republish()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Subscriptions

    async def _subscribe(self) -> None:
        channels = self.bus.channels
        await self.bus.subscribe(channels.control, self._on_control, name="execution:control")
        await self.bus.subscribe(
            channels.instrument("tick", "*"), self._on_tick, name="execution:ticks"
        )
        await self.bus.subscribe(
            channels.instrument("signal", "*"), self._on_signal, name="execution:signals"
        )

    async def _on_signal(self, event: Event) -> None:
        if not isinstance(event, TradeSignal):
            log.warning(
                "signal_rejected", reason="not a TradeSignal", event_type=type(event).__name__
            )
            return
        if self._stopping:
            log.info("signal_ignored_while_stopping", signal_id=event.id)
            return
        # A signal sent by a plain PUBLISH is in no journal yet (storage dedupes by id): journal
        # it while the decision is taken, not before, so it costs the order no round trip. The
        # bus skips a signal it published itself (strategy in this process).
        journaled = asyncio.ensure_future(self.bus.append_to_journal(event))
        try:
            await self.handle_signal(event)
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await journaled

    # The decision: one per signal id

    async def handle_signal(self, signal: TradeSignal) -> None:
        """Decide `signal` once: reject it with a reason, or send its one order."""
        if signal.id in self._decided:
            log.info("signal_duplicate", signal_id=signal.id, decision=self._decided[signal.id])
            return
        async with self._lock:
            if signal.id in self._decided or self._stopping:
                return
            self._decided.begin(signal, utc_now())  # the in-flight mark: before any await
            try:
                await self._decide(signal)
            except Exception:
                log.exception("signal_handling_failed", signal_id=signal.id)

    async def _decide(self, signal: TradeSignal) -> None:
        """Check locally, then record the decision with SET NX: the one Redis round trip before
        placeOrder. A claim that fails means another process (or an earlier life of this one)
        decided this id first: a duplicate, never a second order.

        The signal's own checks come first (a malformed or expired signal is claimed as
        rejected). The risk checks against the book run while the claim is on its way to Redis
        (~50 us that Redis, on another CPU, spends answering meanwhile; BENCHMARKS.md); a signal
        they refuse was claimed as placing and its record is overwritten as rejected, before any
        order."""
        known = self._at_broker.get(signal.id)
        if known is not None:
            self._decided[signal.id] = f"found at broker: {known}"
            log.warning("signal_found_at_broker", signal_id=signal.id, detail=known)
            return
        verdict = check_signal(signal, utc_now(), self.limits) or self._gate()
        risk: list[Verdict | None] = []

        def check_the_book() -> None:
            risk.append(check_risk(signal, self._book(), self.limits))

        try:
            if verdict is not None:
                claimed = await self.state.claim(signal.id, "rejected", verdict.rule)
            else:
                claimed = await self.state.claim(signal.id, "placing", meanwhile=check_the_book)
        except CONNECTION_ERRORS as error:  # cannot prove it is new: refuse, fail closed
            unavailable = Verdict("state_unavailable", f"cannot record the decision first: {error}")
            await self._reject(signal, unavailable, save=False)
            return
        if not claimed:
            await self._duplicate(signal.id)
        elif verdict is not None:
            await self._reject(signal, verdict, save=False)
        elif risk[0] is not None:
            await self._reject(signal, risk[0], save=True)
        else:
            await self._place(signal)

    async def _duplicate(self, signal_id: str) -> None:
        earlier = "decided elsewhere"
        with contextlib.suppress(*CONNECTION_ERRORS):
            stored = await self.state.decision(signal_id)
            if stored is not None:
                earlier = str(stored.get("decision"))
        self._decided[signal_id] = earlier
        log.info("signal_duplicate", signal_id=signal_id, decision=earlier)

    def _note_at_broker(self, order_ref: str, description: str) -> None:
        """Index the broker's orders and executions by orderRef (our signal ids), so a signal
        the broker already has is recognised without walking every trade of the session."""
        if order_ref:
            self._at_broker[order_ref] = description

    def _gate(self) -> Verdict | None:
        """Refusals that depend on the daemon's state, not on the signal."""
        if self.refusal is not None:
            return Verdict("guard", str(self.refusal))
        if self._halt is not None:
            return Verdict("halted", f"trading halted: {self._halt.reason or 'kill switch'}")
        if not self.ready:
            return Verdict("not_connected", "IB is not connected and reconciled; not queued")
        return None

    async def _reject(self, signal: TradeSignal, verdict: Verdict, *, save: bool) -> None:
        """Refuse `signal`; with `save`, overwrite its stored decision (already claimed)."""
        self._decided[signal.id] = f"rejected: {verdict.rule}"
        if save:
            try:
                await self.state.overwrite(signal.id, "rejected", verdict.rule)
            except CONNECTION_ERRORS as error:
                log.warning("decision_not_saved", signal_id=signal.id, error=str(error))
        log.info("signal_rejected", signal_id=signal.id, rule=verdict.rule, reason=verdict.reason)
        self._emit(
            RiskRejection(
                signal_id=signal.id, symbol=signal.symbol, rule=verdict.rule, reason=verdict.reason
            )
        )

    async def _place(self, signal: TradeSignal) -> None:
        """Send the order of a claimed signal, unless the world changed during the claim."""
        verdict = self._gate()
        if verdict is not None:
            await self._reject(signal, verdict, save=True)
        elif self.settings.dry_run:
            await self._dry_run(signal)
        else:
            await self._send(signal)

    async def _send(self, signal: TradeSignal) -> None:
        assert self._account is not None
        order = ib_order(signal, self._account)
        try:
            trade = self.ib.placeOrder(contract_for(signal.symbol), order)
        except ConnectionError as error:  # raised before anything was written to the socket
            await self._reject(signal, Verdict("not_connected", str(error)), save=True)
            return
        self._rate.record(time.monotonic())
        self._decided[signal.id] = "placed"
        self._our_refs.add(signal.id)  # known as ours after its decision is forgotten
        self._placed[signal.id] = (trade.order.orderId, signal.symbol)
        log.info(
            "order_placed",
            signal_id=signal.id,
            order_id=trade.order.orderId,
            symbol=signal.symbol,
            action=signal.action,
            quantity=signal.quantity,
            order_type=signal.order_type,
        )
        self._on_trade(trade)
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.state.overwrite(signal.id, "placing", f"order_id={trade.order.orderId}")

    async def _dry_run(self, signal: TradeSignal) -> None:
        self._rate.record(time.monotonic())
        self._decided[signal.id] = "dry_run"
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.state.overwrite(signal.id, "dry_run")
        log.info("order_not_sent_dry_run", signal_id=signal.id, symbol=signal.symbol)
        self._emit(
            OrderUpdate(
                symbol=signal.symbol,
                signal_id=signal.id,
                status="inactive",
                action=signal.action,
                quantity=signal.quantity,
                order_type=signal.order_type,
                limit_price=signal.limit_price,
                remaining=signal.quantity,
                account=self._account or "",
                reason="DRY_RUN: not sent to IB",
            )
        )

    # Risk inputs

    def _positions(self) -> list[IBPosition]:
        return [p for p in self.ib.positions(self._account or "") if p.position]

    def _book(self) -> Book:
        positions = self._positions()
        open_buys: dict[str, float] = {}
        open_sells: dict[str, float] = {}
        working_notional = 0.0
        for trade in self._working_trades():
            symbol, remaining = trade.contract.symbol, trade.remaining()
            side = open_buys if trade.order.action == "BUY" else open_sells
            side[symbol] = side.get(symbol, 0.0) + remaining
            working_notional += remaining * self._working_price(trade)
        gross = sum(abs(p.position) * self._mark(p) for p in positions) + working_notional
        last_second, last_minute = self._rate.counts(time.monotonic())
        return Book(
            positions={p.contract.symbol: p.position for p in positions},
            marks=MappingProxyType(self._marks),  # read before the next await
            open_buys=open_buys,
            open_sells=open_sells,
            gross_exposure=gross,
            daily_pnl=self.daily_pnl(),
            orders_last_second=last_second,
            orders_last_minute=last_minute,
        )

    def _working_trades(self) -> list[Trade]:
        """The orders not done yet (those done since the last call are forgotten here)."""
        for key, trade in list(self._working.items()):
            if trade.orderStatus.status in IBOrderStatus.DoneStates:
                del self._working[key]
        return list(self._working.values())

    def _mark(self, position: IBPosition) -> float:
        return self._marks.get(position.contract.symbol, position.avgCost)

    def _working_price(self, trade: Trade) -> float:
        limit = trade.order.lmtPrice
        if limit and 0 < limit < 1e300:
            return float(limit)
        return self._marks.get(trade.contract.symbol, 0.0)

    def daily_pnl(self) -> float:
        """Today's realized P&L (IB's, per execution) plus unrealized P&L at the last marks."""
        today = datetime.now(UTC).date()
        realized = self._realized.on(today)
        positions = self._positions()
        self._held = {p.contract.symbol for p in positions}
        unrealized = sum(
            unrealized_pnl(p.position, p.avgCost, self._marks.get(p.contract.symbol))
            for p in positions
        )
        return realized + unrealized

    async def _on_tick(self, event: Event) -> None:
        if not isinstance(event, Tick):
            return
        price = event.last
        if price is None and event.bid is not None and event.ask is not None:
            price = (event.bid + event.ask) / 2
        if price is not None:
            self._marks[event.symbol] = price
            if self._held is None or event.symbol in self._held:
                await self._check_loss_limit()

    def _on_fill_published(self, fill: Fill) -> None:
        self._marks.setdefault(fill.symbol, fill.price)
        if fill.realized_pnl is not None:
            self._realized.record(fill.execution_id, fill.executed_at.date(), fill.realized_pnl)
        self._spawn(self._check_loss_limit(), "execution:loss-check")

    async def _check_loss_limit(self) -> None:
        if self._halt is None and self._account and loss_limit_hit(self.daily_pnl(), self.limits):
            pnl = round(self.daily_pnl(), 2)
            log.error("daily_loss_limit_hit", daily_pnl=pnl, limit=self.limits.daily_loss_limit)
            reason = f"daily loss limit hit: P&L {pnl} <= -{self.limits.daily_loss_limit:g}"
            await self._apply_halt(ControlCommand(command="halt", reason=reason, issued_by="risk"))

    # Kill switch

    async def _load_halt(self) -> None:
        try:
            payload = await self.state.halt()
        except CONNECTION_ERRORS as error:
            reason = f"halt state unreadable ({error}); halted to be safe"
            self._halt = ControlCommand(command="halt", reason=reason, issued_by="execution")
            log.error("halt_state_unavailable", error=str(error))
            return
        if payload is None:
            return
        try:
            command = self.bus.codec.decode(payload)
        except EventRejected as rejected:
            command = ControlCommand(
                command="halt", reason=f"unreadable halt key: {rejected.reason}", issued_by="?"
            )
        if not isinstance(command, ControlCommand) or command.command != "halt":
            command = ControlCommand(command="halt", reason="unexpected halt key", issued_by="?")
        self._halt = command
        log.warning("trading_halted_at_start", reason=command.reason, issued_by=command.issued_by)
        self._emit(TradingHalted(halted=True, reason=command.reason, issued_by=command.issued_by))

    async def _on_control(self, event: Event) -> None:
        if not isinstance(event, ControlCommand):
            log.warning("control_rejected", reason="not a ControlCommand", event_id=event.id)
            return
        log.info(
            "control_received",
            command=event.command,
            reason=event.reason,
            issued_by=event.issued_by,
        )
        if event.command == "halt":
            await self._apply_halt(event)
        elif event.command == "resume":
            await self._resume(event)
        else:
            await self._republish()

    async def _republish(self) -> None:
        """Publish every order state and fill the broker reports again, whatever was published
        before: Redis lost its data, or storage found the journal dropped events it had not
        stored (it keeps one row per fill and the latest state of each order). Done now if
        reconciled with the broker, else by the reconciliation under way or the next one."""
        self._republish_due = True
        ready = self.connection.connected and self._synced and not self._stopping
        if ready and await self._sync_broker(self.ib):
            self._prepare_republish(self.ib)
            self._reconcile(self.ib)

    def _prepare_republish(self, ib: IB) -> None:
        self._republish_due = False
        self._published.clear()
        self.fills.republish({fill.execution.execId for fill in ib.fills()})
        log.warning("execution_republishing", orders=len(ib.trades()), fills=len(ib.fills()))

    async def _apply_halt(self, command: ControlCommand) -> None:
        changed = self._halt is None
        self._halt = command
        try:
            await self.state.set_halt(self.bus.codec.encode(command))
        except CONNECTION_ERRORS as error:
            log.error("halt_not_saved", error=str(error))
        self._cancel_working_orders()
        if changed:
            self._emit(
                TradingHalted(halted=True, reason=command.reason, issued_by=command.issued_by)
            )

    async def _resume(self, command: ControlCommand) -> None:
        changed = self._halt is not None
        self._halt = None
        try:
            await self.state.set_halt(None)
        except CONNECTION_ERRORS as error:
            log.error("resume_not_saved", error=str(error))
        if changed:
            self._emit(
                TradingHalted(halted=False, reason=command.reason, issued_by=command.issued_by)
            )

    def _cancel_working_orders(self) -> None:
        """Cancel every working order this daemon placed; external orders are not touched."""
        if not self.connection.connected:
            return
        for trade in self.ib.openTrades():
            facts = trade_facts(trade)
            if self._is_ours(facts) and facts.client_id == self.connection.client_id:
                log.warning(
                    "order_cancel_requested", order_id=facts.order_id, signal_id=facts.order_ref
                )
                self.ib.cancelOrder(trade.order)

    # Order lifecycle (ib_async callbacks: plain functions that copy and emit)

    def _wire_ib(self) -> None:
        self.ib.orderStatusEvent += self._on_trade
        self.ib.openOrderEvent += self._on_trade
        self.ib.execDetailsEvent += self._on_execution
        self.ib.commissionReportEvent += self._on_commission
        self.ib.positionEvent += self._on_position
        self.ib.disconnectedEvent += self._on_disconnected

    def _is_ours(self, facts: TradeFacts) -> bool:
        """Placed by this daemon: our clientId with an orderRef, or an orderRef known as ours."""
        if not facts.order_ref:
            return False
        if facts.client_id == self.connection.client_id:
            return True
        return facts.order_ref in self._our_refs or facts.order_ref in self._decided

    def _on_trade(self, trade: Trade) -> str:
        """Publish the order's state if it changed; its key (for reconciliation)."""
        self._working[id(trade)] = trade  # dropped once done, when the book is next built
        facts = trade_facts(trade)
        self._note_at_broker(facts.order_ref, f"order {facts.order_id} {facts.ib_status}")
        key = facts.order_ref if self._is_ours(facts) else f"external:{facts.perm_id or facts.key}"
        status = order_status(
            facts.ib_status, facts.filled, facts.error_code, key in self._acknowledged
        )
        if status not in (None, "pending_submit"):
            # The broker answered for it: its fate is no longer in doubt, even once the broker
            # stops reporting it (a finished order, after the daily restart)
            self._placed.pop(facts.order_ref, None)
        last = self._published.get(key)
        if status is None or (
            last is not None and (last.status, last.filled) == (status, facts.filled)
        ):
            return key
        if status not in ("pending_submit", "rejected"):
            self._acknowledged.add(key)
        self._published[key] = Published(status, facts.filled, facts.symbol, facts.order_id)
        external = key.startswith("external:")
        log.info(
            "order_update",
            signal_id=facts.order_ref,
            order_id=facts.order_id,
            status=status,
            filled=facts.filled,
            external=external,
        )
        self._emit(order_update(facts, status, external=external))
        return key

    def _on_execution(self, trade: Trade, fill: IBFill) -> None:
        self._take_fill(fill)

    def _take_fill(self, fill: IBFill) -> None:
        self._note_at_broker(fill.execution.orderRef, f"execution {fill.execution.execId}")
        self.fills.submit(fill)

    def _on_commission(self, trade: Trade, fill: IBFill, report: Any) -> None:
        self.fills.submit(fill)

    def _on_position(self, position: IBPosition) -> None:
        self._held = None  # known again at the next check
        self._publish_positions(position.account)

    def _on_disconnected(self) -> None:
        self._synced = False
        self._held = None
        self._working.clear()  # ib_async forgets its trades; reconciliation brings them back

    def _publish_positions(self, account: str) -> None:
        held = [p for p in self.ib.positions(account)]
        self._emit(
            PositionSnapshot(
                account=account,
                positions={p.contract.symbol: float(p.position) for p in held if p.position},
                average_costs={p.contract.symbol: float(p.avgCost) for p in held if p.position},
            )
        )

    # Reconciliation, at every (re)connection

    async def _on_connect(self, ib: IB) -> None:
        self._synced = False
        try:
            if not self._passes_guard(ib):
                return
            if not await self._sync_broker(ib):
                return
            await self._learn_our_refs(ib)
            if self._republish_due:
                self._prepare_republish(ib)
            self._reconcile(ib)
            self._synced = True
            log.info("execution_reconciled", account=self._account, halted=self.halted)
            if self._republish_due:  # asked while this reconciliation was under way
                self._spawn(self._republish(), "execution:republish")
        finally:
            self._first_check.set()
        if not self._caught_up:
            self._caught_up = True
            self._spawn(self._catch_up(), "execution:catch-up")

    def _passes_guard(self, ib: IB) -> bool:
        accounts = ib.managedAccounts()
        try:
            self._account = trading_account(
                self.settings.trading_mode, self.settings.live_account, accounts
            )
        except GuardRefused as refusal:
            self._account = None
            self.refusal = refusal
            self._refused.set()
            log.critical("guard_refused", accounts=accounts, reason=str(refusal))
            self._emit(TradingHalted(halted=True, reason=str(refusal), issued_by="guard"))
            return False
        log.info("guard_passed", mode=self.settings.trading_mode, account=self._account)
        return True

    async def _sync_broker(self, ib: IB) -> bool:
        """Ask the broker for every order, today's executions and the positions again:
        ib_async's own start-up requests only log a timeout, which must not pass silently."""
        timeout = self.settings.broker_sync_timeout_seconds
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    ib.reqAllOpenOrdersAsync(),
                    ib.reqCompletedOrdersAsync(False),
                    ib.reqPositionsAsync(),
                ),
                timeout,
            )
            await asyncio.wait_for(ib.reqExecutionsAsync(), timeout)  # after the orders are in
        except (TimeoutError, ConnectionError) as error:
            log.error("broker_sync_failed", error=str(error) or type(error).__name__)
            if ib.isConnected():
                ib.disconnect()  # reconnect and try again: never trade on a partial picture
            return False
        return True

    async def _learn_our_refs(self, ib: IB) -> None:
        """Which broker orders are ours: completed orders carry no clientId, so an orderRef is
        ours if one of its executions has our clientId or our state recorded a decision for it."""
        own = self.connection.client_id
        refs = {t.order.orderRef for t in ib.trades() if t.order.clientId == own}
        refs |= {f.execution.orderRef for f in ib.fills() if f.execution.clientId == own}
        unknown = {t.order.orderRef for t in ib.trades()} - refs - self._our_refs - {""}
        for ref in unknown:
            with contextlib.suppress(*CONNECTION_ERRORS):
                if await self.state.decision(ref) is not None:
                    refs.add(ref)
        self._our_refs |= refs - {""}

    def _reconcile(self, ib: IB) -> None:
        keys = {self._on_trade(trade) for trade in ib.trades()}
        self._forget_unreported(ib, keys)
        self._report_in_doubt(ib)
        for fill in ib.fills():
            self._take_fill(fill)
        for account in ib.managedAccounts():
            self._publish_positions(account)
        if self._halt is not None:
            self._cancel_working_orders()

    def _forget_unreported(self, ib: IB, keys: set[str]) -> None:
        """Shrink what is kept per order and per execution to what the broker reports on this
        connection (after IB's daily restart: today's orders and executions; `keys`: its orders'
        keys). Nothing the broker no longer reports can change or be reported again, so nothing
        is looked up for it; and a daemon running for weeks does not grow by every order it saw.
        An order of ours last seen working is reported first: see `_report_unreported`."""
        trades, fills = ib.trades(), ib.fills()
        refs = {t.order.orderRef for t in trades} | {f.execution.orderRef for f in fills}
        self._at_broker = {ref: seen for ref, seen in self._at_broker.items() if ref in refs}
        self._our_refs &= refs
        for key, last in self._published.items():
            if key not in keys and last.status in STILL_WORKING and not key.startswith("external:"):
                self._report_unreported(key, last)
        self._published = {key: last for key, last in self._published.items() if key in keys}
        self._acknowledged &= keys
        self.fills.forget_all_but({fill.execution.execId for fill in fills})

    def _report_unreported(self, signal_id: str, last: Published) -> None:
        """An order of ours was working when the connection dropped, and the broker no longer
        reports it at all: it finished while the daemon was away and IB's day turned before it
        came back (its daily restart), so IB reports neither the order nor its executions.
        Whether it filled is not known here; the operator is told, as for an order in doubt."""
        log.error(
            "order_no_longer_reported",
            signal_id=signal_id,
            order_id=last.order_id,
            last_status=last.status,
            filled=last.filled,
        )
        self._emit(
            RiskRejection(
                signal_id=signal_id,
                symbol=last.symbol,
                rule="in_doubt",
                reason=f"order {last.order_id} was {last.status} ({last.filled:g} filled) when "
                "the connection dropped, and IB's day turned before it came back: IB no longer "
                "reports the order or its executions, so fills since are not known: check TWS",
            )
        )

    def _report_in_doubt(self, ib: IB) -> None:
        """Orders sent by this process that the broker does not know after a reconnect."""
        known = {trade.order.orderRef for trade in ib.trades()}
        for signal_id, (order_id, symbol) in list(self._placed.items()):
            if signal_id in known:
                continue
            del self._placed[signal_id]
            log.error("order_in_doubt", signal_id=signal_id, order_id=order_id)
            self._emit(
                RiskRejection(
                    signal_id=signal_id,
                    symbol=symbol,
                    rule="in_doubt",
                    reason=f"order {order_id} was sent, the connection dropped and IB does not "
                    "know it; not sent again: check TWS",
                )
            )

    async def _catch_up(self) -> None:
        """Decide signals published while execution was down, from the journal (deduplicated)."""
        if self._redis is None:
            return
        since_ms = int((time.time() - self.settings.signal_max_age_seconds) * 1000)
        try:
            entries = await self._redis.xrange(self.bus.channels.journal, min=f"{since_ms}-0")
        except CONNECTION_ERRORS as error:
            log.warning("signal_catch_up_failed", error=str(error))
            return
        signals = [s for s in map(self._journal_signal, entries) if s is not None]
        log.info("signal_catch_up", candidates=len(signals))
        for signal in signals:
            if not self._stopping:
                await self.handle_signal(signal)

    def _journal_signal(self, entry: Any) -> TradeSignal | None:
        _, fields = entry
        channel = fields.get(b"channel", b"").decode()
        if not channel.startswith(self.bus.channels.instrument("signal", "")):
            return None
        try:
            event = self.bus.codec.decode(fields.get(b"event", b""))
        except EventRejected:
            return None
        return event if isinstance(event, TradeSignal) else None
