"""The composition root and command line: builds the modules from settings and runs them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

import event_bus.system  # noqa: F401  (registers the system events with the codec)
from config import (
    BusSettings,
    LogSettings,
    MetricsSettings,
    Settings,
    SettingsError,
    load_settings,
    masked_url,
)
from event_bus import (
    CONNECTION_ERRORS,
    Channels,
    Codec,
    Event,
    EventRejected,
    RedisEventBus,
    connect_redis,
    utc_now,
)
from event_bus.embedded import EmbeddedRedis, redis_answers
from event_bus.health import HeartbeatPublisher, read_heartbeats
from event_bus.metrics import DaemonMetrics
from event_bus.system import ControlCommand, Heartbeat
from event_bus.tasks import cancel_and_wait
from execution import build_execution
from execution.guard import GuardRefused, check_live_account
from ibsim import SimConfig, Simulator
from ibsim import cli as ibsim_cli
from market_data.instruments import instruments_from_settings
from market_data.model import Bar
from market_data.service import MarketDataService, build_market_data
from storage.migrate import upgrade_database
from storage.queries import load_bars, realized_pnl, stored_accounts
from storage.service import build_storage
from strategy.replay import configure_parser as configure_replay
from strategy.replay import run_replay
from strategy.runner import build_runner

log = structlog.get_logger()

EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_GUARD = 0, 1, 2, 3

_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)


# Logging


def _redact_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask the password of any URL in any string field, whoever logged it."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = _URL_PASSWORD.sub(r"\1***@", value)
    return event_dict


def configure_logging(settings: LogSettings, stream: Any = None) -> None:
    """structlog for our code and stdlib logging (ib_async, redis) through one renderer."""
    stream = stream or sys.stderr
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _redact_secrets,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # a line below LOG_LEVEL costs next to nothing
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _identity,
            _redact_secrets,
            _redacted(renderer),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # ib_async's wrapper logs every position and portfolio update at INFO: noise in a daemon
    # that publishes them as events. Its warnings and errors still come through.
    quiet = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    logging.getLogger("ib_async.wrapper").setLevel(quiet)


def _identity(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event_dict


def _redacted(renderer: Callable[..., str]) -> Callable[..., str]:
    """The renderer, then masking again over the whole line: tracebacks, nested values, reprs."""

    def render(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        return _URL_PASSWORD.sub(r"\1***@", renderer(logger, method_name, event_dict))

    return render


# Building blocks


def build_bus(settings: BusSettings) -> RedisEventBus:
    return RedisEventBus.from_url(
        settings.redis_url.get_secret_value(),
        timeout=settings.redis_timeout_seconds,
        channels=Channels(settings.channel_prefix),
        journal_maxlen=settings.journal_maxlen,
        outbox_capacity=settings.bus_outbox_capacity,
        queue_size=settings.bus_queue_size,
        reconnect_cap_seconds=settings.bus_reconnect_cap_seconds,
        linger_seconds=settings.bus_linger_ms / 1000,
    )


class Module(Protocol):
    """What `run` starts and stops: one package's long-lived component."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# Start order: consumers before producers, so nothing produced is missed; stop in reverse.
MODULE_NAMES = ("storage", "execution", "strategy", "market_data")
MODULE_STOP_SECONDS = 15.0


def build_module(name: str, settings: Settings, bus: RedisEventBus) -> Module:
    """The one place each module is built from its own settings section."""
    if name == "storage":
        return build_storage(settings.storage, bus.redis, bus.channels, bus.publish)
    if name == "execution":
        execution = settings.execution
        if "allowed_symbols" not in execution.model_fields_set:
            # By default trade exactly what market data publishes.
            execution = execution.model_copy(update={"allowed_symbols": instrument_names(settings)})
        return build_execution(execution, settings.ib, bus)
    if name == "strategy":
        return build_runner(settings.strategy, instrument_names(settings), bus)
    if name == "market_data":
        return build_market_data(settings.market_data, settings.ib, bus)
    raise ValueError(f"unknown module {name!r}")


