"""`main.py run` as a process: all modules against the simulator, a real Redis and SQLite."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path

import redis.asyncio as aioredis

from event_bus import Channels
from ibsim import SimConfig, Simulator
from storage.queries import todays_fills
from tests.helpers import eventually
from tests.test_cli import MAIN, _environment, run_main_async

MANUAL_BUY = (
    '{"type":"TradeSignal","symbol":"AAPL","action":"BUY","quantity":10,"order_type":"MKT"}'
)


async def test_run_trades_a_manual_signal_into_the_database_and_stops_cleanly(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """A redis-cli style BUY becomes one order, a fill row; status sees it all; SIGTERM stops."""
    database = tmp_path / "trading.db"
    async with Simulator(SimConfig(port=0, speed=10.0)) as sim:
        settings = {
            "REDIS_URL": redis_url,
            "CHANNEL_PREFIX": channels.prefix,
            "IB_PORT": str(sim.port),
            "DATABASE_URL": f"sqlite:///{database}",
            "LOG_LEVEL": "WARNING",
        }
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            str(MAIN),
            "run",
            cwd=tmp_path,
            env=_environment(**settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            async def all_alive_and_ready() -> bool:
                result = await run_main_async(tmp_path, "status", "--json", **settings)
                report = json.loads(result.stdout)
                execution = report["modules"].get("execution", {}).get("detail", {})
                return result.returncode == 0 and execution.get("ib") == "ready"

            await eventually(
                all_alive_and_ready,
                timeout=30,
                interval=0.5,
                message="every module alive, execution ready",
            )
            client = aioredis.Redis.from_url(redis_url)
            for _ in range(3):  # the same message three times is one intent
                await client.publish(channels.instrument("signal", "AAPL"), MANUAL_BUY)
            await client.aclose()
            url = f"sqlite:///{database}"
            await eventually(
                lambda: len(todays_fills(url)) >= 1 and sim.positions() == {"AAPL": 10.0},
                timeout=20,
                message="the fill stored",
            )
            assert [order.order_ref for order in sim.orders_received] == [
                sim.orders_received[0].order_ref
            ]
            [fill] = todays_fills(url)
            assert (fill.symbol, fill.side, fill.quantity) == ("AAPL", "BUY", 10.0)
            assert fill.commission is not None and fill.commission > 0
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(daemon.communicate(), 30)
    assert daemon.returncode == 0, stderr.decode()[-2000:]
    after = await run_main_async(tmp_path, "status", **settings)
    assert after.returncode == 1
    assert after.stdout.count("MISSING") == 4


FAST_TRADING = {
    "BAR_SECONDS": "5",
    "STRATEGY_PARAMS": '{"fast_window": 2, "slow_window": 4}',
    "HEARTBEAT_SECONDS": "0.5",
    "LOG_LEVEL": "WARNING",
}
STORED_BY = {  # event type -> (table, the payload field that keys its row)
    "Tick": ("ticks", "id"),
    "Bar": ("bars", "id"),
    "TradeSignal": ("signals", "id"),
    "OrderUpdate": ("order_history", "id"),
    "Fill": ("fills", "execution_id"),
}


async def start_daemon(tmp_path: Path, *args: str, **settings: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "run",
        *args,
        cwd=tmp_path,
        env=_environment(**settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_daemon(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 40)
    assert process.returncode == 0, stderr.decode()[-2000:]


async def journal_by_type(redis_url: str, channels: Channels) -> dict[str, set[str]]:
    """Type -> the keys of its rows, for every event in the journal storage keeps."""
    client = aioredis.Redis.from_url(redis_url)
    keys: dict[str, set[str]] = {}
    for _, fields in await client.xrange(channels.journal):
        event = json.loads(fields[b"event"])
        if event["type"] != "Heartbeat":
            _, field = STORED_BY.get(event["type"], ("system_events", "id"))
            keys.setdefault(event["type"], set()).add(event[field])
    await client.aclose()
    return keys


def rows(database: Path, table: str, column: str) -> set[str]:
    with sqlite3.connect(database) as connection:
        return {row[0] for row in connection.execute(f"SELECT {column} FROM {table}")}


async def test_sigterm_mid_stream_loses_no_stored_event(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """SIGTERM while data and orders flow: every journaled event is a row when the process ends."""
    database = tmp_path / "trading.db"
    async with Simulator(SimConfig(port=0, speed=20.0)) as sim:
        daemon = await start_daemon(
            tmp_path,
            REDIS_URL=redis_url,
            CHANNEL_PREFIX=channels.prefix,
            IB_PORT=str(sim.port),
            DATABASE_URL=f"sqlite:///{database}",
            **FAST_TRADING,
        )
        try:
            await eventually(
                lambda: len(sim.executions) >= 1,
                timeout=40,
                interval=0.2,
                message="trading under way",
            )
        finally:
            await stop_daemon(daemon)
    journal = await journal_by_type(redis_url, channels)
    assert {"Tick", "Bar", "TradeSignal", "OrderUpdate", "Fill"} <= set(journal)
    for event_type, keys in journal.items():
        table, field = STORED_BY.get(event_type, ("system_events", "id"))
        column = {"id": "event_id"}.get(field, field)
        assert keys - rows(database, table, column) == set(), f"{event_type} not stored"


async def test_status_reports_a_killed_module(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """SIGKILL leaves no clean goodbye: status says MISSING within three heartbeats."""
    settings = {
        "REDIS_URL": redis_url,
        "CHANNEL_PREFIX": channels.prefix,
        "DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
        **FAST_TRADING,
    }
    daemon = await start_daemon(tmp_path, "--modules", "storage", **settings)

    async def storage_alive() -> bool:
        return (
            await run_main_async(tmp_path, "status", "--modules", "storage", **settings)
        ).returncode == 0

    await eventually(storage_alive, timeout=30, interval=0.2, message="storage alive")
    daemon.kill()
    await daemon.wait()

    async def storage_missing() -> bool:
        result = await run_main_async(tmp_path, "status", "--modules", "storage", **settings)
        return result.returncode == 1 and "storage      MISSING" in result.stdout

    await eventually(storage_missing, timeout=10, interval=0.2, message="reported missing")


async def test_modules_split_across_two_processes_trade_exactly_once(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """market_data+strategy in one process, execution+storage in another: every simulator
    execution is stored once, and no signal made two orders."""
    database = tmp_path / "trading.db"
    async with Simulator(SimConfig(port=0, speed=20.0)) as sim:
        settings = {
            "REDIS_URL": redis_url,
            "CHANNEL_PREFIX": channels.prefix,
            "IB_PORT": str(sim.port),
            "DATABASE_URL": f"sqlite:///{database}",
            **FAST_TRADING,
        }
        back = await start_daemon(tmp_path, "--modules", "execution,storage", **settings)
        front = await start_daemon(tmp_path, "--modules", "market_data,strategy", **settings)
        try:
            await eventually(
                lambda: len(sim.executions) >= 2, timeout=40, interval=0.2, message="two executions"
            )
        finally:
            await stop_daemon(front)
            await stop_daemon(back)
        executions = {execution.exec_id for execution in sim.executions}
        order_refs = [order.order_ref for order in sim.orders_received]
    assert rows(database, "fills", "execution_id") == executions
    assert len(order_refs) == len(set(order_refs))
    assert set(order_refs) <= rows(database, "signals", "event_id")
