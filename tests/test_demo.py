"""`main.py demo`: the whole daemon against the simulator, as a new user first runs it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from event_bus import Channels, Codec, JournalEntry, utc_now
from event_bus.system import Heartbeat
from execution.model import Fill
from ibsim.config import DEFAULT_ACCOUNT
from storage import RowWriter, make_engine, stored_accounts, upgrade_database
from tests.test_cli import MAIN, _environment


async def test_demo_trades_on_paper_and_summarises_every_event_kind(
    redis_url: str, tmp_path: Path
) -> None:
    """`demo --duration` exits 0 after market data, signals, orders and fills all happened;
    a database holding an earlier demo's fills (the simulator's account) is fine."""
    prefix = f"test-demo-{uuid.uuid4().hex[:8]}"
    _database_with_a_fill_of(tmp_path / "demo.db", DEFAULT_ACCOUNT)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "demo",
        "--duration",
        "20",
        cwd=tmp_path,
        env=_environment(
            REDIS_URL=redis_url,
            CHANNEL_PREFIX=prefix,
            LOG_LEVEL="WARNING",
            DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        log = stderr.decode()[-3000:]
        raise AssertionError(f"demo did not stop in time; its log ends:\n{log}") from None
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-2000:]
    published = re.search(r"events published: \d+ \((.*)\)", output)
    assert published is not None, output
    kinds = {part.rsplit(" ", 1)[0] for part in published.group(1).split(", ")}
    assert {"Tick", "Bar", "TradeSignal", "OrderUpdate", "Fill"} <= kinds, output
    orders = int(re.search(r"orders received by the simulator: (\d+)", output).group(1))  # type: ignore[union-attr]
    fills = int(re.search(r"fills: (\d+)", output).group(1))  # type: ignore[union-attr]
    assert orders >= 1 and fills >= orders
    assert f"PSUBSCRIBE '{prefix}:*'" in output
    assert (tmp_path / "demo.db").exists()


async def test_demo_refuses_a_redis_and_prefix_a_daemon_already_runs_on(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """A daemon's heartbeat under the prefix: the demo would feed that daemon its simulated
    ticks and signals (and it would trade on them), so it exits 2 with one line saying so,
    having published nothing."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        beat = Heartbeat(
            module="execution",
            host="trader-1",
            pid=4242,
            started_at=utc_now(),
            interval_seconds=5.0,
        )
        await client.set(channels.heartbeat_key("execution"), Codec().encode(beat), px=60_000)
        returncode, stdout, stderr = await refused_demo(
            tmp_path, REDIS_URL=redis_url, CHANNEL_PREFIX=channels.prefix
        )
        assert (returncode, stdout) == (2, b""), stderr.decode()[-2000:]
        [line] = [json.loads(text) for text in stderr.decode().splitlines()]
        assert (line["event"], line["level"], line["modules"]) == (
            "demo_refused",
            "error",
            ["execution@trader-1:4242"],
        )
        assert f"CHANNEL_PREFIX={channels.prefix}" in line["reason"]
        assert await client.exists(channels.journal) == 0
    finally:
        await client.aclose()


async def test_demo_refuses_a_database_with_another_accounts_fills(
    redis_url: str, channels: Channels, clean_keys: None, tmp_path: Path
) -> None:
    """DATABASE_URL holding a real account's fills (a daemon's database): the simulator's fills
    would land beside them and count in positions and P&L, so the demo exits 2 with one line
    naming the account, having published nothing and stored nothing."""
    database = tmp_path / "trading.db"
    _database_with_a_fill_of(database, "U7654321")
    returncode, stdout, stderr = await refused_demo(
        tmp_path,
        REDIS_URL=redis_url,
        CHANNEL_PREFIX=channels.prefix,
        DATABASE_URL=f"sqlite:///{database}",
    )
    assert (returncode, stdout) == (2, b""), stderr.decode()[-2000:]
    [line] = [json.loads(text) for text in stderr.decode().splitlines()]
    assert (line["event"], line["level"]) == ("demo_refused", "error")
    assert "U7654321" in line["reason"] and "DATABASE_URL" in line["reason"]
    assert stored_accounts(f"sqlite:///{database}") == {"U7654321"}
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.exists(channels.journal) == 0
    finally:
        await client.aclose()


async def refused_demo(workdir: Path, **settings: str) -> tuple[int | None, bytes, bytes]:
    """`demo --duration 5` expected to refuse at once: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "demo",
        "--duration",
        "5",
        cwd=workdir,
        env=_environment(**settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout, stderr


def _database_with_a_fill_of(path: Path, account: str) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade_database(engine)
        fill = Fill(
            symbol="AAPL",
            execution_id=f"exec-{account}",
            signal_id="sig-1",
            side="BUY",
            quantity=1,
            price=100.0,
            executed_at=utc_now(),
            account=account,
        )
        RowWriter(engine).write([JournalEntry("1-0", "test", fill)])
    finally:
        engine.dispose()