def instrument_names(settings: Settings) -> tuple[str, ...]:
    """What market data publishes under: SYMBOLS and the bus names of INSTRUMENTS."""
    return tuple(instrument.name for instrument in instruments_from_settings(settings.market_data))


def freeze_start_up() -> None:
    """Collect start-up's garbage, then exempt what remains from garbage collection.

    What start-up made (imported code, settings, the modules and their connections) lives as
    long as the process, yet every full collection walked it again: at 20,000 ticks/s such a
    pause held orders for up to 106 ms (BENCHMARKS.md). Frozen objects are never collected, so
    this runs once, after the modules have started, not on every restart of one.
    """
    gc.collect()
    gc.freeze()


async def freeze_once_subscribed(daemon: Daemon, timeout: float = 300.0) -> None:
    """`freeze_start_up` again once market data has made its first requests.

    ib_async makes a ticker, a bar list and their events per instrument when they are requested,
    after start-up's freeze (~65,000 objects at 1,000 instruments); every full collection walked
    them again, 8-22 ms at 20,000 ticks/s (BENCHMARKS.md). Once only: what is frozen is never
    collected, so this is no job for a timer.
    """
    market_data = next((m for m in daemon.modules if isinstance(m, MarketDataService)), None)
    if market_data is None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(market_data.subscribed.wait(), timeout)
        freeze_start_up()
        log.info("gc_frozen_after_subscribing", frozen_objects=gc.get_freeze_count())


# A module that fails is rebuilt and started again, at most this often; beyond, the daemon exits
# non-zero rather than run half-alive.
RESTARTS_ALLOWED = 3
RESTART_WINDOW_SECONDS = 600.0


