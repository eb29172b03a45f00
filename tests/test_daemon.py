"""`main.py run` as a process: all modules against the simulator, a real Redis and SQLite."""

from __future__ import annotations

import asyncio
import json
import signal
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
