"""A drill: the simulator (in this process), a Redis server, SQLite and the daemon as processes.

The daemon runs as two processes, as the README's "running modules apart" allows: `trader`
(market_data, strategy, execution) and `storage`, so a drill can hold storage back (SIGSTOP)
to make the journal hold what storage has not read yet when Redis loses its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis
import structlog

from drills import invariants
from drills.invariants import Check
from drills.monitor import BusWatcher, MemorySampler
from drills.services import DaemonProcess, DrillRedis, run_command
from event_bus import CONNECTION_ERRORS, Channels
from ibsim import SimConfig, Simulator
from storage.queries import positions, risk_rejections, todays_fills, todays_orders

log = structlog.get_logger()

TRADER_MODULES = ("market_data", "strategy", "execution")
MARKET_DATA_CLIENT_ID = 1
CRASH_MARKERS = (
    "_crashed",
    "fatal_error",
    "signal_handling_failed",
    "fill_handling_failed",
    "execution_publish_failed",
    "module_restarted",
    "module_restart_failed",
    "bus_failed",
    "daemon_stopped_on_failure",
    "Task exception was never retrieved",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillConfig:
    """How big and how harsh a drill is, and the bounds its invariants are held to."""

    workdir: Path
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "SPY")
    synthetic_symbols: int = 0
    speed: float = 4.0
    max_fill_size: float = 3.0
    order_quantity: int = 10
    signal_interval_seconds: float = 0.5
    gateway_restart_seconds: float = 30.0
    outage_seconds: float = 2.0
    malformed_count: int = 10_000
    recovery_bound_seconds: float = 30.0
    memory_bound_mb: float = 400.0
    ready_timeout_seconds: float = 60.0
    settle_timeout_seconds: float = 60.0


@dataclass(slots=True)
class Figures:
    """What a drill measured, besides the invariants' pass/fail."""

    recoveries: dict[str, float | None] = field(default_factory=dict)  # fault -> seconds
    faults: list[str] = field(default_factory=list)
    malformed_sent: int = 0
    malformed_deliveries: int = 0
    malformed_counted: int = 0
    signals_sent: int = 0
    broker_positions_at_end: dict[str, float] = field(default_factory=dict)
    execution_positions_at_end: dict[str, float] = field(default_factory=dict)
    stop_exit_codes: dict[str, int | None] = field(default_factory=dict)