class Daemon:
    """The modules of one process, each with a heartbeat, started in order, watched, restarted
    when they fail, and stopped in reverse order."""

    def __init__(
        self,
        names: Sequence[str],
        build: Callable[[str], Module],
        bus: RedisEventBus,
        *,
        metrics: MetricsSettings | None = None,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.bus = bus
        self.build = build
        self.heartbeat_seconds = heartbeat_seconds
        self.names = _in_start_order(names)
        if "market_data" in self.names:
            # Ticks and bars come from this process's market data: the other modules here take
            # them from it directly, not back from Redis (which still gets them for the rest).
            kinds = ("tick", "bar")
            bus.publishes_alone(*(bus.channels.instrument(kind, "*") for kind in kinds))
        self.metrics = self._metrics(metrics) if metrics and metrics.metrics_port else None
        self._running: dict[str, tuple[Module, HeartbeatPublisher]] = {}  # name -> live module
        self._restarts: dict[str, list[float]] = {}  # name -> monotonic times of its restarts

    @property
    def modules(self) -> list[Module]:
        return [self._running[name][0] for name in self.names if name in self._running]

    async def start(self) -> None:
        await self.bus.start()
        if self.metrics is not None:
            await self.metrics.start()
        for name in self.names:
            await self._start_module(name)

    async def _start_module(self, name: str) -> None:
        module = self.build(name)
        heartbeat = HeartbeatPublisher(
            self.bus, module.name, interval=self.heartbeat_seconds, probe=self._probe(module)
        )
        await module.start()
        await heartbeat.start()
        self._running[name] = (module, heartbeat)
        log.info("module_started", module=name)

    async def watch(self) -> GuardRefused | int:
        """Restart modules that fail; return a module's refusal to trade, or the exit code when
        something fails beyond repair (the bus, or a module that keeps failing)."""
        while True:
            failed = await self._next_failure()
            if isinstance(failed, GuardRefused):
                return failed
            if failed is None:
                log.error("bus_failed", hint="the event bus stopped; the process must restart")
                return EXIT_FAULT
            if not await self._restart(failed):
                return EXIT_FAULT

    async def _next_failure(self) -> str | GuardRefused | None:
        """The name of a module whose vital task ended, its refusal, or None for the bus."""
        owners: dict[asyncio.Future[Any], str | None] = {
            task: None for task in self.bus.vital_tasks()
        }
        refusals: list[asyncio.Future[Any]] = []
        for name, (module, _) in self._running.items():
            owners.update({task: name for task in getattr(module, "vital_tasks", list)()})
            if hasattr(module, "wait_refused"):
                refusals.append(asyncio.ensure_future(module.wait_refused()))
        try:
            done, _ = await asyncio.wait([*owners, *refusals], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for refusal in refusals:
                refusal.cancel()
        finished = done.pop()
        if finished in refusals:
            refused: GuardRefused = finished.result()
            return refused
        owner = owners[finished]
        error = None if finished.cancelled() else finished.exception()
        log.error(
            "module_failed" if owner else "bus_task_ended",
            module=owner,
            task=finished.get_name() if isinstance(finished, asyncio.Task) else "",
            error=repr(error) if error else "ended without an error",
        )
        return owner

    async def _restart(self, name: str) -> bool:
        """Stop and rebuild `name`, within the restart budget; False when it is spent."""
        module, heartbeat = self._running.pop(name)
        await self._stop_module(module, heartbeat)
        while self._may_restart(name):
            try:
                await self._start_module(name)
            except GuardRefused:
                raise
            except Exception:
                log.exception("module_restart_failed", module=name)
                continue
            log.warning("module_restarted", module=name, restarts=len(self._restarts[name]))
            return True
        log.error(
            "module_failed_for_good",
            module=name,
            restarts_allowed=RESTARTS_ALLOWED,
            window_seconds=RESTART_WINDOW_SECONDS,
        )
        return False

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [at for at in self._restarts.get(name, []) if now - at < RESTART_WINDOW_SECONDS]
        if len(recent) >= RESTARTS_ALLOWED:
            return False
        self._restarts[name] = [*recent, now]
        return True

    def _probe(self, module: Module) -> Callable[[], dict[str, str]]:
        """The module's own status plus this process's bus counters."""
        own = getattr(module, "status", None)

        def probe() -> dict[str, str]:
            stats = self.bus.stats
            return {
                **(own() if own is not None else {}),
                "bus_published": str(sum(stats.published.values())),
                "bus_rejected": str(stats.rejected_total),
                "bus_dropped": str(sum(stats.dropped.values())),
                "bus_connected": "yes" if self.bus.connected else "no",
            }

        return probe

    async def stop(self) -> None:
        """Producers first, storage last (it flushes what the others published), then the bus."""
        for name in reversed(self.names):
            if name in self._running:
                await self._stop_module(*self._running.pop(name))
        await self.bus.stop()
        if self.metrics is not None:
            self.metrics.stop()

    def _metrics(self, settings: MetricsSettings) -> DaemonMetrics:
        """`/metrics` of this process; orders are counted where execution runs."""

        def probes() -> dict[str, Callable[[], dict[str, str]]]:
            return {
                module.name: module.status for module in self.modules if hasattr(module, "status")
            }

        return DaemonMetrics(
            self.bus,
            probes,
            host=settings.metrics_host,
            port=settings.metrics_port,
            count_orders="execution" in self.names,
        )

    async def _stop_module(self, module: Module, heartbeat: HeartbeatPublisher) -> None:
        await heartbeat.stop()
        try:
            await asyncio.wait_for(module.stop(), MODULE_STOP_SECONDS)
            log.info("module_stopped", module=module.name)
        except TimeoutError:
            log.error("module_stop_timed_out", module=module.name, seconds=MODULE_STOP_SECONDS)


def _in_start_order(names: Sequence[str]) -> list[str]:
    return [name for name in MODULE_NAMES if name in names]


# Commands


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    names = args.modules or list(MODULE_NAMES)
    if "execution" in names:  # before anything connects, when the settings alone say no
        check_live_account(settings.execution.trading_mode, settings.execution.live_account)
    log.info(
        "daemon_starting",
        modules=names,
        redis=masked_url(settings.bus.redis_url),
        database=masked_url(settings.storage.database_url),
        trading_mode=settings.execution.trading_mode,
    )
    bus = build_bus(settings.bus)
    daemon = Daemon(
        names,
        functools.partial(build_module, settings=settings, bus=bus),
        bus,
        metrics=settings.metrics,
        heartbeat_seconds=settings.bus.heartbeat_seconds,
    )
    stop = _stop_on_signals()
    refreeze: asyncio.Task[None] | None = None
    try:
        await daemon.start()
        freeze_start_up()
        refreeze = asyncio.create_task(freeze_once_subscribed(daemon), name="gc-freeze")
        outcome = await _first_of(stop.wait(), daemon.watch())
    finally:
        await cancel_and_wait(refreeze)
        await daemon.stop()
    if isinstance(outcome, GuardRefused):
        raise outcome
    if isinstance(outcome, int) and not isinstance(outcome, bool):
        log.error("daemon_stopped_on_failure", exit_code=outcome)
        return outcome
    log.info("daemon_stopped")
    return EXIT_OK


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> Any:
    """The result of whichever finishes first; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    await cancel_and_wait(*pending)
    return done.pop().result()


def _stop_on_signals() -> asyncio.Event:
    """SIGTERM/SIGINT ask for a graceful stop; a second one forces the exit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        if stop.is_set():
            log.error("forced_exit", signal=signal.Signals(number).name)
            os._exit(EXIT_FAULT)
        log.info("stopping", signal=signal.Signals(number).name)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    return stop


# The demo: the simulator's clock runs DEMO_SPEED times faster, bars are 5 seconds and the
# windows short, so market data, signals, orders and fills all show within the first 30 s.
DEMO_SPEED = 10.0
DEMO_BAR_SECONDS = 5
DEMO_STRATEGY_PARAMS = {"sma_crossover": {"fast_window": 3, "slow_window": 8}}


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The whole daemon, in paper mode, against the simulator and a Redis that answers."""
    async with contextlib.AsyncExitStack() as stack:
        redis_url, embedded = await _demo_redis(settings, stack)
        if embedded is None and await _daemon_on_prefix(settings):
            return EXIT_USAGE
        config = SimConfig(
            port=0, seed=args.seed, speed=DEMO_SPEED, symbols=settings.market_data.symbols
        )
        if await _database_of_other_accounts(settings, config.account):
            return EXIT_USAGE
        simulator = await stack.enter_async_context(Simulator(config))
        demo_settings = _demo_settings(settings, redis_url, simulator.port)
        bus = build_bus(demo_settings.bus)
        build = functools.partial(build_module, settings=demo_settings, bus=bus)
        daemon = Daemon(
            MODULE_NAMES,
            build,
            bus,
            metrics=demo_settings.metrics,
            heartbeat_seconds=demo_settings.bus.heartbeat_seconds,
        )
        print(_watch_instructions(demo_settings, embedded), flush=True)
        try:
            await daemon.start()
            outcome = await _first_of(_run_for(args.duration), daemon.watch())
        finally:
            await daemon.stop()
        if isinstance(outcome, GuardRefused):
            raise outcome
        if isinstance(outcome, int):
            return outcome
        print(_demo_summary(daemon.bus, simulator, demo_settings), flush=True)
    return EXIT_OK


async def _demo_redis(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[str, EmbeddedRedis | None]:
    url = settings.bus.redis_url.get_secret_value()
    if await redis_answers(url):
        return url, None
    log.info("demo_starting_embedded_redis", because=f"no Redis answers at {masked_url(url)}")
    embedded = await stack.enter_async_context(EmbeddedRedis())
    return embedded.url, embedded


def _command_redis(settings: Settings, name: str) -> Any:
    """A Redis client for one command's few reads."""
    url = settings.bus.redis_url.get_secret_value()
    return connect_redis(url, timeout=settings.bus.redis_timeout_seconds, name=name)


async def _heartbeats(redis: Any, settings: Settings) -> list[Heartbeat]:
    """The heartbeats of the modules alive under the configured prefix."""
    pattern = Channels(settings.bus.channel_prefix).heartbeat_key("*")
    return await read_heartbeats(redis, pattern, Codec())


async def _daemon_on_prefix(settings: Settings) -> bool:
    """Whether a daemon already runs on this Redis under this CHANNEL_PREFIX (its heartbeats).
    The demo must not share its channels: that daemon would take the simulator's ticks and the
    demo's signals as its own, and trade on them, live if it is live."""
    redis = _command_redis(settings, "demo")
    try:
        beats = await _heartbeats(redis, settings)
    except CONNECTION_ERRORS as error:  # cannot tell: refuse rather than risk it
        log.error("demo_refused", reason=f"cannot look for a daemon on this Redis: {error}")
        return True
    finally:
        await redis.aclose()
    if not beats:
        return False
    prefix = settings.bus.channel_prefix
    log.error(
        "demo_refused",
        reason=f"a daemon is running on this Redis with CHANNEL_PREFIX={prefix}: "
        "the demo would publish its ticks and signals to it; give the demo a prefix and a "
        "database of its own (CHANNEL_PREFIX=demo DATABASE_URL=sqlite:///demo.db)",
        modules=sorted({f"{beat.module}@{beat.host}:{beat.pid}" for beat in beats}),
        redis=masked_url(settings.bus.redis_url),
    )
    return True


async def _database_of_other_accounts(settings: Settings, account: str) -> bool:
    """Whether DATABASE_URL holds orders or fills of an account other than the simulator's,
    a real one's: the demo would store its simulated fills beside them, and positions and P&L
    read from the database would count them. Refuses too when it cannot look."""
    url = settings.storage.database_url
    try:
        others = await asyncio.to_thread(stored_accounts, url.get_secret_value())
    except SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        log.error("demo_refused", reason=f"cannot look into DATABASE_URL: {reason}")
        return True
    others -= {account, ""}  # an order's first updates may not name its account yet
    if not others:
        return False
    log.error(
        "demo_refused",
        reason=f"DATABASE_URL holds orders or fills of {', '.join(sorted(others))}: the demo "
        f"would store the simulator's fills ({account}) beside them; give the demo a database "
        "of its own (DATABASE_URL=sqlite:///demo.db)",
        database=masked_url(url),
    )
    return True


def _demo_settings(settings: Settings, redis_url: str, ib_port: int) -> Settings:
    strategy = settings.strategy
    params = strategy.strategy_params or DEMO_STRATEGY_PARAMS.get(strategy.strategy, {})
    return settings.model_copy(
        update={
            "bus": settings.bus.model_copy(update={"redis_url": SecretStr(redis_url)}),
            "ib": settings.ib.model_copy(update={"host": "127.0.0.1", "port": ib_port}),
            "market_data": settings.market_data.model_copy(
                update={"bar_seconds": DEMO_BAR_SECONDS}
            ),
            "strategy": strategy.model_copy(
                update={"strategy_bar_seconds": DEMO_BAR_SECONDS, "strategy_params": params}
            ),
            "execution": settings.execution.model_copy(update={"trading_mode": "paper"}),
        }
    )


def _watch_instructions(settings: Settings, embedded: EmbeddedRedis | None) -> str:
    """The exact commands to watch and steer this demo from another terminal."""
    prefix = settings.bus.channel_prefix
    environment = ""
    if embedded is not None:
        cli = f"{embedded.cli} -p {embedded.port}"
        environment += f"REDIS_URL={embedded.url} "
    else:
        cli = "redis-cli" + _redis_cli_flags(settings.bus.redis_url.get_secret_value())
    if prefix != "trading":
        environment += f"CHANNEL_PREFIX={prefix} "
    main = f"{environment}{sys.executable} {Path(__file__).resolve()}"
    return "\n".join(
        [
            "",
            "The daemon is trading on paper against the IB Gateway simulator. In another terminal:",
            f"  {cli} PSUBSCRIBE '{prefix}:*'",
            f"  {cli} PSUBSCRIBE '{prefix}:order:*' '{prefix}:fill:*'",
            f"  {cli} XREVRANGE {prefix}:journal + - COUNT 5",
            f"  {main} tail",
            f"  {main} halt --reason 'trying the kill switch'",
            f"  {main} resume",
            f"  {main} status",
            f"Events are stored in {masked_url(settings.storage.database_url)}. Ctrl-C stops.",
            "",
        ]
    )


def _redis_cli_flags(url: str) -> str:
    parts = urlsplit(url)
    flags = f" -h {parts.hostname or '127.0.0.1'} -p {parts.port or 6379}"
    if parts.path.strip("/") not in ("", "0"):
        flags += f" -n {parts.path.strip('/')}"
    if parts.scheme == "rediss":
        flags += " --tls"
    return flags + (" --user USER --askpass" if parts.password else "")


async def _run_for(seconds: float | None) -> None:
    stop = _stop_on_signals()
    if seconds is None:
        await stop.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _demo_summary(bus: RedisEventBus, simulator: Simulator, settings: Settings) -> str:
    published = bus.stats.published
    by_kind = ", ".join(f"{name} {count}" for name, count in sorted(published.items()))
    positions = simulator.positions()
    database_url = settings.storage.database_url.get_secret_value()
    lines = [
        "Demo summary",
        f"  events published: {sum(published.values())} ({by_kind})",
        f"  orders received by the simulator: {len(simulator.orders_received)}",
        f"  fills: {len(simulator.executions)}",
        "  positions: "
        + (", ".join(f"{s} {q:g}" for s, q in sorted(positions.items()) if q) or "flat"),
        "  realized P&L of every fill in the database (this run's and earlier runs'),"
        f" before commissions: {realized_pnl(database_url):.2f}",
    ]
    return "\n".join(lines)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Modules alive (their heartbeat keys), what each reports, and the kill switch."""
    redis = _command_redis(settings, "status")
    try:
        beats = await _heartbeats(redis, settings)
        halt: Any = await redis.get(Channels(settings.bus.channel_prefix).state_key("halt"))
    except CONNECTION_ERRORS as error:
        log.error("status_failed", error=str(error), redis=masked_url(settings.bus.redis_url))
        return EXIT_FAULT
    finally:
        await redis.aclose()
    expected = args.modules or list(MODULE_NAMES)
    missing = [name for name in expected if name not in {beat.module for beat in beats}]
    print(format_status(beats, halt, missing, json_output=args.json))
    return EXIT_FAULT if missing else EXIT_OK


def format_status(
    beats: list[Heartbeat], halt: bytes | None, missing: list[str], *, json_output: bool = False
) -> str:
    """The status report: the kill switch, then a line per module, alive or missing."""
    try:
        command = Codec().decode(halt) if halt is not None else None
    except EventRejected as unreadable:  # still halted: only `resume` clears the key
        command = ControlCommand(command="halt", reason=f"unreadable halt state: {unreadable}")
    reason = getattr(command, "reason", "")
    if json_output:
        return json.dumps(
            {
                "halted": command is not None,
                "halt": {"reason": reason, "since": command.ts.isoformat()} if command else None,
                "modules": {
                    beat.module: {
                        "host": beat.host,
                        "pid": beat.pid,
                        "since": beat.started_at.isoformat(),
                        "detail": beat.detail or {},
                    }
                    for beat in beats
                },
                "missing": missing,
            }
        )
    if command is None:
        lines = ["trading: allowed"]
    else:
        lines = [
            f"trading: HALTED since {command.ts:%Y-%m-%d %H:%M:%S} UTC"
            + (f" ({reason})" if reason else "")
        ]
    now = utc_now()
    for beat in beats:
        uptime = str(now - beat.started_at).split(".")[0]
        detail = " ".join(f"{key}={value}" for key, value in (beat.detail or {}).items())
        lines.append(f"  {beat.module:<12} alive    {beat.host}:{beat.pid}  up {uptime}  {detail}")
    lines += [f"  {name:<12} MISSING  (no heartbeat)" for name in missing]
    return "\n".join(lines)


async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    database_url = settings.storage.database_url.get_secret_value()

    def stored_bars(symbol: str, start: datetime | None, end: datetime | None) -> list[Bar]:
        return load_bars(
            database_url, symbol, start, end, seconds=settings.strategy.strategy_bar_seconds
        )

    return await asyncio.to_thread(run_replay, args, settings.strategy, stored_bars)


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.storage.database_url
    revision = await asyncio.to_thread(upgrade_database, url.get_secret_value())
    print(f"{masked_url(url)} is at schema revision {revision}")
    return EXIT_OK


async def until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """Run `work` until it ends or SIGTERM/SIGINT cancels it; its exit code."""
    outcome = await _first_of(work, _stop_on_signals().wait())
    return EXIT_OK if outcome is True else int(outcome)


async def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    return await until_signalled(ibsim_cli.serve(args))


async def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    channels = Channels(settings.bus.channel_prefix)
    pattern = args.pattern or channels.everything
    if not pattern.startswith(channels.prefix + ":"):
        pattern = f"{channels.prefix}:{pattern}"
    colour = sys.stdout.isatty()

    async def show(event: Event) -> None:
        print(format_event(event, channels.for_event(event), colour=colour), flush=True)

    bus = build_bus(settings.bus)
    await bus.subscribe(pattern, show, name="tail")
    await bus.start()
    print(
        f"# tailing {pattern} on {masked_url(settings.bus.redis_url)} (Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        await _stop_on_signals().wait()
    finally:
        await bus.stop(timeout=1.0)
    return EXIT_OK


_COLOURS = {
    "tick": "\x1b[2m",
    "bar": "\x1b[36m",
    "signal": "\x1b[33m",
    "order": "\x1b[35m",
    "fill": "\x1b[32m",
    "system": "\x1b[31m",
    "control": "\x1b[1;31m",
}


def format_event(event: Event, channel: str, *, colour: bool = False) -> str:
    """One readable line: time, channel, type and the event's own fields."""
    fields = [
        f"{field.name}={_printable(getattr(event, field.name))}"
        for field in dataclasses.fields(event)  # not __dataclass_fields__: it has the ClassVars
        if field.name not in ("id", "ts")
    ]
    line = f"{event.ts:%H:%M:%S.%f}"[:-3] + f"  {channel:<28} {type(event).__name__:<14} "
    line += " ".join(fields) + f"  id={_printable(event.id)}"
    if not colour:
        return line
    start = _COLOURS.get(type(event).kind.split(":")[0], "")
    return f"{start}{line}\x1b[0m" if start else line


def _printable(value: Any) -> Any:
    """A string with a newline or escape code (from the wire) shown quoted: one event, one line."""
    return repr(value) if isinstance(value, str) and not value.isprintable() else value


async def cmd_kill_switch(args: argparse.Namespace, settings: Settings) -> int:
    """`halt` / `resume`: record the state durably, then tell the running daemon."""
    command = ControlCommand(
        command=args.command,
        reason=args.reason,
        issued_by=f"{os.getenv('USER', 'operator')}@{socket.gethostname()}",
    )
    bus = build_bus(settings.bus)
    key = bus.channels.state_key("halt")
    try:
        if command.command == "halt":
            await bus.redis.set(key, bus.codec.encode(command))
        else:
            await bus.redis.delete(key)
        await bus.start()
        await bus.publish(command)
        await asyncio.wait_for(bus.drain(), settings.bus.redis_timeout_seconds)
    except CONNECTION_ERRORS as error:
        log.error(
            "kill_switch_failed",
            command=command.command,
            error=str(error),
            redis=masked_url(settings.bus.redis_url),
        )
        return EXIT_FAULT
    finally:
        await bus.stop(timeout=1.0)
    log.info(
        "kill_switch_sent",
        command=command.command,
        reason=command.reason,
        at=datetime.now(UTC).isoformat(),
    )
    return EXIT_OK


# Command line


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="main.py", description=__doc__)
    commands = parser.add_subparsers(
        dest="command_name", metavar="COMMAND", required=True, parser_class=_Parser
    )

    run = commands.add_parser("run", help="the long-lived daemon (all modules, or --modules)")
    run.add_argument(
        "--modules",
        type=_module_list,
        metavar="NAMES",
        default=None,
        help="comma-separated subset, e.g. market_data,strategy",
    )
    run.set_defaults(handler=cmd_run)

    tail = commands.add_parser("tail", help="a decoded live view of the events")
    tail.add_argument("pattern", nargs="?", help="channel pattern, e.g. 'fill:*' (default all)")
    tail.set_defaults(handler=cmd_tail)

    demo = commands.add_parser(
        "demo", help="the whole daemon against the built-in simulator, in paper mode"
    )
    demo.add_argument(
        "--duration",
        type=_positive_seconds,
        metavar="SECONDS",
        help="stop after this many seconds and print a summary (default: Ctrl-C)",
    )
    demo.add_argument("--seed", type=int, default=1, help="the simulator's random-walk seed")
    demo.set_defaults(handler=cmd_demo)

    status = commands.add_parser(
        "status",
        help="modules alive, what they report, and the kill switch (exit 1 if one is missing)",
    )
    status.add_argument(
        "--modules",
        type=_module_list,
        metavar="NAMES",
        help="the modules that should be alive (default all)",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.set_defaults(handler=cmd_status)

    replay = commands.add_parser(
        "replay", help="the configured strategy over stored bars (CSV or the database)"
    )
    configure_replay(replay)
    replay.set_defaults(handler=cmd_replay)

    database = commands.add_parser(
        "db", help="database schema: `db upgrade` migrates to the newest"
    )
    database.add_argument("action", choices=["upgrade"])
    database.set_defaults(handler=cmd_db)

    sim = commands.add_parser(
        "sim",
        help="the IB Gateway simulator alone, for any TWS API client",
        description="An IB Gateway simulator speaking the TWS API (server version 178).",
    )
    ibsim_cli.configure_parser(sim)
    sim.set_defaults(handler=cmd_sim)

    for name, text in (
        ("halt", "stop all new orders and cancel open ones"),
        ("resume", "allow new orders again"),
    ):
        kill = commands.add_parser(name, help=f"kill switch: {text}")
        kill.add_argument("--reason", default="", help="recorded with the command")
        kill.set_defaults(handler=cmd_kill_switch, command=name)
    return parser


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return seconds


def _module_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in MODULE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(MODULE_NAMES)}"
            + (f"; unknown: {','.join(unknown)}" if unknown else "")
        )
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"main.py: bad setting: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log)
    handler: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = args.handler
    try:
        return asyncio.run(handler(args, settings))
    except KeyboardInterrupt:
        return EXIT_OK
    except GuardRefused as refusal:
        log.error("trading_refused_by_guard", reason=str(refusal))
        return EXIT_GUARD
    except Exception as error:
        log.exception("fatal_error", error=str(error))
        return EXIT_FAULT


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