class Drill:
    """Sets the stage, injects faults (see `drills.faults`), and checks the invariants."""

    def __init__(self, config: DrillConfig) -> None:
        self.config = config
        self.channels = Channels(f"drill-{uuid.uuid4().hex[:8]}")
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite:///{config.workdir / 'drill.db'}"
        redis_directory = config.workdir / "redis"
        redis_directory.mkdir(exist_ok=True)
        self.redis = DrillRedis(redis_directory)
        self.sim = Simulator(
            SimConfig(
                port=0,
                speed=config.speed,
                symbols=config.symbols,
                synthetic_symbols=config.synthetic_symbols,
                max_fill_size=config.max_fill_size,
            )
        )
        self.symbols = tuple(self.sim.config.universe())
        self.figures = Figures()
        self.watcher = BusWatcher(self.redis.url, self.channels)
        self.memory = MemorySampler()
        self.trader: DaemonProcess
        self.storage: DaemonProcess
        self._signal_number = 0
        self._trading: asyncio.Task[None] | None = None

    # The stage

    async def __aenter__(self) -> Drill:
        await self.redis.start()
        await self.sim.start()
        settings = self._settings()
        self.trader = DaemonProcess("trader", TRADER_MODULES, settings, self.config.workdir)
        self.storage = DaemonProcess("storage", ("storage",), settings, self.config.workdir)
        await self.watcher.start()
        await self.storage.start()
        await self.trader.start()
        self.memory.start({"trader": self.trader, "storage": self.storage})
        await self.wait_ready(self.config.ready_timeout_seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop_trading()
        for process in (self.trader, self.storage):
            with contextlib.suppress(Exception):
                process.resume()
                await process.stop()
        await self.memory.stop()
        await self.watcher.stop()
        await self.sim.stop()
        await self.redis.stop()

    def _settings(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis.url,
            "CHANNEL_PREFIX": self.channels.prefix,
            "IB_PORT": str(self.sim.port),
            "IB_CLIENT_ID": str(MARKET_DATA_CLIENT_ID),
            "DATABASE_URL": self.database_url,
            "SYMBOLS": ",".join(self.symbols),
            "BAR_SECONDS": "5",
            "STRATEGY": "sma_crossover",
            "STRATEGY_PARAMS": json.dumps({"fast_window": 3, "slow_window": 8}),
            "LOG_LEVEL": "INFO",
            "DAILY_LOSS_LIMIT": "1000000000",
            "MAX_GROSS_EXPOSURE": "1000000000",
            "MAX_ORDER_NOTIONAL": "1000000000",
            "MAX_ORDERS_PER_SECOND": "100",
            "MAX_ORDERS_PER_MINUTE": "10000",
            "MAX_POSITION_PER_SYMBOL": "100000",
        }

    async def wait_ready(self, timeout: float) -> None:
        """Execution ready at the broker, storage alive, and every symbol ticking."""
        since = time.monotonic()

        def ready() -> bool:
            execution = self.watcher.detail("execution")
            return (
                execution.get("ib") == "ready"
                and "storage" in self.watcher.heartbeats
                and self.watcher.ticking_since(since, self.symbols)
            )

        await wait_for(ready, timeout, "the daemon ready and every symbol ticking")

    # Trading load: manual signals with ids of our own, BUY then SELL per symbol

    async def signal(self, symbol: str, action: str) -> str:
        """Publish one MKT signal with a fresh id, as `redis-cli PUBLISH` would; its id."""
        self._signal_number += 1
        signal_id = f"{self.channels.prefix}-{self._signal_number}"
        payload = {
            "type": "TradeSignal",
            "id": signal_id,
            "symbol": symbol,
            "action": action,
            "quantity": self.config.order_quantity,
            "order_type": "MKT",
            "strategy": "drill",
        }
        client = aioredis.Redis.from_url(self.redis.url, socket_connect_timeout=1.0)
        try:
            await client.publish(self.channels.instrument("signal", symbol), json.dumps(payload))
            self.figures.signals_sent += 1
        except CONNECTION_ERRORS:
            pass  # Redis is down in this very moment: the signal is simply not sent
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await client.aclose()
        return signal_id

    async def burst(self, count: int) -> list[str]:
        """`count` signals over the symbols at once: orders in flight for the next fault."""
        ids = []
        for index in range(count):
            symbol = self.symbols[index % len(self.symbols)]
            ids.append(await self.signal(symbol, self._next_action(symbol)))
        return ids

    def _next_action(self, symbol: str) -> str:
        held = self.sim.positions().get(symbol, 0.0)
        return "SELL" if held > 0 else "BUY"

    def start_trading(self) -> None:
        self._trading = asyncio.create_task(self._trade_forever(), name="drill:trading")

    async def stop_trading(self) -> None:
        if self._trading is not None:
            self._trading.cancel()
            await asyncio.gather(self._trading, return_exceptions=True)
            self._trading = None

    async def _trade_forever(self) -> None:
        index = 0
        while True:
            symbol = self.symbols[index % len(self.symbols)]
            await self.signal(symbol, self._next_action(symbol))
            index += 1
            await asyncio.sleep(self.config.signal_interval_seconds)

    # Measuring a fault's recovery

    def md_sessions(self) -> set[object]:
        """The simulator's sessions of the market data client (the objects themselves: holding
        them keeps a new session from reusing an old one's identity)."""
        return {s for s in self.sim.sessions if s.client_id == MARKET_DATA_CLIENT_ID}

    async def record_recovery(
        self, name: str, restored_at: float, *, old_sessions: set[object] | None = None
    ) -> None:
        """Wait until every symbol has ticked again after `restored_at` (and, if the sockets
        were dropped, on a new connection of market data); record the seconds that took, or
        None when it took longer than the bound."""
        deadline = restored_at + self.config.recovery_bound_seconds
        since = restored_at
        while time.monotonic() < deadline:
            if old_sessions is not None and not (self.md_sessions() - old_sessions):
                since = time.monotonic()  # still the old connection: its ticks do not count
            elif self.watcher.ticking_since(since, self.symbols):
                self._record(name, time.monotonic() - restored_at)
                return
            await asyncio.sleep(0.05)
        self._record(name, None)

    def _record(self, name: str, seconds: float | None) -> None:
        key = name
        number = 2
        while key in self.figures.recoveries:
            key, number = f"{name} #{number}", number + 1
        self.figures.recoveries[key] = seconds
        self.figures.faults.append(key)
        log.info("drill_fault_recovered", fault=key, seconds=seconds)

    async def wait_execution_ready(self, timeout: float) -> None:
        await wait_for(
            lambda: self.watcher.detail("execution").get("ib") == "ready",
            timeout,
            "execution ready again",
        )

    # The end: settle, then check

    async def settle(self) -> None:
        """Stop the load: the drill's signals, then the strategy's with the kill switch (working
        orders cancelled, new signals refused); wait (bounded) until the broker has no working
        order and the database has every execution; then note the positions execution reports
        and stop the daemon."""
        await self.stop_trading()
        await self.halt("the drill settles")
        timeout = self.config.settle_timeout_seconds
        with contextlib.suppress(TimeoutError):
            await wait_for(
                lambda: self.watcher.detail("execution").get("halted") == "yes",
                timeout,
                "execution halted",
            )

        def settled() -> bool:
            return not self.sim.broker.active_orders() and self.executions_stored()

        with contextlib.suppress(TimeoutError):
            await wait_for(settled, timeout, "settled")
        with contextlib.suppress(TimeoutError):
            await wait_for(self._heartbeat_positions_current, 15.0, "positions reported")
        self.figures.execution_positions_at_end = parse_positions(
            self.watcher.detail("execution").get("positions", "")
        )
        self.figures.broker_positions_at_end = self.sim.positions()
        for process in (self.trader, self.storage):
            process.check_alive()
            self.figures.stop_exit_codes[process.name] = await process.stop()

    async def halt(self, reason: str) -> None:
        """The kill switch, as an operator pulls it: `main.py halt`."""
        settings, workdir = self._settings(), self.config.workdir
        code = await run_command(settings, workdir, "halt", "--reason", reason)
        if code != 0:
            log.warning("drill_halt_failed", exit_code=code)

    def executions_stored(self) -> bool:
        """Every execution the broker has made so far is a row in the database."""
        stored = {fill.execution_id for fill in todays_fills(self.database_url)}
        return {e.exec_id for e in self.sim.executions} <= stored

    def _heartbeat_positions_current(self) -> bool:
        reported = parse_positions(self.watcher.detail("execution").get("positions", ""))
        return reported == self.sim.positions()

    def checks(self) -> list[Check]:
        fills = todays_fills(self.database_url)
        orders = todays_orders(self.database_url)
        stored_positions = {p.symbol: p.quantity for p in positions(self.database_url)}
        sim_orders = [
            (order.order_ref, order.status, order.filled)
            for order in self.sim.broker.orders.values()
            if order.order_ref
        ]
        unexpected = {
            process.name: process.unexpected_exits + _bad_stop(self.figures, process.name)
            for process in (self.trader, self.storage)
        }
        crash_lines = [
            line[:300]
            for process in (self.trader, self.storage)
            for line in process.log_lines()
            if any(marker in line for marker in CRASH_MARKERS)
        ]
        return [
            invariants.fills_exactly_once(self.sim.executions, fills),
            invariants.one_order_per_signal(self.sim.orders_received),
            invariants.order_states_match(sim_orders, orders),
            invariants.in_doubt_only_if_unknown(
                (ref for ref, _, _ in sim_orders),
                [r.signal_id for r in risk_rejections(self.database_url, rule="in_doubt")],
            ),
            invariants.positions_match(
                self.figures.broker_positions_at_end, "fills table", stored_positions
            ),
            invariants.positions_match(
                self.figures.broker_positions_at_end,
                "execution",
                self.figures.execution_positions_at_end,
            ),
            invariants.market_data_resumed(
                self.figures.recoveries, self.config.recovery_bound_seconds
            ),
            invariants.memory_bounded(self.memory.peak, self.config.memory_bound_mb),
            invariants.malformed_counted(
                self.figures.malformed_sent,
                self.figures.malformed_deliveries,
                self.figures.malformed_counted,
            ),
            invariants.nothing_crashed(unexpected, crash_lines),
        ]

    def summary(self) -> dict[str, str]:
        """Figures beside the invariants, for the soak's table."""
        recoveries = ", ".join(
            f"{name} {seconds:.1f}s" if seconds is not None else f"{name} never"
            for name, seconds in self.figures.recoveries.items()
        )
        memory = ", ".join(
            f"{name} {self.memory.first.get(name, 0) / 2**20:.0f} -> "
            f"{self.memory.last.get(name, 0) / 2**20:.0f} MB (peak {peak / 2**20:.0f})"
            for name, peak in sorted(self.memory.peak.items())
        )
        return {
            "symbols": str(len(self.symbols)),
            "signals sent": str(self.figures.signals_sent),
            "orders at the broker": str(len(self.sim.broker.orders)),
            "executions": str(len(self.sim.executions)),
            "ticks sent by the broker": str(self.sim.ticks_sent),
            "ticks seen on the bus": str(self.watcher.ticks_received),
            "faults": str(len(self.figures.faults)),
            "recovery per fault": recoveries,
            "memory (first -> last)": memory,
            "daemon starts": f"trader {self.trader.starts}, storage {self.storage.starts}",
            "stop exit codes": str(self.figures.stop_exit_codes),
        }


def _bad_stop(figures: Figures, name: str) -> list[int]:
    code = figures.stop_exit_codes.get(name, 0)
    return [] if code == 0 else [-1 if code is None else code]


def parse_positions(text: str) -> dict[str, float]:
    """`AAPL=10 MSFT=-5` (execution's heartbeat) -> {"AAPL": 10.0, "MSFT": -5.0}; "flat" -> {}."""
    held = {}
    for part in text.split():
        symbol, _, quantity = part.partition("=")
        if quantity:
            held[symbol] = float(quantity)
    return held


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    """Wait until `condition()` holds, at most `timeout` seconds; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.05)
